package proxy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/internal/spool"
	"github.com/logdist/logdist/proxy"
)

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// spoolProxy starts a proxy over analyzers at addrs (which may not be
// listening yet) with its spool in dir.
func spoolProxy(t *testing.T, dir string, addrs []string, edit func(*proxy.Config)) *proxy.Server {
	t.Helper()
	names := make([]string, len(addrs))
	for i := range addrs {
		names[i] = fmt.Sprintf("a%d", i+1)
	}
	return startProxyAddrs(t, names, addrs, func(c *proxy.Config) {
		c.DataDir = dir
		c.Balancer.BreakerBackoff = 50 * time.Millisecond
		c.Balancer.BreakerMaxBackoff = 100 * time.Millisecond
		c.RedialMax = 100 * time.Millisecond
		c.Spool.Sync = spool.SyncInterval(10 * time.Millisecond)
		if edit != nil {
			edit(c)
		}
	})
}

// received counts the packets of agent 1..n that reached any of as.
func received(as []*analyzer, agent string, n int) (got int, missing []int) {
	for i := 1; i <= n; i++ {
		key := fmt.Sprintf("%s/%d", agent, i)
		found := false
		for _, a := range as {
			if a != nil && a.has(key) {
				found = true
			}
		}
		if found {
			got++
		} else if len(missing) < 10 {
			missing = append(missing, i)
		}
	}
	return got, missing
}

// With --ack-mode spool an agent's packets are acknowledged once durable
// in the spool, with every analyzer down; they reach the analyzers when
// they come up, and the spool empties.
func TestAckModeSpool(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t)}
	s := spoolProxy(t, t.TempDir(), addrs, func(c *proxy.Config) { c.AckMode = proxy.AckSpool })
	defer s.Stop(t.Context())
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 500
	sendAll(t, c, "agent-1", 1, n, 64) // fails on anything but ACKs
	if got := metricSum(s, "logdist_spool_appended_total"); got != n {
		t.Fatalf("spool appended %v packets, want %d", got, n)
	}
	as := []*analyzer{startAnalyzer(t, "a1", addrs[0]), startAnalyzer(t, "a2", addrs[1])}
	defer as[0].srv.Close()
	defer as[1].srv.Close()
	waitFor(t, "every spooled packet delivered", 20*time.Second, func() bool {
		got, _ := received(as, "agent-1", n)
		return got == n
	})
	waitFor(t, "the spool acknowledged empty", 10*time.Second, func() bool {
		return metricSum(s, "logdist_spool_records") == 0
	})
}

// With --ack-mode analyzer and a data directory, packets that find every
// analyzer down and the waiting queue full spill to the spool instead of
// getting BUSY: acknowledged once durable, read back when the analyzers
// return, and delivered.
func TestSpillWhenAllDown(t *testing.T) {
	addr := freeAddr(t)
	s := spoolProxy(t, t.TempDir(), []string{addr}, func(c *proxy.Config) { c.QueueMaxPackets = 50 })
	defer s.Stop(t.Context())
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 2000
	// The newest 50 wait in the queue (holding the cumulative ACK); the
	// others spill and are acknowledged.
	sendUntilAcked(t, c, "agent-1", n, 128, n-50)
	if v := metricSum(s, "logdist_spool_spilled_total"); v < n-100 {
		t.Fatalf("spilled %v packets, want about %d (the queue holds 50)", v, n)
	}
	if v := metricSum(s, "logdist_agent_busy_total"); v != 0 {
		t.Fatalf("%v BUSY with a spool to spill to", v)
	}
	a := startAnalyzer(t, "a1", addr)
	defer a.srv.Close()
	waitFor(t, "every packet delivered", 30*time.Second, func() bool {
		got, _ := received([]*analyzer{a}, "agent-1", n)
		return got == n
	})
	waitFor(t, "the spool empty", 10*time.Second, func() bool { return metricSum(s, "logdist_spool_records") == 0 })
	if v := metricSum(s, "logdist_spool_replayed_total"); v < n-100 {
		t.Fatalf("replayed %v, want the spilled ones", v)
	}
}

// A restart on the same data directory replays what no analyzer
// acknowledged before it.
func TestRestartReplaysSpool(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	s := spoolProxy(t, dir, []string{addr}, func(c *proxy.Config) { c.AckMode = proxy.AckSpool })
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	sendAll(t, c, "agent-1", 1, n, 64)
	c.Close()
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := startAnalyzer(t, "a1", addr)
	defer a.srv.Close()
	s2 := spoolProxy(t, dir, []string{addr}, nil)
	defer s2.Stop(t.Context())
	waitFor(t, "the spooled packets delivered after the restart", 20*time.Second, func() bool {
		got, _ := received([]*analyzer{a}, "agent-1", n)
		return got == n
	})
	if v := metricSum(s2, "logdist_spool_replayed_total"); v != n {
		t.Fatalf("replayed %v, want %d", v, n)
	}
}

