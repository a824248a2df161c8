package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gnet registers enrolled connections through a process-wide
		// worker pool (ants) whose idle workers outlive any one engine.
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
	)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LOGDIST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// analyzer is an in-process analyzer counting unique packets.
type analyzer struct {
	name string
	srv  *server.Server
	mu   sync.Mutex
	seen map[string]int // "agent/packet id" → times received
	// delay holds each packet this long before acknowledging it; busy is
	// set while one is held.
	delay time.Duration
	busy  bool
	// gate, while set, holds every packet until it is closed (release).
	gate chan struct{}
	// identity is the connection identity of the last packet (logdist's
	// certificate over TLS).
	identity string
	// reject, if set, says which packets to reject for good (a packet
	// ERROR), counted in rejected.
	reject   func(p *frame.Packet) bool
	rejected int
	// poison, if set, says which packets make the analyzer close the
	// connection (a connection ERROR): the packet is in flight when it
	// fails, every time.
	poison func(p *frame.Packet) bool
}

func (a *analyzer) HandlePacket(ctx context.Context, md *server.Meta, p *frame.Packet) error {
	a.mu.Lock()
	gate := a.gate
	a.identity = md.Identity
	a.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	if a.poison != nil && a.poison(p) {
		a.mu.Unlock()
		return &frame.Error{Code: frame.CodeInternal, Msg: "this test's analyzer fails on it"}
	}
	if a.reject != nil && a.reject(p) {
		a.rejected++
		a.mu.Unlock()
		return server.Reject("this test's analyzer rejects it")
	}
	a.seen[fmt.Sprintf("%s/%d", p.AgentID, p.ID)]++
	d := a.delay
	a.busy = d > 0
	a.mu.Unlock()
	if d > 0 {
		time.Sleep(d) // simulates a slow analyzer, not a wait for a condition
		a.mu.Lock()
		a.busy = false
		a.mu.Unlock()
	}
	return nil
}

// hold makes the analyzer keep every packet it gets, unanswered, until
// release.
func (a *analyzer) hold() {
	a.mu.Lock()
	a.gate = make(chan struct{})
	a.mu.Unlock()
}

func (a *analyzer) release() {
	a.mu.Lock()
	if a.gate != nil {
		close(a.gate)
		a.gate = nil
	}
	a.mu.Unlock()
}

func (a *analyzer) setDelay(d time.Duration) {
	a.mu.Lock()
	a.delay = d
	a.mu.Unlock()
}

func (a *analyzer) handling() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.busy
}

func (a *analyzer) unique() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *analyzer) has(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[key] > 0
}

func startAnalyzer(t *testing.T, name, addr string) *analyzer {
	t.Helper()
	a := &analyzer{name: name, seen: map[string]int{}}
	cfg := server.DefaultConfig()
	cfg.Addr = addr
	cfg.ServerID = name
	cfg.DrainTimeout = time.Second
	cfg.Logger = testLogger(t)
	srv, err := server.New(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	a.srv = srv
	return a
}

func startProxy(t *testing.T, as []*analyzer, weights []float64, edit func(*proxy.Config)) *proxy.Server {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SyslogUDP = ""
	cfg.Loops = 2
	cfg.Logger = testLogger(t)
	cfg.Balancer.Logger = cfg.Logger
	cfg.Balancer.SlowStart = 0
	// Generous heartbeat timeout: a loaded CI machine must not make healthy
	// analyzers flap. Short breaker backoff: recoveries are quick.
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.HeartbeatTimeout = 3 * time.Second
	// No lateness: on a loaded CI machine the in-process analyzers can be
	// starved past any threshold, and its copies are duplicates that the
	// tests counting exact deliveries would see. The tests of lateness
	// set their own.
	cfg.LateAfter = 0
	cfg.Balancer.BreakerBackoff = 50 * time.Millisecond
	cfg.Balancer.BreakerMaxBackoff = 200 * time.Millisecond
	cfg.RedialMax = 200 * time.Millisecond
	cfg.DrainTimeout = 2 * time.Second
	for i, a := range as {
		cfg.Analyzers = append(cfg.Analyzers, proxy.AnalyzerConfig{Name: a.name, Addr: a.srv.Addr().String(), Weight: weights[i]})
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allHealthy(s *proxy.Server, n int) func() bool {
	return func() bool {
		up := 0
		for _, a := range s.Balancer().View().Analyzers {
			if a.Selectable {
				up++
			}
		}
		return up == n
	}
}

func pkt(agent string, id uint64) *frame.Packet {
	return &frame.Packet{ID: id, AgentID: []byte(agent), Messages: []frame.Message{
		{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, Hostname: []byte("h1"), App: []byte("test"), Body: []byte(fmt.Sprintf("message %d of agent %s", id, agent))},
	}}
}

// sendAll sends n packets pipelined within window and waits for the
// cumulative ACK of the last one.
func sendAll(t *testing.T, c *servertest.Client, agent string, first uint64, n int, window int) {
	t.Helper()
	var buf []byte
	acked := c.LastSeq()
	start := c.LastSeq()
	sent := 0
	for acked < start+uint64(n) {
		for sent < n && c.LastSeq()-acked < uint64(window) {
			buf = c.AppendData(buf[:0], pkt(agent, first+uint64(sent)), true)
			if err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after %d sent, %d acked: %v", sent, acked-start, err)
		}
		switch f.Type {
		case frame.TypeAck:
			acked = f.Seq
		default:
			t.Fatalf("unexpected %s", f)
		}
	}
}

// startCluster starts one in-process analyzer per weight (a1, a2, …) and
// a proxy over them, stops them all at cleanup, and waits until every
// analyzer is selectable.
func startCluster(t *testing.T, weights ...float64) (*proxy.Server, []*analyzer) {
	t.Helper()
	return startClusterWith(t, nil, weights...)
}

// startClusterWith is startCluster with the proxy's configuration changed
// by edit.
func startClusterWith(t *testing.T, edit func(*proxy.Config), weights ...float64) (*proxy.Server, []*analyzer) {
	t.Helper()
	var as []*analyzer
	for i := range weights {
		as = append(as, startAnalyzer(t, fmt.Sprintf("a%d", i+1), "127.0.0.1:0"))
	}
	s := startProxy(t, as, weights, edit)
	t.Cleanup(func() { stopAll(t, s, as) })
	waitFor(t, "every analyzer up", 5*time.Second, allHealthy(s, len(weights)))
	return s, as
}

func stopAll(t *testing.T, s *proxy.Server, as []*analyzer) {
	t.Helper()
	if err := s.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	for _, a := range as {
		a.srv.Close()
	}
}

func TestForwardAndWeights(t *testing.T) {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	s, as := startCluster(t, weights...)

	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 10000
	sendAll(t, c, "agent-1", 1, n, int(c.Welcome.Window))
	total := 0
	for i, a := range as {
		got := a.unique()
		total += got
		want := weights[i] * n
		// Two loops' cursors: each analyzer within 2 of its exact share.
		if d := float64(got) - want; d > 2 || d < -2 {
			t.Errorf("%s got %d packets, want %.0f±2", a.name, got, want)
		}
	}
	if total != n {
		t.Errorf("analyzers have %d unique packets, want %d", total, n)
	}
}
