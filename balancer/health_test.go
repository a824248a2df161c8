package balancer

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func analyzerView(t tb, s *Set, id int) AnalyzerView {
	helper(t)
	v := s.View()
	i := indexOf(v, id)
	if i < 0 {
		t.Fatalf("analyzer %d not in view", id)
	}
	return v.Analyzers[i]
}

func TestRiseFall(t *testing.T) {
	clk := newFakeClock()
	s, err := New(testConfig(SWRR, clk))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	c := s.NewCursor()
	defer c.Close()
	// step: report ev, then expect health and whether a pick finds it.
	f := func(ev Event, want HealthState) {
		helper(t)
		s.Report(id, ev)
		av := analyzerView(t, s, id)
		if av.Health != want {
			t.Fatalf("after %v: health %v, want %v (succ %d fail %d)", ev, av.Health, want, av.Successes, av.Failures)
		}
		_, ok := c.Pick(nil)
		if ok != (want == Up) {
			t.Fatalf("after %v: Pick ok = %v with health %v", ev, ok, want)
		}
	}
	if _, ok := c.Pick(nil); ok {
		t.Fatal("a new analyzer must not be picked before it rises")
	}
	f(Connected, Down)
	f(HeartbeatMissed, Down) // resets the successes
	f(Connected, Down)
	f(HeartbeatOK, Up) // rise 2
	f(WriteError, Up)
	f(AckTimeout, Up)
	f(HeartbeatOK, Up) // resets the failures
	f(WriteError, Up)
	f(HeartbeatMissed, Up)
	f(ConnectFailed, Down) // fall 3; breaker opens
	if b := analyzerView(t, s, id).Breaker; b != Open {
		t.Fatalf("breaker %v after a fall, want open", b)
	}
	f(HeartbeatOK, Down) // ignored while open
	f(HeartbeatOK, Down)
}

func TestBreakerBackoff(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(SWRR, clk)
	cfg.BreakerBackoff = time.Second
	cfg.BreakerMaxBackoff = 5 * time.Second
	cfg.ProbeTimeout = 3 * time.Second
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	if !s.AllowProbe(id) {
		t.Fatal("a new analyzer must be dialable")
	}
	fail := func() {
		for range cfg.Fall {
			s.Report(id, ConnectFailed)
		}
	}
	// waitOpen advances the clock to just before the breaker may be
	// half-open (d/2), checks it stays open, then finds the moment it opens
	// and checks it lies in [d/2, d).
	waitOpen := func(d time.Duration) {
		helper(t)
		if b := analyzerView(t, s, id).Breaker; b != Open {
			t.Fatalf("breaker %v, want open", b)
		}
		start := clk.Now()
		clk.Advance(d/2 - time.Millisecond)
		if s.AllowProbe(id) {
			t.Fatalf("probe allowed %v into a %v backoff", d/2-time.Millisecond, d)
		}
		for !s.AllowProbe(id) {
			if clk.Now().Sub(start) >= d {
				t.Fatalf("breaker still open after %v, backoff %v", clk.Now().Sub(start), d)
			}
			clk.Advance(10 * time.Millisecond)
		}
		if b := analyzerView(t, s, id).Breaker; b != HalfOpen {
			t.Fatalf("breaker %v after the backoff, want half-open", b)
		}
		if s.AllowProbe(id) {
			t.Fatal("half-open breaker granted a second probe (HalfOpenProbes 1)")
		}
	}
	fail()
	waitOpen(1 * time.Second)
	s.Report(id, ConnectFailed) // probe fails: open again, doubled
	waitOpen(2 * time.Second)
	s.Report(id, ConnectFailed)
	waitOpen(4 * time.Second)
	s.Report(id, ConnectFailed)
	waitOpen(5 * time.Second) // capped
	// The probe never reports: after ProbeTimeout it counts as failed.
	clk.Advance(cfg.ProbeTimeout)
	waitOpen(5 * time.Second)
	// The probe succeeds: closed, and one more success brings it up.
	s.Report(id, Connected)
	if av := analyzerView(t, s, id); av.Breaker != Closed || av.Health != Down {
		t.Fatalf("after a successful probe: breaker %v health %v, want closed down", av.Breaker, av.Health)
	}
	if !s.AllowProbe(id) {
		t.Fatal("closed breaker refused a probe")
	}
	s.Report(id, HeartbeatOK)
	if av := analyzerView(t, s, id); av.Health != Up {
		t.Fatalf("health %v, want up", av.Health)
	}
	// Up resets the backoff: the next fall waits the base backoff again.
	fail()
	waitOpen(1 * time.Second)
}

