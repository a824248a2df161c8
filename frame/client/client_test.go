package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/client/clienttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(addrs ...string) client.Config {
	cfg := client.DefaultConfig()
	cfg.Addrs = addrs
	cfg.AgentID = "test-agent"
	cfg.BackoffMin = 10 * time.Millisecond
	cfg.BackoffMax = 100 * time.Millisecond
	cfg.DialTimeout = 2 * time.Second
	cfg.CloseTimeout = 0
	return cfg
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func msg(body string) frame.Message {
	return frame.Message{Severity: frame.SevInfo, Facility: 1, Hostname: []byte("host"), App: []byte("test"), Body: []byte(body)}
}

func send(t *testing.T, c *client.Client, body string) {
	t.Helper()
	if err := c.Send(context.Background(), msg(body)); err != nil {
		t.Fatalf("Send(%q): %v", body, err)
	}
}

func flush(c *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.Flush(ctx)
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// bodies counts the message bodies received by the servers.
func bodies(servers ...*clienttest.Server) map[string]int {
	m := make(map[string]int)
	for _, s := range servers {
		for _, d := range s.Received() {
			for _, b := range d.Bodies {
				m[b]++
			}
		}
	}
	return m
}

func noViolations(t *testing.T, servers ...*clienttest.Server) {
	t.Helper()
	for _, s := range servers {
		for _, v := range s.Violations() {
			t.Errorf("server %s: protocol violation: %s", s.Addr(), v)
		}
	}
}

func TestSendFlush(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	var results atomic.Int64
	cfg := testConfig(srv.Addr())
	cfg.OnResult = func(r client.Result) {
		if r.Err == nil {
			results.Add(int64(r.Messages))
		}
	}
	c := newClient(t, cfg)
	for i := range 250 {
		send(t, c, fmt.Sprintf("m%d", i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := bodies(srv)
	for i := range 250 {
		if got[fmt.Sprintf("m%d", i)] != 1 {
			t.Fatalf("m%d received %d times", i, got[fmt.Sprintf("m%d", i)])
		}
	}
	st := c.Stats()
	if st.MessagesAcked != 250 || st.PendingMessages != 0 || st.PendingBytes != 0 || results.Load() != 250 {
		t.Fatalf("stats %+v, OnResult acked %d; want 250 acked, nothing pending", st, results.Load())
	}
	if st.Addr != srv.Addr() {
		t.Fatalf("Stats.Addr %q, want %q", st.Addr, srv.Addr())
	}
	for _, d := range srv.Received() {
		if d.AgentID != "test-agent" || len(d.Bodies) > 100 {
			t.Fatalf("packet %d: agent %q, %d messages", d.PacketID, d.AgentID, len(d.Bodies))
		}
	}
	noViolations(t, srv)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Send(context.Background(), msg("late")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
}

// (a) The server is killed mid-stream, with packets held unanswered, and
// restarted on the same port: every packet the client reported acked was
// received, and every message arrives after Flush.
func TestServerKilledAndRestarted(t *testing.T) {
	const n = 3000
	srv1 := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(d clienttest.Data) clienttest.Reply {
			if d.Seq > 40 {
				return clienttest.Reply{Action: clienttest.Hold}
			}
			return clienttest.Reply{Action: clienttest.Ack}
		},
	})
	addr := srv1.Addr()
	var mu sync.Mutex
	acked := make(map[uint64]bool)
	cfg := testConfig(addr)
	cfg.BatchMessages = 10
	cfg.Window = 8
	cfg.Block = true
	cfg.OnResult = func(r client.Result) {
		mu.Lock()
		defer mu.Unlock()
		if r.Err == nil {
			acked[r.PacketID] = true
		}
	}
	c := newClient(t, cfg)
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Send(context.Background(), msg(fmt.Sprintf("m%d", i))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	waitFor(t, "48 packets at the first server", func() bool { return len(srv1.Received()) >= 48 })
	srv1.Kill()
	srv2 := clienttest.Start(t, addr, clienttest.Options{})
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	received := make(map[uint64]bool)
	for _, s := range []*clienttest.Server{srv1, srv2} {
		for _, d := range s.Received() {
			received[d.PacketID] = true
		}
	}
	mu.Lock()
	for id := range acked {
		if !received[id] {
			t.Errorf("packet %d reported acked but never received", id)
		}
	}
	mu.Unlock()
	got := bodies(srv1, srv2)
	for i := range n {
		if got[fmt.Sprintf("m%d", i)] == 0 {
			t.Fatalf("m%d never arrived", i)
		}
	}
	st := c.Stats()
	if st.Reconnects < 1 || st.PacketsResent == 0 || st.MessagesAcked != n {
		t.Fatalf("stats %+v: want a reconnect, resent packets and %d messages acked", st, n)
	}
	if len(srv2.Received()) == 0 {
		t.Fatal("nothing reached the restarted server")
	}
	noViolations(t, srv1, srv2)
}

// (b) BUSY: the packet is resent (same packet id, new sequence) and nothing
// is sent on the connection before retry-after has elapsed.
func TestBusySlowsDown(t *testing.T) {
	const retry = 300 * time.Millisecond
	var busyAt time.Time
	var busyID uint64
	var once sync.Once
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(d clienttest.Data) clienttest.Reply {
			r := clienttest.Reply{Action: clienttest.Ack}
			once.Do(func() {
				busyID = d.PacketID
				r = clienttest.Reply{Action: clienttest.Busy, RetryAfter: retry}
				busyAt = time.Now() // before the BUSY is written: a lower bound
			})
			return r
		},
	})
	cfg := testConfig(srv.Addr())
	cfg.Window = 1 // nothing else in flight when the BUSY arrives
	cfg.BatchMessages = 1
	c := newClient(t, cfg)
	for i := range 5 {
		send(t, c, fmt.Sprintf("m%d", i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	recv := srv.Received()
	if len(recv) != 6 {
		t.Fatalf("received %d DATA frames, want 5 packets + 1 resend", len(recv))
	}
	if recv[0].PacketID != busyID || recv[1].PacketID != busyID || recv[1].Seq != recv[0].Seq+1 {
		t.Fatalf("after BUSY for packet %d (seq %d) got packet %d seq %d; want the same packet resent with the next seq",
			busyID, recv[0].Seq, recv[1].PacketID, recv[1].Seq)
	}
	for _, d := range recv[1:] {
		if d.At.Before(busyAt.Add(retry)) {
			t.Fatalf("DATA seq %d arrived %v after the BUSY, before its retry-after of %v", d.Seq, d.At.Sub(busyAt), retry)
		}
	}
	if st := c.Stats(); st.Busy != 1 || st.PacketsResent != 1 || st.MessagesAcked != 5 {
		t.Fatalf("stats %+v: want 1 busy, 1 resent, 5 acked", st)
	}
	noViolations(t, srv)
}

// (c) GOAWAY: no DATA on the draining connection, new data goes to the
// next address, and what the draining server leaves unresolved is resent
// there.
func TestGoAwayMovesToNextAddress(t *testing.T) {
	var hold atomic.Bool
	a := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(clienttest.Data) clienttest.Reply {
			if hold.Load() {
				return clienttest.Reply{Action: clienttest.Hold}
			}
			return clienttest.Reply{Action: clienttest.Ack}
		},
	})
	b := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	cfg := testConfig(a.Addr(), b.Addr())
	cfg.BatchMessages = 1
	c := newClient(t, cfg)
	for i := range 10 {
		send(t, c, fmt.Sprintf("first%d", i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	hold.Store(true)
	for i := range 5 {
		send(t, c, fmt.Sprintf("held%d", i))
	}
	waitFor(t, "the held packets at the first server", func() bool { return len(a.Received()) == 15 })

	a.GoAway()
	waitFor(t, "the client to move to the second address", func() bool { return c.Stats().Addr == b.Addr() })
	for i := range 5 {
		send(t, c, fmt.Sprintf("after%d", i))
	}
	waitFor(t, "new data at the second server", func() bool { return len(bodies(b)) == 5 })
	if got := bodies(b); got["held0"] != 0 {
		t.Fatal("a packet still unresolved on the draining connection was resent before it closed")
	}
	a.Kill() // the draining server goes away with 5 packets unresolved
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := bodies(b)
	for i := range 5 {
		for _, p := range []string{"held", "after"} {
			if got[fmt.Sprintf("%s%d", p, i)] != 1 {
				t.Errorf("%s%d received %d times by the second server, want 1", p, i, got[fmt.Sprintf("%s%d", p, i)])
			}
		}
	}
	if n := len(a.Received()); n != 15 {
		t.Errorf("first server received %d DATA frames, want 15 (none after GOAWAY)", n)
	}
	noViolations(t, a, b)
}

// (d) A bad token is a clear, permanent error.
func TestBadToken(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{Token: "secret"})
	cfg := testConfig(srv.Addr())
	cfg.Token = "wrong"
	c := newClient(t, cfg)
	c.Send(context.Background(), msg("m")) // may be buffered before the answer
	err := flush(c)
	if !errors.Is(err, client.ErrAuth) {
		t.Fatalf("Flush: %v, want ErrAuth", err)
	}
	want := fmt.Sprintf(`client: server %s rejected the token for agent "test-agent": auth: unknown token`, srv.Addr())
	if err.Error() != want {
		t.Fatalf("Flush error\n got %q\nwant %q", err, want)
	}
	if err := c.Send(context.Background(), msg("m2")); !errors.Is(err, client.ErrAuth) {
		t.Fatalf("Send after the rejection: %v, want ErrAuth", err)
	}
	if err := c.Close(); !errors.Is(err, client.ErrAuth) {
		t.Fatalf("Close: %v, want ErrAuth", err)
	}
	if n := srv.Hellos(); n != 1 {
		t.Fatalf("server saw %d HELLOs; the client must not retry a rejected token", n)
	}
}

// (e) A per-packet ERROR is reported (Flush, Stats, OnResult) and the
// packet is not resent.
func TestPacketRejected(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(d clienttest.Data) clienttest.Reply {
			if d.Bodies[0] == "bad" {
				return clienttest.Reply{Action: clienttest.Reject, Code: frame.CodeRejected, Reason: "unprocessable"}
			}
			return clienttest.Reply{Action: clienttest.Ack}
		},
	})
	var rejected []error
	var mu sync.Mutex
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 1
	cfg.OnResult = func(r client.Result) {
		if r.Err != nil {
			mu.Lock()
			rejected = append(rejected, r.Err)
			mu.Unlock()
		}
	}
	c := newClient(t, cfg)
	send(t, c, "ok1")
	send(t, c, "bad")
	send(t, c, "ok2")
	err := flush(c)
	if !errors.Is(err, client.ErrRejected) || !strings.Contains(err.Error(), "rejected: unprocessable") {
		t.Fatalf("Flush: %v, want ErrRejected with the reason", err)
	}
	if err := flush(c); err != nil {
		t.Fatalf("second Flush: %v; the rejection was already reported", err)
	}
	got := bodies(srv)
	if got["bad"] != 1 || got["ok1"] != 1 || got["ok2"] != 1 {
		t.Fatalf("received %v; want each once (the rejected packet not resent)", got)
	}
	st := c.Stats()
	if st.PacketsRejected != 1 || st.MessagesRejected != 1 || st.MessagesAcked != 2 || st.PacketsResent != 0 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	var re *client.RejectError
	if len(rejected) != 1 || !errors.As(rejected[0], &re) || re.Code != frame.CodeRejected || re.Addr != srv.Addr() {
		t.Fatalf("OnResult errors %v, want one *RejectError with code rejected", rejected)
	}
}

// (f) The client never has more DATA unresolved than the granted window,
// whichever side sets it.
func TestWindowRespected(t *testing.T) {
	f := func(clientWindow int, serverWindow uint32, want int) {
		t.Helper()
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
			Window: serverWindow,
			// Answer only when the window is full, so the client has to
			// stop at its limit.
			OnData: func(d clienttest.Data) clienttest.Reply {
				if d.Unresolved >= want {
					return clienttest.Reply{Action: clienttest.Ack}
				}
				return clienttest.Reply{Action: clienttest.Hold}
			},
		})
		cfg := testConfig(srv.Addr())
		cfg.Window = clientWindow
		cfg.BatchMessages = 1
		c := newClient(t, cfg)
		for i := range 10 * want {
			send(t, c, fmt.Sprintf("m%d", i))
		}
		if err := flush(c); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		most := 0
		for _, d := range srv.Received() {
			most = max(most, d.Unresolved)
		}
		if most != want {
			t.Fatalf("window %d/%d: at most %d unresolved, want exactly %d", clientWindow, serverWindow, most, want)
		}
		noViolations(t, srv)
		c.Close()
		srv.Kill()
	}
	f(16, 4, 4) // the server grants less than asked
	f(3, 1024, 3)
}

// (g) When MaxPending is reached Send fails with ErrFull, or with Block
// waits until ctx is done or room is made.
func TestSendWhenFull(t *testing.T) {
	body := strings.Repeat("x", 100)
	setup := func(block bool) (*client.Client, *clienttest.Server) {
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
			OnData: func(clienttest.Data) clienttest.Reply { return clienttest.Reply{Action: clienttest.Hold} },
		})
		cfg := testConfig(srv.Addr())
		cfg.BatchMessages = 1
		cfg.MaxPending = 1000 // 7 messages of 100-byte bodies
		cfg.Block = block
		return newClient(t, cfg), srv
	}
	t.Run("ErrFull", func(t *testing.T) {
		c, _ := setup(false)
		var err error
		n := 0
		for ; n < 100 && err == nil; n++ {
			err = c.Send(context.Background(), msg(body))
		}
		if !errors.Is(err, client.ErrFull) || n != 8 {
			t.Fatalf("Send #%d: %v, want ErrFull at #8", n, err)
		}
	})
	t.Run("Block", func(t *testing.T) {
		c, srv := setup(true)
		for range 7 {
			send(t, c, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := c.Send(ctx, msg(body))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send when full: %v, want it to block until the deadline", err)
		}
		waitFor(t, "7 packets at the server", func() bool { return len(srv.Received()) == 7 })
		done := make(chan error, 1)
		go func() { done <- c.Send(context.Background(), msg("unblocked")) }()
		srv.AckAll()
		if err := <-done; err != nil {
			t.Fatalf("blocked Send after the acks: %v", err)
		}
		waitFor(t, "the unblocked message", func() bool { return bodies(srv)["unblocked"] == 1 })
	})
}

// (h) Many goroutines send at once; every message arrives and the
// counters add up.
func TestConcurrentSend(t *testing.T) {
	const workers, each = 8, 1000
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	var acked atomic.Int64
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 50
	cfg.Block = true
	cfg.OnResult = func(r client.Result) { acked.Add(int64(r.Messages)) }
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := c.Send(context.Background(), msg(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := bodies(srv)
	if len(got) != workers*each {
		t.Fatalf("%d distinct messages received, want %d", len(got), workers*each)
	}
	st := c.Stats()
	if st.MessagesAcked != workers*each || acked.Load() != workers*each || st.PendingMessages != 0 {
		t.Fatalf("stats %+v, OnResult %d; want %d acked", st, acked.Load(), workers*each)
	}
	if st.PacketsAcked != st.PacketsSent {
		t.Fatalf("%d packets sent, %d acked", st.PacketsSent, st.PacketsAcked)
	}
	noViolations(t, srv)
}

// Batches whose frame exceeds the server's max frame are split; a message
// that cannot fit any frame is refused by Send.
func TestMaxFrame(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{MaxFrame: 4096})
	cfg := testConfig(srv.Addr())
	c := newClient(t, cfg)
	waitFor(t, "the connection", func() bool { return c.Stats().Addr != "" })
	want := make(map[string]bool)
	for range 100 {
		b := make([]byte, 200)
		rand.Read(b) // incompressible
		want[string(b)] = true
		if err := c.Send(context.Background(), msg(string(b))); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := bodies(srv)
	for b := range want {
		if got[b] != 1 {
			t.Fatal("a message was lost or duplicated in splitting")
		}
	}
	for _, d := range srv.Received() {
		if d.PayloadLen > 4096 {
			t.Fatalf("frame of %d bytes sent, server max 4096", d.PayloadLen)
		}
	}
	if n := len(srv.Received()); n < 5 {
		t.Fatalf("only %d packets for 20 KB of incompressible data", n)
	}
	big := make([]byte, 5000)
	rand.Read(big)
	if err := c.Send(context.Background(), msg(string(big))); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Send of a 5000-byte message with max frame 4096: %v, want ErrTooLarge", err)
	}
	long := strings.Repeat("x", int(cfg.Limits.MaxBody)+1)
	if err := c.Send(context.Background(), msg(long)); !errors.Is(err, frame.ErrFieldTooLong) {
		t.Fatalf("Send of a body above MaxBody: %v, want frame.ErrFieldTooLong", err)
	}
	noViolations(t, srv)
}

// A server that does not grant zstd gets uncompressed frames.
func TestNoZstd(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{NoZstd: true})
	c := newClient(t, testConfig(srv.Addr()))
	for i := range 100 {
		send(t, c, strings.Repeat("compressible ", 10)+fmt.Sprint(i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for _, d := range srv.Received() {
		if d.Compressed {
			t.Fatal("compressed frame sent to a server without zstd")
		}
	}
	if len(bodies(srv)) != 100 {
		t.Fatal("messages lost")
	}
}

// With FastDecode the packets are compressed (the literals only are not
// entropy-coded) and arrive whole.
func TestFastDecodeSends(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	cfg := testConfig(srv.Addr())
	cfg.FastDecode = true
	c := newClient(t, cfg)
	for i := range 100 {
		send(t, c, strings.Repeat("compressible ", 10)+fmt.Sprint(i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for _, d := range srv.Received() {
		if !d.Compressed {
			t.Fatal("FastDecode sent an uncompressed frame")
		}
	}
	if got := bodies(srv); len(got) != 100 {
		t.Fatalf("%d of 100 messages received", len(got))
	}
}

// PING/PONG: an idle connection is pinged within the idle timeout; one
// whose PONG never comes is replaced.
func TestPing(t *testing.T) {
	t.Run("KeepAlive", func(t *testing.T) {
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{IdleTimeoutMs: 150})
		c := newClient(t, testConfig(srv.Addr()))
		waitFor(t, "3 pings", func() bool { return srv.Pings() >= 3 })
		if n := srv.Conns(); n != 1 || c.Stats().Reconnects != 0 {
			t.Fatalf("%d connections; a healthy connection was replaced", n)
		}
	})
	t.Run("ServerPing", func(t *testing.T) {
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
		c := newClient(t, testConfig(srv.Addr()))
		waitFor(t, "the connection", func() bool { return c.Stats().Addr != "" })
		srv.Ping()
		waitFor(t, "the PONG", func() bool { return srv.Pongs() == 1 })
	})
	t.Run("AliveWithoutPong", func(t *testing.T) {
		// A server that is slow to answer PONG but keeps sending other
		// frames is alive (PROTOCOL.md 11.3): the client keeps the
		// connection. It used to close it at the PONG timeout and resend
		// everything in flight.
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{IdleTimeoutMs: 150, NoPong: true})
		cfg := testConfig(srv.Addr())
		cfg.PongTimeout = 100 * time.Millisecond
		c := newClient(t, cfg)
		waitFor(t, "a PING", func() bool { return srv.Pings() >= 1 })
		tick := time.NewTicker(20 * time.Millisecond) // the server's other frames
		defer tick.Stop()
		for end := time.Now().Add(time.Second); time.Now().Before(end); <-tick.C {
			srv.Ping()
		}
		if n := srv.Conns(); n != 1 {
			t.Fatalf("%d connections: the client closed a server that kept talking (%v)", n, c.Stats().LastError)
		}
		waitFor(t, "a reconnect once the server goes quiet", func() bool { return srv.Conns() >= 2 })
	})
	t.Run("DeadConnection", func(t *testing.T) {
		srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{IdleTimeoutMs: 150, NoPong: true})
		cfg := testConfig(srv.Addr())
		cfg.PongTimeout = 100 * time.Millisecond
		c := newClient(t, cfg)
		waitFor(t, "a reconnect after the missing PONG", func() bool { return srv.Conns() >= 2 })
		waitFor(t, "the error", func() bool {
			err := c.Stats().LastError
			return err != nil && strings.Contains(err.Error(), "no PONG")
		})
	})
}

// A connection closed without an answer: its packets are resent on the
// next one.
func TestConnectionDropped(t *testing.T) {
	var dropped atomic.Bool
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(clienttest.Data) clienttest.Reply {
			if dropped.CompareAndSwap(false, true) {
				return clienttest.Reply{Action: clienttest.Drop}
			}
			return clienttest.Reply{Action: clienttest.Ack}
		},
	})
	c := newClient(t, testConfig(srv.Addr()))
	for i := range 10 {
		send(t, c, fmt.Sprintf("m%d", i))
	}
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := bodies(srv); len(got) != 10 {
		t.Fatalf("received %d distinct messages, want 10", len(got))
	}
	if st := c.Stats(); st.Reconnects != 1 || st.PacketsResent == 0 {
		t.Fatalf("stats %+v: want one reconnect and a resend", st)
	}
}

// Flush gives up at its deadline with the reason; Close drops and says so.
func TestUnreachable(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	addr := srv.Addr()
	srv.Kill()
	cfg := testConfig(addr)
	cfg.CloseTimeout = 10 * time.Millisecond
	c := newClient(t, cfg)
	send(t, c, "m")
	waitFor(t, "a dial error", func() bool { return c.Stats().LastError != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Flush(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Flush: %v, want the deadline and the dial error", err)
	}
	if err := c.Close(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(name string, mod func(*client.Config)) {
		t.Helper()
		cfg := client.DefaultConfig()
		mod(&cfg)
		if _, err := client.New(cfg); !errors.Is(err, client.ErrInvalidConfig) {
			t.Errorf("%s: New: %v, want ErrInvalidConfig", name, err)
		}
	}
	f("no addrs", func(c *client.Config) { c.Addrs = nil })
	f("bad addr", func(c *client.Config) { c.Addrs = []string{"nohostport"} })
	f("empty agent", func(c *client.Config) { c.AgentID = "" })
	f("window", func(c *client.Config) { c.Window = 0 })
	f("batch", func(c *client.Config) { c.BatchMessages = 0 })
	f("batch above limit", func(c *client.Config) { c.BatchMessages = 20000 })
	f("batch bytes", func(c *client.Config) { c.BatchBytes = 8 << 20 })
	f("pending", func(c *client.Config) { c.MaxPending = 0 })
	f("backoff", func(c *client.Config) { c.BackoffMax = c.BackoffMin / 2 })
	f("limits", func(c *client.Config) { c.Limits.MaxFrame = 0 })
	f("level", func(c *client.Config) { c.Level = 0 })
	f("fast decode without compression", func(c *client.Config) { c.Compress, c.FastDecode = false, true })
	cfg := client.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
}

// With a single address, GOAWAY makes the client reconnect to it.
func TestGoAwaySingleAddress(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	c := newClient(t, testConfig(srv.Addr()))
	send(t, c, "before")
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	srv.GoAway()
	waitFor(t, "a new connection", func() bool { return srv.Conns() == 2 && c.Stats().Addr != "" })
	send(t, c, "after")
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := bodies(srv); got["before"] != 1 || got["after"] != 1 {
		t.Fatalf("received %v", got)
	}
	noViolations(t, srv)
}

// A server that breaks the protocol gets ERROR protocol, and the client
// reconnects.
func TestServerProtocolViolation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer nc.Close()
		lim := frame.DefaultLimits()
		rd := frame.NewReader(nc, &lim)
		if _, _, err := rd.Next(); err != nil { // HELLO
			got <- err.Error()
			return
		}
		nc.Write(frame.AppendWelcome(nil, &frame.Welcome{Window: 8, MaxFrame: 1 << 20}))
		nc.Write(frame.AppendAck(nil, 5)) // nothing was sent
		h, payload, err := rd.Next()
		if err != nil {
			got <- err.Error()
			return
		}
		code, reason, _ := frame.DecodeReason(payload)
		got <- fmt.Sprintf("%s seq=%d %s: %s", h.Type(), h.Seq(), code, reason)
	}()
	cfg := testConfig(ln.Addr().String())
	c := newClient(t, cfg)
	want := "ERROR seq=0 protocol: the server acknowledged sequence 5; only 0 were sent"
	if g := <-got; g != want {
		t.Fatalf("server got %q\nwant %q", g, want)
	}
	waitFor(t, "the error in Stats", func() bool {
		err := c.Stats().LastError
		return err != nil && strings.Contains(err.Error(), "acknowledged sequence 5")
	})
}

// Packets built for one server are re-encoded when they are resent to a
// server that grants no zstd and smaller frames.
func TestResendAdaptsToNextServer(t *testing.T) {
	a := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		OnData: func(clienttest.Data) clienttest.Reply { return clienttest.Reply{Action: clienttest.Hold} },
	})
	b := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{NoZstd: true, MaxFrame: 4096})
	cfg := testConfig(a.Addr(), b.Addr())
	cfg.Linger = time.Hour // one packet, sealed by Flush
	c := newClient(t, cfg)
	for i := range 100 {
		send(t, c, fmt.Sprintf("%03d %s", i, strings.Repeat("compressible text ", 10)))
	}
	done := make(chan error, 1)
	go func() { done <- flush(c) }()
	waitFor(t, "the packet at the first server", func() bool { return len(a.Received()) == 1 })
	if d := a.Received()[0]; !d.Compressed || len(d.Bodies) != 100 || d.PayloadLen > 4096 {
		t.Fatalf("first server got %d messages, compressed %v, %d bytes; want 100, compressed, < 4096",
			len(d.Bodies), d.Compressed, d.PayloadLen)
	}
	a.Kill()
	if err := <-done; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	recv := b.Received()
	if len(recv) < 2 {
		t.Fatalf("second server got %d packets; the 20 KB packet should have been split", len(recv))
	}
	for _, d := range recv {
		if d.Compressed || d.PayloadLen > 4096 {
			t.Fatalf("second server got a frame of %d bytes, compressed %v", d.PayloadLen, d.Compressed)
		}
	}
	if got := bodies(b); len(got) != 100 {
		t.Fatalf("second server got %d distinct messages, want 100", len(got))
	}
	if st := c.Stats(); st.MessagesAcked != 100 || st.PendingMessages != 0 {
		t.Fatalf("stats %+v", st)
	}
	noViolations(t, a, b)
}