// A packet an analyzer rejects for good goes to the dead letters with
// the analyzer's reason; its agent gets ERROR; a replay once the analyzer
// accepts it delivers it, and empties the dead letters.
func TestDeadLetterRejectedAndReplayed(t *testing.T) {
	a := startAnalyzer(t, "a1", "127.0.0.1:0")
	defer a.srv.Close()
	a.reject = func(p *frame.Packet) bool { return p.ID == 7 }
	s := spoolProxy(t, t.TempDir(), []string{a.srv.Addr().String()}, nil)
	defer s.Stop(t.Context())
	waitFor(t, "a1 healthy", 5*time.Second, allHealthy(s, 1))
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf []byte
	for i := uint64(1); i <= 10; i++ {
		buf = c.AppendData(buf, pkt("agent-1", i), true)
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	sawError := false
	for acked := uint64(0); acked < 10; {
		f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case f.Type == frame.TypeAck:
			acked = f.Seq
		case f.Type == frame.TypeError && f.Seq == 7:
			sawError = true
		default:
			t.Fatalf("unexpected %s", f)
		}
	}
	if !sawError {
		t.Fatal("no ERROR for the rejected packet")
	}
	var list []proxy.DeadLetter
	waitFor(t, "the dead letter written", 5*time.Second, func() bool {
		list, _, err = s.DeadLetters(0, 10)
		return err == nil && len(list) == 1 && metricSum(s, "logdist_dead_lettered_total") == 1
	})
	dl := list[0]
	if dl.Reason != "rejected" || dl.Analyzer != "a1" || dl.Error != "this test's analyzer rejects it" || dl.Code != frame.CodeRejected.String() || dl.Messages != 1 {
		t.Fatalf("dead letter %+v", dl)
	}
	if v := metricSum(s, "logdist_dead_lettered_total"); v != 1 {
		t.Fatalf("logdist_dead_lettered_total %v, want 1", v)
	}
	a.mu.Lock()
	a.reject = nil // fixed
	a.mu.Unlock()
	n, err := s.ReplayDeadLetters(nil)
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	waitFor(t, "the replayed packet delivered", 10*time.Second, func() bool { return a.has("agent-1/7") })
	if list, _, err := s.DeadLetters(0, 10); err != nil || len(list) != 0 {
		t.Fatalf("dead letters after the replay: %v, %v", list, err)
	}
}

// Every overflow policy does what it says when the spool's cap is reached
// with every analyzer down: block answers BUSY, drop-newest drops (and
// acknowledges) the new packets, drop-oldest gives up the oldest segment;
// each counted, and what was kept is delivered when an analyzer returns.
func TestOverflowPolicies(t *testing.T) {
	for _, policy := range []proxy.Overflow{proxy.OverflowBlock, proxy.OverflowDropNewest, proxy.OverflowDropOldest} {
		t.Run(policy.String(), func(t *testing.T) { overflowCase(t, policy, t.TempDir(), 256<<10) })
	}
}

// The same with a full disk instead of a cap: the spool's directory on a
// 320 KiB tmpfs (mounted here: root only), --spool-max-bytes 0.
func TestOverflowDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; skipping the full-disk test")
	}
	for _, policy := range []proxy.Overflow{proxy.OverflowBlock, proxy.OverflowDropNewest, proxy.OverflowDropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", dir).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a tmpfs (%v: %s); skipping the full-disk test", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
			overflowCase(t, policy, dir, 0)
		})
	}
}