func TestAllowProbeAdmin(t *testing.T) {
	s := newTestSet(t, testConfig(SWRR, nil), 1)
	if err := s.ForceDown("a0"); err != nil {
		t.Fatal(err)
	}
	if s.AllowProbe(0) {
		t.Fatal("forced-down analyzer must not be probed")
	}
	if err := s.Drain("a0"); err != nil {
		t.Fatal(err)
	}
	if !s.AllowProbe(0) {
		t.Fatal("drained analyzer must still be probed")
	}
	if s.AllowProbe(7) || s.AllowProbe(-1) {
		t.Fatal("unknown ID probed")
	}
}

// Slow start with a fake clock: the effective weight of an analyzer that
// comes back up steps from Weight/10 to Weight in SlowStart/10 steps, one
// snapshot per step, and the picks follow each step exactly.
func TestSlowStartRamp(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(SWRR, clk)
	cfg.SlowStart = 10 * time.Second
	cfg.SlowStartSteps = 10
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	b, _ := s.Add(AnalyzerConfig{Name: "b", Addr: "x:2", Weight: 1})
	bringUp(t, s, a)
	// a came up at full weight: it had not failed (TestNoSlowStartOnFirstUp).
	if next := s.Tick(); !next.IsZero() {
		t.Fatalf("Tick with a up at once: next %v, want none", next)
	}
	if av := analyzerView(t, s, a); av.SlowStart || av.EffectiveWeight != 1 {
		t.Fatalf("a up: slow start %v, effective %v", av.SlowStart, av.EffectiveWeight)
	}
	downAndBack(t, s, clk, b) // b comes back: it ramps
	c := s.NewCursor()
	defer c.Close()
	start := clk.Now()
	for k := 0; k <= 10; k++ {
		next := s.Tick()
		frac := (10 + 9*float64(k)) / 100
		av := analyzerView(t, s, b)
		if diff := av.EffectiveWeight - frac; diff > 1e-12 || diff < -1e-12 {
			t.Fatalf("step %d: effective weight %v, want %v", k, av.EffectiveWeight, frac)
		}
		if av.SlowStart != (k < 10) {
			t.Fatalf("step %d: SlowStart %v", k, av.SlowStart)
		}
		wantNext := start.Add(time.Duration(k+1) * time.Second)
		if k == 10 {
			wantNext = time.Time{}
		}
		if !next.Equal(wantNext) {
			t.Fatalf("step %d: Tick says next %v, want %v", k, next, wantNext)
		}
		// Share of b is frac/(1+frac): with integer weights 100 and
		// 10+9k, 110+9k picks are one period, exactly 10+9k of them b.
		period := 110 + 9*k
		if k == 10 {
			period = 2 // weights 1/1 reduce to 1/1
		}
		got := pickN(t, c, period, nil)
		wantB := 10 + 9*k
		if k == 10 {
			wantB = 1
		}
		if got[b] != wantB {
			t.Fatalf("step %d: b got %d of %d picks, want %d", k, got[b], period, wantB)
		}
		// Just before the next step nothing changes.
		clk.Advance(time.Second - time.Nanosecond)
		e := s.View().Epoch
		if s.Tick(); s.View().Epoch != e {
			t.Fatalf("step %d: snapshot rebuilt before the step was due", k)
		}
		clk.Advance(time.Nanosecond)
	}
}