// A server granting selective ACKs resolves packets out of order: every
// packet it accepts is reported acknowledged at once, while an older one
// is still held, and the window slot it held is free again.
func TestSelectiveAcks(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		Sack:   true,
		Window: 4,
		OnData: func(d clienttest.Data) clienttest.Reply {
			if d.Bodies[0] == "slow" {
				return clienttest.Reply{Action: clienttest.Hold}
			}
			return clienttest.Reply{Action: clienttest.Sack}
		},
	})
	var mu sync.Mutex
	acked := map[uint64]bool{}
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 1
	cfg.OnResult = func(r client.Result) {
		if r.Err == nil {
			mu.Lock()
			acked[r.PacketID] = true
			mu.Unlock()
		}
	}
	c := newClient(t, cfg)
	send(t, c, "slow")
	// Twenty packets through a window of 4 while "slow" holds a slot: only
	// possible if each SACK frees its packet's slot.
	for i := range 20 {
		send(t, c, fmt.Sprintf("m%d", i))
	}
	waitFor(t, "twenty packets acknowledged around the held one", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == 20
	})
	for _, d := range srv.Received() {
		mu.Lock()
		got := acked[d.PacketID]
		mu.Unlock()
		if got == (d.Bodies[0] == "slow") {
			t.Fatalf("packet %q acknowledged=%v", d.Bodies[0], got)
		}
	}
	srv.AckAll()
	if err := flush(c); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := c.Stats(); st.PacketsAcked != 21 || st.PacketsResent != 0 {
		t.Fatalf("stats %+v: want 21 acked, none resent", st)
	}
	noViolations(t, srv)
}