func overflowCase(t *testing.T, policy proxy.Overflow, dir string, maxBytes int64) {
	addr := freeAddr(t)
	s := spoolProxy(t, dir, []string{addr}, func(c *proxy.Config) {
		c.AckMode = proxy.AckSpool
		c.Overflow = policy
		c.QueueMaxPackets = 0 // every packet answered at once: spooled (ACK) or not (BUSY)
		c.Spool.SegmentBytes = 64 << 10
		c.Spool.MaxBytes = maxBytes
	})
	defer s.Stop(t.Context())
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 1 KiB a packet, not compressed: 256 KiB hold about 250, and
	// 600 fill a 320 KiB disk.
	const n = 600
	var buf []byte
	acked, busy := map[uint64]bool{}, 0
	for i := uint64(1); i <= n; i++ {
		p := pkt("agent-1", i)
		p.Messages[0].Body = make([]byte, 1000)
		buf = c.AppendData(buf[:0], p, false)
		if err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		// One at a time: the answer before the next. A BUSY comes
		// with the cumulative ACK that covers it.
		busyNow := false
		for {
			f, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == frame.TypeBusy && f.Seq == i {
				busyNow = true
				busy++
				continue
			}
			if f.Type != frame.TypeAck || f.Seq != i {
				t.Fatalf("packet %d answered with %s", i, f)
			}
			break
		}
		if !busyNow {
			acked[i] = true
		}
	}
	dropped := metricSum(s, `logdist_spool_dropped_total{policy="`+policy.String()+`"}`)
	t.Logf("%s: %d acked, %d BUSY, %v dropped, spool %v bytes", policy, len(acked), busy, dropped, metricSum(s, "logdist_spool_bytes"))
	switch policy {
	case proxy.OverflowBlock:
		if busy == 0 || dropped != 0 {
			t.Fatalf("block: %d BUSY, %v dropped; want BUSY and no drop", busy, dropped)
		}
	default:
		if busy != 0 || dropped == 0 || len(acked) != n {
			t.Fatalf("%s: %d BUSY, %v dropped, %d acked; want every packet acked and drops counted", policy, busy, dropped, len(acked))
		}
	}
	a := startAnalyzer(t, "a1", addr)
	defer a.srv.Close()
	want := len(acked) - int(dropped)
	waitFor(t, "what was kept delivered", 20*time.Second, func() bool {
		got, missing := received([]*analyzer{a}, "agent-1", n)
		if got < want {
			t.Logf("%d of %d delivered; missing %v; spool records %v, spilled %v, replayed %v", got, want, missing,
				metricSum(s, "logdist_spool_records"), metricSum(s, "logdist_spool_spilled_records"), metricSum(s, "logdist_spool_replayed_total"))
		}
		return got >= want
	})
	waitFor(t, "the spool empty", 10*time.Second, func() bool { return metricSum(s, "logdist_spool_records") == 0 })
	got, _ := received([]*analyzer{a}, "agent-1", n)
	if got != want {
		t.Fatalf("%d delivered, want %d acked minus %v dropped", got, len(acked), dropped)
	}
	if policy == proxy.OverflowBlock {
		for i := range acked {
			if !a.has(fmt.Sprintf("agent-1/%d", i)) {
				t.Fatalf("block: acknowledged packet %d not delivered", i)
			}
		}
	}
	if policy == proxy.OverflowDropOldest && a.has("agent-1/1") {
		t.Fatal("drop-oldest delivered the oldest packet")
	}
	if policy == proxy.OverflowDropNewest && !a.has("agent-1/1") {
		t.Fatal("drop-newest lost the oldest packet")
	}
}

// sendUntilAcked sends packets 1..n pipelined within window until the
// cumulative ACK reaches want.
func sendUntilAcked(t *testing.T, c *servertest.Client, agent string, n, window int, want uint64) (sent int) {
	t.Helper()
	var buf []byte
	acked := uint64(0)
	for acked < want {
		for sent < n && uint64(sent)-acked < uint64(window) {
			buf = c.AppendData(buf[:0], pkt(agent, uint64(sent+1)), true)
			if err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after %d sent, %d acked: %v", sent, acked, err)
		}
		if f.Type != frame.TypeAck {
			t.Fatalf("unexpected %s", f)
		}
		acked = f.Seq
	}
	return sent
}