// A ramp that starts between two grid points steps at the next one.
func TestSlowStartGrid(t *testing.T) {
	clk := newFakeClock() // on the grid
	cfg := testConfig(SWRR, clk)
	cfg.SlowStart = 10 * time.Second
	s := newTestSet(t, cfg, 1)
	clk.Advance(cfg.SlowStart)
	s.Tick()
	clk.Advance(300 * time.Millisecond)
	id, _ := s.Add(AnalyzerConfig{Name: "late", Addr: "x:9", Weight: 1})
	bringUp(t, s, id)
	for range cfg.Fall {
		s.Report(id, HeartbeatMissed)
	}
	clk.Advance(cfg.BreakerMaxBackoff - 300*time.Millisecond) // the breaker has passed; back on the grid
	s.Tick()
	clk.Advance(300 * time.Millisecond)
	bringUp(t, s, id)
	if next, want := s.Tick(), clk.Now().Add(700*time.Millisecond); !next.Equal(want) {
		t.Fatalf("first step at %v, want the next grid point %v", next, want)
	}
	clk.Advance(700 * time.Millisecond)
	s.Tick()
	if av := analyzerView(t, s, id); av.EffectiveWeight != 0.19 {
		t.Fatalf("at the first grid point: effective %v, want 0.19", av.EffectiveWeight)
	}
	clk.Advance(9 * time.Second)
	s.Tick()
	if av := analyzerView(t, s, id); av.SlowStart || av.EffectiveWeight != 1 {
		t.Fatalf("after 9.7s: slow start %v effective %v, want done", av.SlowStart, av.EffectiveWeight)
	}
}

// downAndBack takes an analyzer that is up down (Fall missed heartbeats),
// waits out its breaker and brings it up again.
func downAndBack(t *testing.T, s *Set, clk *fakeClock, id int) {
	t.Helper()
	bringUp(t, s, id)
	for range s.cfg.Fall {
		s.Report(id, HeartbeatMissed)
	}
	if av := analyzerView(t, s, id); av.Selectable {
		t.Fatalf("analyzer %d still selectable after %d missed heartbeats", id, s.cfg.Fall)
	}
	clk.Advance(s.cfg.BreakerMaxBackoff)
	s.Tick()
	bringUp(t, s, id)
}

// Slow start is for analyzers coming back. A set whose analyzers all come
// up for the first time serves them at full weight at once, so the first
// packets are shared exactly (no snapshot per ramp step), also those whose
// first connection attempts failed (started after logdist); an analyzer
// that left service ramps when it comes back.
func TestNoSlowStartOnFirstUp(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(SWRR, clk)
	cfg.SlowStart = 10 * time.Second
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for i, w := range []float64{0.4, 0.3, 0.2, 0.1} {
		id, _ := s.Add(AnalyzerConfig{Name: fmt.Sprintf("a%d", i+1), Addr: fmt.Sprintf("x:%d", i+1), Weight: w})
		ids = append(ids, id)
	}
	down, _ := s.Add(AnalyzerConfig{Name: "down", Addr: "x:9", Weight: 1})
	for _, id := range ids {
		bringUp(t, s, id)
	}
	e := s.View().Epoch
	c := s.NewCursor()
	defer c.Close()
	got := pickN(t, c, 10000, nil)
	for i, id := range ids {
		if want := []int{4000, 3000, 2000, 1000}[i]; got[id] != want {
			t.Fatalf("analyzer %d: %d of 10000 picks, want %d", id, got[id], want)
		}
		if av := analyzerView(t, s, id); av.SlowStart {
			t.Fatalf("analyzer %d in slow start on its first entry into service", id)
		}
	}
	clk.Advance(cfg.SlowStart)
	if s.Tick(); s.View().Epoch != e {
		t.Fatal("snapshot rebuilt with nothing ramping")
	}
	for range cfg.Fall {
		s.Report(down, ConnectFailed) // not there yet
	}
	clk.Advance(cfg.BreakerMaxBackoff)
	s.Tick()
	bringUp(t, s, down)
	if av := analyzerView(t, s, down); av.SlowStart || av.EffectiveWeight != 1 {
		t.Fatalf("first up after failed dials: slow start %v effective %v, want full weight", av.SlowStart, av.EffectiveWeight)
	}
	downAndBack(t, s, clk, down)
	if av := analyzerView(t, s, down); !av.SlowStart || av.EffectiveWeight != 0.1 {
		t.Fatalf("back after being down: slow start %v effective %v, want ramping at 0.1", av.SlowStart, av.EffectiveWeight)
	}
}

