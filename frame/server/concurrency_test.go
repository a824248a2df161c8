package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

// sendAll writes n packets (ids 1…n) in one write, alternately compressed.
func sendAll(t *testing.T, c *servertest.Client, n int) {
	t.Helper()
	var b []byte
	for i := 1; i <= n; i++ {
		b = c.AppendData(b, packet(uint64(i), 2), i%2 == 0)
	}
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// With Concurrency 8, 64 packets whose handler takes 20 ms are handled 8
// at a time, complete out of order, and every cumulative ACK covers only
// packets whose handler returned.
func TestConcurrencyHandlesInParallel(t *testing.T) {
	const n, conc, delay = 64, 8, 20 * time.Millisecond
	var (
		mu        sync.Mutex
		done      = map[uint64]bool{}
		order     []uint64
		running   int
		most      int
		badPacket error
	)
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		mu.Lock()
		running++
		most = max(most, running)
		if p.ID != md.Seq || len(p.Messages) != 2 || string(p.AgentID) != "agent-1" ||
			!strings.HasPrefix(string(p.Messages[1].Body), "message 1 of packet ") {
			badPacket = errors.New("packet does not match its seq: " + string(p.Messages[1].Body))
		}
		mu.Unlock()
		d := delay
		if md.Seq%8 == 1 {
			d += delay / 2 // the oldest of each batch finishes last
		}
		time.Sleep(d)
		// The packet must still be intact after the others were read.
		body := string(p.Messages[1].Body)
		mu.Lock()
		if want := "message 1 of packet "; !strings.HasPrefix(body, want) || body[len(want):] != itoa(md.Seq) {
			badPacket = errors.New("packet changed during its handler: " + body)
		}
		running--
		done[md.Seq] = true
		order = append(order, md.Seq)
		mu.Unlock()
		return nil
	})
	_, addr := start(t, h, func(c *server.Config) { c.Concurrency = conc; c.Window = n })
	c := dial(t, addr)
	t0 := time.Now()
	sendAll(t, c, n)
	acks := 0
	for last := uint64(0); last < n; {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after ACK %d: %v", last, err)
		}
		if f.Type != frame.TypeAck || f.Seq <= last || f.Seq > n {
			t.Fatalf("want a growing ACK after %d, got %s", last, f)
		}
		mu.Lock()
		for s := uint64(1); s <= f.Seq; s++ {
			if !done[s] {
				mu.Unlock()
				t.Fatalf("ACK %d covers seq %d, whose handler has not returned", f.Seq, s)
			}
		}
		mu.Unlock()
		last = f.Seq
		acks++
	}
	elapsed := time.Since(t0)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d packets × %s, concurrency %d: %s, %d ACKs, at most %d handlers at once", n, delay, conc, elapsed, acks, most)
	if badPacket != nil {
		t.Fatal(badPacket)
	}
	if len(order) != n {
		t.Fatalf("%d packets handled, want %d", len(order), n)
	}
	if most != conc {
		t.Errorf("at most %d handlers ran at once, want %d", most, conc)
	}
	inOrder := true
	for i := 1; i < len(order); i++ {
		inOrder = inOrder && order[i] > order[i-1]
	}
	if inOrder {
		t.Errorf("handlers completed in sequence order; the test wants out-of-order completion")
	}
	// Serially it takes 64 × 20 ms = 1.28 s; 8 at a time about 8 × 30 ms.
	// Half the serial time leaves room for a loaded machine under -race.
	if limit := n * delay / 2; elapsed > limit {
		t.Errorf("64 packets took %s with concurrency %d; want under %s", elapsed, conc, limit)
	}
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; v > 0; v /= 10 {
		i--
		b[i] = byte('0' + v%10)
	}
	return string(b[i:])
}

