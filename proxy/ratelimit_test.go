package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/internal/agentauth"
	"github.com/logdist/logdist/proxy"
)

// An agent over its packet rate gets BUSY with a retry-after from its
// bucket, and so is held to the rate (backpressure: every packet it sent
// arrives); its two connections share the one limit, and another agent is
// not slowed.
func TestAgentRateLimit(t *testing.T) {
	const rate = 400.0
	file := `
agents:
  - identity: slow
    token-sha256: ` + agentauth.HashToken("slow-token-0123456789") + `
    limits: {packets-per-second: 400, packets-burst: 20}
  - identity: fast
    token-sha256: ` + agentauth.HashToken("fast-token-0123456789") + `
`
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := agentauth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := agentauth.New(agentauth.Options{Mode: agentauth.Required, Policy: pol, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) {
		c.Auth = guard.Auth
		c.AgentLimits = guard
	})
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))

	newClient := func(agent, token string) *client.Client {
		cfg := client.DefaultConfig()
		cfg.Addrs = []string{s.Addr().String()}
		cfg.AgentID, cfg.Token = agent, token
		cfg.BatchMessages = 1 // one message, one packet
		cfg.Window = 32
		cfg.Compress = false
		cfg.MaxPending = 64 // what is queued when the test stops drains quickly
		cfg.Block = true
		cfg.Logger = testLogger(t)
		c, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	slow := []*client.Client{newClient("slow-1", "slow-token-0123456789"), newClient("slow-2", "slow-token-0123456789")}
	fast := newClient("fast-1", "fast-token-0123456789")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range append(slow[:2:2], fast) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(strings.Repeat("x", 100))
			for ctx.Err() == nil {
				if c.Send(ctx, frame.Message{Timestamp: time.Now().UnixNano(), Body: body}) != nil {
					return
				}
			}
		}()
	}
	acked := func() (n uint64) {
		for _, c := range slow {
			n += c.Stats().PacketsAcked
		}
		return n
	}
	waitFor(t, "both slow connections sending", 5*time.Second, func() bool {
		return slow[0].Stats().PacketsAcked > 0 && slow[1].Stats().PacketsAcked > 0
	})
	// Measure past the burst.
	time.Sleep(200 * time.Millisecond)
	n0, f0, t0 := acked(), fast.Stats().PacketsAcked, time.Now()
	waitFor(t, "10 s of traffic", 20*time.Second, func() bool { return time.Since(t0) >= 10*time.Second })
	n1, f1, t1 := acked(), fast.Stats().PacketsAcked, time.Now()
	cancel()
	wg.Wait()
	got := float64(n1-n0) / t1.Sub(t0).Seconds()
	fastRate := float64(f1-f0) / t1.Sub(t0).Seconds()
	busy := slow[0].Stats().Busy + slow[1].Stats().Busy
	t.Logf("slow agent (2 connections): %.1f packets/s at a limit of %.0f, %d BUSY; fast agent %.0f packets/s, %d BUSY", got, rate, busy, fastRate, fast.Stats().Busy)
	if got < rate*0.95 || got > rate*1.05 {
		t.Errorf("slow agent got %.1f packets/s, want %.0f ± 5%%", got, rate)
	}
	if busy == 0 {
		t.Error("slow agent was never told BUSY")
	}
	// The fast agent's own pace is the machine's (under -race on a loaded
	// CI host, hundreds of packets/s); what matters is that it is never
	// told BUSY.
	if fast.Stats().Busy != 0 || fastRate == 0 {
		t.Errorf("fast agent: %.0f packets/s, %d BUSY; want it unlimited", fastRate, fast.Stats().Busy)
	}
	for _, c := range append(slow, fast) {
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.Flush(fctx); err != nil {
			t.Errorf("flush: %v", err)
		}
		fcancel()
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	// Every connection gave its limiter back, and a refused one never took
	// one.
	bad := newClient("fast-9", "wrong-token-0123456789")
	_ = bad.Send(context.Background(), frame.Message{Body: []byte("x")})
	_ = bad.Close()
	waitFor(t, "every limiter released", 10*time.Second, func() bool { return guard.Held() == 0 })
	var sent uint64
	for _, c := range append(slow, fast) {
		st := c.Stats()
		sent += st.PacketsAcked
		if st.PacketsRejected != 0 {
			t.Errorf("%d packets rejected", st.PacketsRejected)
		}
	}
	if u := as[0].unique(); uint64(u) < sent {
		t.Errorf("analyzer has %d packets, agents were acknowledged %d", u, sent)
	}
	if v := metricSum(s, "logdist_agent_rate_limited_total"); v == 0 {
		t.Error("logdist_agent_rate_limited_total is 0")
	}
}