// A drained analyzer that is enabled again re-enters service and ramps.
func TestSlowStartOnEnable(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(SWRR, clk)
	cfg.SlowStart = 10 * time.Second
	s := newTestSet(t, cfg, 1, 1)
	clk.Advance(cfg.SlowStart)
	s.Tick()
	if err := s.Drain("a1"); err != nil {
		t.Fatal(err)
	}
	if av := analyzerView(t, s, 1); av.Selectable || av.EffectiveWeight != 0 {
		t.Fatalf("drained: selectable %v effective %v", av.Selectable, av.EffectiveWeight)
	}
	if err := s.Enable("a1"); err != nil {
		t.Fatal(err)
	}
	if av := analyzerView(t, s, 1); !av.SlowStart || av.EffectiveWeight != 0.1 {
		t.Fatalf("re-enabled: slow start %v effective %v, want ramping at 0.1", av.SlowStart, av.EffectiveWeight)
	}
	// Report moves slow start too, without Tick.
	clk.Advance(cfg.SlowStart)
	s.Report(1, HeartbeatOK)
	if av := analyzerView(t, s, 1); av.SlowStart || av.EffectiveWeight != 1 {
		t.Fatalf("after SlowStart and a heartbeat: slow start %v effective %v", av.SlowStart, av.EffectiveWeight)
	}
}

// Run drives slow start on the real clock; it returns when ctx is done.
func TestRun(t *testing.T) {
	cfg := testConfig(SWRR, nil)
	cfg.Now = nil
	cfg.SlowStart = 50 * time.Millisecond
	cfg.SlowStartSteps = 5
	s := newTestSet(t, cfg, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for analyzerView(t, s, 0).SlowStart {
		if time.Now().After(deadline) {
			t.Fatal("slow start did not finish under Run")
		}
		select {
		case <-s.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v", err)
	}
}

func TestEventStrings(t *testing.T) {
	for ev := Event(0); ev < numEvents; ev++ {
		if ev.String() == "unknown-event" {
			t.Fatalf("event %d has no name", ev)
		}
	}
	if Connected.Success() == WriteError.Success() {
		t.Fatal("Connected and WriteError count alike")
	}
}

// Failures count per source (a proxy event loop and its connection): an
// analyzer is down when one source saw Fall in a row, as that source's
// connection closes then, not when misses from several loops add up to
// Fall while every connection stays open (2 loops: down after 2+1 misses
// with nothing re-dispatched for ~500 ms). A success from one source does
// not clear another's run.
func TestFallPerSource(t *testing.T) {
	clk := newFakeClock()
	s, err := New(testConfig(SWRR, clk))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	for range s.cfg.Rise {
		s.ReportFrom(id, 0, 0, HeartbeatOK)
	}
	health := func() HealthState { return analyzerView(t, s, id).Health }
	if health() != Up {
		t.Fatal("not up")
	}
	for i := 0; i < s.cfg.Fall-1; i++ {
		s.ReportFrom(id, 0, 0, HeartbeatMissed)
		s.ReportFrom(id, 0, 1, HeartbeatMissed)
	}
	if health() != Up {
		t.Fatalf("down after %d misses from each of two loops; Fall is %d per loop", s.cfg.Fall-1, s.cfg.Fall)
	}
	if f := analyzerView(t, s, id).Failures; f != s.cfg.Fall-1 {
		t.Fatalf("view says %d failures, want the worst loop's %d", f, s.cfg.Fall-1)
	}
	s.ReportFrom(id, 0, 1, HeartbeatOK) // loop 1 recovers; loop 0's run goes on
	s.ReportFrom(id, 0, 0, HeartbeatMissed)
	if health() != Down {
		t.Fatalf("up after %d misses in a row from loop 0", s.cfg.Fall)
	}
}

// RetryDown makes down analyzers' open breakers probe-able at once;
// Rising tells an analyzer on its way up from one that is out.
func TestRetryDownAndRising(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(SWRR, clk)
	cfg.BreakerBackoff, cfg.BreakerMaxBackoff = time.Minute, time.Minute
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	for range cfg.Fall {
		s.Report(id, ConnectFailed)
	}
	if s.AllowProbe(id) || s.Rising(id) {
		t.Fatal("a fresh open breaker allows a probe, or the analyzer reads as rising")
	}
	if n := s.RetryDown(); n != 1 {
		t.Fatalf("RetryDown reopened %d breakers, want 1", n)
	}
	if !s.Rising(id) {
		t.Fatal("after RetryDown the analyzer is not rising (its breaker should be half-open)")
	}
	if !s.AllowProbe(id) || s.AllowProbe(id) {
		t.Fatal("after RetryDown: want exactly one probe granted")
	}
	s.Report(id, Connected)
	for range cfg.Rise {
		s.Report(id, HeartbeatOK)
	}
	if s.Rising(id) {
		t.Fatal("an analyzer that is up reads as rising")
	}
}