// BUSY and Reject from concurrent handlers, finishing out of order,
// resolve the packet they were about.
func TestConcurrentVerdicts(t *testing.T) {
	release := map[uint64]chan struct{}{}
	for id := uint64(1); id <= 8; id++ {
		release[id] = make(chan struct{})
	}
	var started atomic.Int32
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		started.Add(1)
		<-release[p.ID]
		switch p.ID {
		case 3:
			return server.Busy(250 * time.Millisecond)
		case 5:
			return server.Reject("cannot parse this")
		case 6:
			return errors.New("disk full")
		}
		return nil
	})
	_, addr := start(t, h, func(c *server.Config) { c.Concurrency = 8; c.BusyRetryAfter = 70 * time.Millisecond })
	c := dial(t, addr)
	sendAll(t, c, 8)
	waitFor(t, "8 handlers running", func() bool { return started.Load() == 8 })
	// Release from the newest down: every verdict arrives before the
	// packets ahead of it are resolved.
	for id := uint64(8); id >= 1; id-- {
		close(release[id])
	}
	busy := map[uint64]time.Duration{}
	rejected := map[uint64]string{}
	for last := uint64(0); last < 8; {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after ACK %d: %v", last, err)
		}
		switch f.Type {
		case frame.TypeAck:
			if f.Seq <= last {
				t.Fatalf("ACK %d after %d", f.Seq, last)
			}
			last = f.Seq
		case frame.TypeBusy:
			busy[f.Seq] = f.RetryAfter
		case frame.TypeError:
			if f.Code != frame.CodeRejected {
				t.Fatalf("unexpected %s", f)
			}
			rejected[f.Seq] = f.Reason
		default:
			t.Fatalf("unexpected %s", f)
		}
	}
	if len(busy) != 2 || busy[3] != 250*time.Millisecond || busy[6] != 70*time.Millisecond {
		t.Errorf("BUSY %v, want seq 3 retry-after 250ms and seq 6 70ms", busy)
	}
	if len(rejected) != 1 || rejected[5] != "cannot parse this" {
		t.Errorf("rejected %v, want seq 5", rejected)
	}
}

// A connection-code error from one of several concurrent handlers ends
// the connection with that ERROR once the others returned; what they
// accepted is acknowledged first.
func TestConcurrentFatalVerdict(t *testing.T) {
	first := make(chan struct{})
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		switch p.ID {
		case 1:
			close(first)
			return nil
		case 2:
			<-first
			return &frame.Error{Code: frame.CodeInternal, Msg: "analyzer failed"}
		}
		return nil
	})
	_, addr := start(t, h, func(c *server.Config) { c.Concurrency = 4 })
	c := dial(t, addr)
	sendAll(t, c, 2)
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("want ERROR internal: %v", err)
		}
		if f.Type == frame.TypeAck && f.Seq == 1 {
			continue
		}
		if f.Type != frame.TypeError || f.Seq != 0 || f.Code != frame.CodeInternal {
			t.Fatalf("want ERROR seq=0 internal, got %s", f)
		}
		break
	}
	expectClosed(t, c)
}

// A graceful drain waits for the handlers in flight, which keep their
// context, and writes their answers before the connection closes.
func TestConcurrentDrainWaitsForHandlers(t *testing.T) {
	release := make(chan struct{})
	var started, cancelled atomic.Int32
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		started.Add(1)
		<-release
		if ctx.Err() != nil {
			cancelled.Add(1)
		}
		return nil
	})
	srv, addr := start(t, h, func(c *server.Config) { c.Concurrency = 4; c.DrainTimeout = 10 * time.Second })
	c := dial(t, addr)
	sendAll(t, c, 4)
	waitFor(t, "4 handlers running", func() bool { return started.Load() == 4 })
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	expect(t, c, frame.TypeGoAway, 0, frame.CodeShutdown)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with 4 handlers in flight", err)
	default:
	}
	close(release)
	if err := c.WaitAck(4); err != nil {
		t.Fatalf("want the 4 packets in flight acknowledged: %v", err)
	}
	c.Close()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := cancelled.Load(); n != 0 {
		t.Errorf("%d handlers saw their context cancelled by a graceful drain", n)
	}
}

// Past the drain timeout the handlers in flight get their context
// cancelled, and nothing is left running.
func TestConcurrentDrainTimeoutCancels(t *testing.T) {
	var started atomic.Int32
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		started.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	srv, addr := start(t, h, func(c *server.Config) { c.Concurrency = 4; c.DrainTimeout = 50 * time.Millisecond })
	c := dial(t, addr)
	sendAll(t, c, 6) // 4 in handlers, 2 waiting for a slot
	waitFor(t, "4 handlers running", func() bool { return started.Load() == 4 })
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if n := started.Load(); n != 4 {
		t.Errorf("%d handlers called, want 4 (none after the kill)", n)
	}
}

func TestConcurrencyValidate(t *testing.T) {
	for _, n := range []int{-1, server.MaxConcurrency + 1} {
		cfg := server.DefaultConfig()
		cfg.Concurrency = n
		err := cfg.Validate()
		if !errors.Is(err, server.ErrBadConfig) || !strings.Contains(err.Error(), "concurrency") {
			t.Errorf("concurrency %d: %v", n, err)
		}
	}
	for _, n := range []int{0, 1, 8, server.MaxConcurrency} {
		cfg := server.DefaultConfig()
		cfg.Concurrency = n
		if err := cfg.Validate(); err != nil {
			t.Errorf("concurrency %d: %v", n, err)
		}
	}
}