// A packet whose delivery fails every time (each analyzer's connection
// fails with it in flight) is retried with backoff and, past --retry-max,
// goes to the dead letters as retries-exhausted; the other packets are
// delivered.
func TestRetriesExhaustedToDeadLetters(t *testing.T) {
	poison := func(p *frame.Packet) bool { return p.ID == 5 }
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0"), startAnalyzer(t, "a2", "127.0.0.1:0")}
	for _, a := range as {
		a.poison = poison
		defer a.srv.Close()
	}
	s := spoolProxy(t, t.TempDir(), []string{as[0].srv.Addr().String(), as[1].srv.Addr().String()}, func(c *proxy.Config) {
		c.AckMode = proxy.AckSpool
		c.RetryMax = 3
		c.RetryBackoff = 10 * time.Millisecond
	})
	defer s.Stop(t.Context())
	waitFor(t, "a1 and a2 healthy", 5*time.Second, allHealthy(s, 2))
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 20
	sendAll(t, c, "agent-1", 1, n, 32)
	// The poison packet ends in the dead letters. A packet in flight
	// beside it shares each connection failure: with --retry-max as low as
	// 3 (the default is 20, and the jitter spreads the packets apart) an
	// innocent one can end there too. Nothing is lost either way.
	var list []proxy.DeadLetter
	poisoned := func() bool {
		for _, dl := range list {
			if dl.Messages == 1 && dl.SpoolSeq == 5 {
				return true
			}
		}
		return false
	}
	waitFor(t, "the poison packet in the dead letters", 30*time.Second, func() bool {
		list, _, err = s.DeadLetters(0, 100)
		return err == nil && poisoned()
	})
	for _, dl := range list {
		if dl.Reason != "retries-exhausted" || !strings.Contains(dl.Error, "after 4 attempts") {
			t.Fatalf("dead letter %+v, want retries-exhausted after 4 attempts", dl)
		}
	}
	waitFor(t, "the others delivered or dead-lettered", 20*time.Second, func() bool {
		got, _ := received(as, "agent-1", n)
		list, _, err = s.DeadLetters(0, 100)
		return got+len(list) == n && metricSum(s, "logdist_retries_exhausted_total") == float64(len(list))
	})
	t.Logf("%d packets in the dead letters (the poison one and %d in flight beside it each time)", len(list), len(list)-1)
	waitFor(t, "the spool empty", 10*time.Second, func() bool { return metricSum(s, "logdist_spool_records") == 0 })
}

// Packets read back from the spool that no analyzer can take at once are
// not read back again and again: with the analyzer up but holding what it
// gets, the read-back stays near the backlog (it spun at 3.3 million
// reads in 2 s when only the packet bound was checked).
func TestRereadDoesNotChurn(t *testing.T) {
	addr := freeAddr(t)
	s := spoolProxy(t, t.TempDir(), []string{addr}, func(c *proxy.Config) {
		c.QueueMaxPackets = 10000
		c.QueueMaxBytes = 4 << 10
		c.UpstreamWindow = 8
	})
	defer s.Stop(t.Context())
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 1000
	sent := sendUntilAcked(t, c, "agent-1", n, 128, n-100)
	a := startAnalyzer(t, "a1", addr)
	a.hold()
	defer a.srv.Close()
	defer a.release()
	waitFor(t, "a1 healthy", 10*time.Second, allHealthy(s, 1))
	r0 := metricSum(s, "logdist_spool_replayed_total")
	began := time.Now()
	waitFor(t, "2 s with the analyzer holding everything", 10*time.Second, func() bool { return time.Since(began) >= 2*time.Second })
	if r := metricSum(s, "logdist_spool_replayed_total") - r0; r > 3*n {
		t.Fatalf("%v packets read back in 2 s with none delivered (backlog %d): read-back churn", r, n)
	}
	a.release()
	waitFor(t, "every packet delivered", 30*time.Second, func() bool {
		got, _ := received([]*analyzer{a}, "agent-1", sent)
		return got == sent
	})
}

// With a spool that has room, TCP syslog is read on while every analyzer
// is down: its batches go to the spool (it used to pause at the waiting
// queue's bound: 727 of 20,000 batches in 3 s).
func TestTCPSyslogSpoolsDuringOutage(t *testing.T) {
	addr := freeAddr(t)
	s := spoolProxy(t, t.TempDir(), []string{addr}, func(c *proxy.Config) {
		c.SyslogTCP = "127.0.0.1:0"
		c.SyslogLinger = 2 * time.Millisecond
		c.SyslogBatchMessages = 10
		c.QueueMaxPackets = 4
	})
	defer s.Stop(t.Context())
	conn, err := net.Dial("tcp", s.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 200000
	var b strings.Builder
	for i := 0; i < n; i++ {
		m := fmt.Sprintf("<13>Nov 26 21:00:00 web-1 app[1]: message %d", i)
		fmt.Fprintf(&b, "%d %s", len(m), m)
	}
	go conn.Write([]byte(b.String()))
	waitFor(t, "every message batched", 30*time.Second, func() bool {
		return metricSum(s, "logdist_syslog_batched_messages_total") >= n
	})
	// Batches are appended by the loop's worker after they are made: the
	// count catches up (batches of at most 10 messages: n/10 at least).
	waitFor(t, "every batch in the spool", 30*time.Second, func() bool {
		return metricSum(s, "logdist_spool_appended_total") >= n/10
	})
}