// PROTOCOL.md 11.1: the sequence gap counts from the oldest unresolved
// DATA. A SACK server may leave its cumulative point below a packet it
// answered BUSY (clienttest does); the client measured the gap from that
// resolved packet and stopped sending after 8 windows, with nothing
// unresolved.
func TestGapFromOldestUnresolved(t *testing.T) {
	var n atomic.Int64
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{
		Sack:   true,
		Window: 2,
		OnData: func(d clienttest.Data) clienttest.Reply {
			if n.Add(1) == 1 {
				return clienttest.Reply{Action: clienttest.Busy}
			}
			return clienttest.Reply{Action: clienttest.Sack}
		},
	})
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 1
	cfg.Linger = 0
	c := newClient(t, cfg)
	for i := range 40 {
		send(t, c, fmt.Sprintf("m%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		st := c.Stats()
		t.Fatalf("Flush: %v (DATA received %d, acked %d, pending %d)", err, len(srv.Received()), st.PacketsAcked, st.PendingMessages)
	}
	noViolations(t, srv)
}

// A server that sends DATA (never legal towards a client) whose header
// breaks a packet limit gets ERROR seq 0 with the connection code
// protocol, not the packet's code.
func TestDataFromServerIsProtocolError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan frame.Code, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		lim := frame.DefaultLimits()
		rd := frame.NewReader(nc, &lim)
		if _, _, err := rd.Next(); err != nil {
			return
		}
		nc.Write(frame.AppendWelcome(nil, &frame.Welcome{Window: 8, MaxFrame: 1 << 20}))
		payload := make([]byte, 16+20*20000) // 20,000 messages > MaxMessages
		nc.Write(frame.AppendHeader(nil, frame.TypeData, 0, 1, 20000, uint32(len(payload)), uint32(len(payload)), frame.Checksum(payload)))
		nc.Write(payload)
		for {
			h, p, err := rd.Next()
			if err != nil {
				return
			}
			if h.Type() == frame.TypeError {
				code, _, _ := frame.DecodeReason(p)
				got <- code
				return
			}
		}
	}()
	newClient(t, testConfig(ln.Addr().String()))
	select {
	case code := <-got:
		if code != frame.CodeProtocol {
			t.Fatalf("client answered ERROR %s, want protocol", code)
		}
	case <-done:
		t.Fatal("no ERROR from the client")
	}
}

