package proxy_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/proxy"
)

// One hung analyzer costs the agents a short latency bump, not the whole
// detection time: its late packets are copied to the other analyzer and it
// gets no new ones. An agent sending as fast as its window allows to two
// analyzers (0.5/0.5) keeps acknowledgements coming after a1 hangs: at
// most three 100 ms intervals in a row below a tenth of the normal rate
// (heartbeat timeout 3 s here: before, they stopped for about 3 s). The
// stricter bound — half the rate — is TestStoppedAnalyzerDoesNotStallAgents'
// with real processes; here, under -race with the analyzers in the test
// process, the remaining analyzer's pace after the hang is the machine's. When a1 answers
// again nothing was lost; the packets it held reached both analyzers.
func TestHungAnalyzerDoesNotStallAgents(t *testing.T) {
	s, as := startClusterWith(t, func(c *proxy.Config) { c.LateAfter = 150 * time.Millisecond }, 0.5, 0.5)
	defer stopAll(t, s, as)
	cfg := client.DefaultConfig()
	cfg.Addrs = []string{s.Addr().String()}
	cfg.AgentID = "steady"
	cfg.BatchMessages = 1
	cfg.Window = 64
	cfg.Compress = false
	cfg.MaxPending = 256
	cfg.Block = true
	cfg.Logger = testLogger(t)
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		body := []byte(strings.Repeat("y", 100))
		for ctx.Err() == nil {
			if c.Send(ctx, frame.Message{Timestamp: time.Now().UnixNano(), Body: body}) != nil {
				return
			}
		}
	}()
	// rates samples the acknowledged count every 100 ms for d.
	rates := func(d time.Duration) []uint64 {
		var out []uint64
		last := c.Stats().PacketsAcked
		for end := time.Now().Add(d); time.Now().Before(end); {
			next := time.Now().Add(100 * time.Millisecond)
			waitFor(t, "the next 100 ms", time.Second, func() bool { return !time.Now().Before(next) })
			now := c.Stats().PacketsAcked
			out = append(out, now-last)
			last = now
		}
		return out
	}
	waitFor(t, "traffic", 5*time.Second, func() bool { return c.Stats().PacketsAcked > 500 })
	before := rates(time.Second)
	var normal uint64
	for _, r := range before {
		normal += r
	}
	normal /= uint64(len(before))
	as[0].hold()
	after := rates(2 * time.Second)
	as[0].release()
	run, worst := 0, 0
	for _, r := range after {
		if r*10 < normal {
			run++
			worst = max(worst, run)
		} else {
			run = 0
		}
	}
	t.Logf("acks per 100 ms: normal %d; after a1 hung: %v", normal, after)
	if worst > 3 {
		t.Errorf("acknowledgements below a tenth of their rate for %d × 100 ms in a row after one analyzer hung; want at most 3", worst)
	}
	cancel()
	wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	if err := c.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	seen := map[string]bool{}
	for _, a := range as {
		a.mu.Lock()
		for k := range a.seen {
			seen[k] = true
		}
		a.mu.Unlock()
	}
	if uint64(len(seen)) < st.PacketsAcked {
		t.Fatalf("%d packets acknowledged, %d reached an analyzer", st.PacketsAcked, len(seen))
	}
	hedged := metricSum(s, "logdist_hedged_packets_total")
	t.Logf("%d packets acknowledged, %v copied from the hung analyzer", st.PacketsAcked, hedged)
	if hedged == 0 {
		t.Error("no packet was copied from the hung analyzer")
	}
}

// With nowhere else to go, a late analyzer's packets are not copied: a
// copy could only come back to it, a duplicate for nothing. One analyzer,
// held for 400 ms (past --late-after) with packets in flight, then
// released: every packet reaches it once.
func TestLateAloneMakesNoCopies(t *testing.T) {
	s, as := startClusterWith(t, func(c *proxy.Config) { c.LateAfter = 150 * time.Millisecond }, 1)
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	as[0].hold()
	var buf []byte
	for i := uint64(1); i <= 50; i++ {
		buf = c.AppendData(buf, pkt("agent-1", i), true)
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(400 * time.Millisecond)
	waitFor(t, "400 ms of a held analyzer", time.Second, func() bool { return !time.Now().Before(deadline) })
	as[0].release()
	if err := c.WaitAck(50); err != nil {
		t.Fatal(err)
	}
	as[0].mu.Lock()
	defer as[0].mu.Unlock()
	for k, n := range as[0].seen {
		if n != 1 {
			t.Fatalf("%s reached the analyzer %d times", k, n)
		}
	}
	if h := metricSum(s, "logdist_hedged_packets_total"); h != 0 {
		t.Fatalf("%v packets copied with no other analyzer", h)
	}
}