// Flush returns only once OnResult has returned for every packet it
// waited for: a caller counting acknowledgements there sees them all when
// Flush returns. OnResult runs on the connection's reader goroutine after
// the packet is resolved; before Flush waited for it, a slow callback
// (here a few microseconds of work per packet) was still running for the
// last packets when Flush returned.
func TestFlushWaitsForOnResult(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	var acked atomic.Int64
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 1 // a packet, and a result, per message
	cfg.OnResult = func(r client.Result) {
		for deadline := time.Now().Add(50 * time.Microsecond); time.Now().Before(deadline); {
		}
		if r.Err == nil {
			acked.Add(int64(r.Messages))
		}
	}
	c := newClient(t, cfg)
	sent := 0
	for round := range 20 {
		for i := range 50 {
			send(t, c, fmt.Sprintf("r%d-m%d", round, i))
			sent++
		}
		if err := flush(c); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if got := acked.Load(); got != int64(sent) {
			t.Fatalf("round %d: Flush returned with OnResult reporting %d of %d messages acknowledged", round, got, sent)
		}
	}
}

// Flush waits for the callbacks of the packets it waits for, not for
// those of packets sent after it was called: here the callback of a
// later packet is held while Flush must return.
func TestFlushIgnoresLaterCallbacks(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	entered := make(chan int, 2)
	gates := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var calls atomic.Int64
	cfg := testConfig(srv.Addr())
	cfg.BatchMessages = 1
	cfg.OnResult = func(client.Result) {
		i := int(calls.Add(1)) - 1
		if i < 2 {
			entered <- i
			<-gates[i]
		}
	}
	c := newClient(t, cfg)
	released := false
	defer func() {
		if !released {
			close(gates[1])
		}
	}()
	send(t, c, "first")
	flushed := make(chan error, 1)
	go func() { flushed <- flush(c) }()
	if i := <-entered; i != 0 { // the first packet's callback runs, held
		t.Fatalf("callback %d first", i)
	}
	send(t, c, "second") // after Flush was called: not its business
	// Its ACK reaches the client while the first callback is held, so the
	// reader resolves it right after that callback returns.
	waitFor(t, "the server to receive the second packet", func() bool { return len(srv.Received()) == 2 })
	close(gates[0])
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatalf("Flush: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush did not return while a later packet's callback was held")
	}
	if i := <-entered; i != 1 {
		t.Fatalf("callback %d second", i)
	}
	close(gates[1])
	released = true
	if err := flush(c); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
}
