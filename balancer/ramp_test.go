package balancer

import (
	"math"
	"testing"
	"time"
)

// A weight ramp moves the weight in force in steps from where it was to
// the new weight; picks follow it; the ramp ends exactly at the weight.
func TestWeightRamp(t *testing.T) {
	clk := newFakeClock()
	s := newTestSet(t, testConfig(SWRR, clk), 1, 1)
	view := func() AnalyzerView { return s.View().Analyzers[1] }
	if _, err := s.SetWeightRamp("a1", 3, Ramp{Over: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if a := view(); a.Weight != 3 || a.EffectiveWeight != 1 || a.Ramp.From != 1 || a.Ramp.Over != 10*time.Second {
		t.Fatalf("at the start: %+v; want weight 3 in force 1, a ramp from 1 over 10s", a)
	}
	clk.Advance(5 * time.Second)
	if next := s.Tick(); !next.Equal(clk.Now().Add(100 * time.Millisecond)) {
		t.Fatalf("next step at %v, want %v (100 steps of 100ms)", next, clk.Now().Add(100*time.Millisecond))
	}
	if a := view(); math.Abs(a.EffectiveWeight-2) > 1e-9 || math.Abs(a.ConfiguredShare-2.0/3) > 1e-9 {
		t.Fatalf("halfway: in force %v, configured share %v; want 2 and 2/3", a.EffectiveWeight, a.ConfiguredShare)
	}
	c := s.NewCursor()
	defer c.Close()
	if got := pickN(t, c, 3000, nil); got[1] != 2000 {
		t.Fatalf("halfway: %v picks of 3000 went to a1, want 2000", got[1])
	}
	clk.Advance(5 * time.Second)
	if next := s.Tick(); !next.IsZero() {
		t.Fatalf("after the ramp something is still scheduled at %v", next)
	}
	if a := view(); a.EffectiveWeight != 3 || a.Ramp != (Ramp{}) {
		t.Fatalf("at the end: %+v; want weight 3 in force, no ramp", a)
	}
}

// From 0 the analyzer enters service at the first step; SetWeight cancels
// a ramp; a second ramp starts where the first had got to.
func TestWeightRampFromZeroAndReplaced(t *testing.T) {
	clk := newFakeClock()
	s := newTestSet(t, testConfig(SWRR, clk), 1, 0)
	if _, err := s.SetWeightRamp("a1", 1, Ramp{Over: time.Second}); err != nil {
		t.Fatal(err)
	}
	if v := s.View(); v.Selectable != 1 {
		t.Fatalf("at the start of a ramp from 0: %d selectable, want 1", v.Selectable)
	}
	clk.Advance(100 * time.Millisecond)
	s.Tick()
	if a := s.View().Analyzers[1]; !a.Selectable || math.Abs(a.EffectiveWeight-0.1) > 1e-9 {
		t.Fatalf("one step in: selectable %v at %v, want true at 0.1", a.Selectable, a.EffectiveWeight)
	}
	clk.Advance(400 * time.Millisecond)
	r, err := s.SetWeightRamp("a1", 0, Ramp{Over: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.From-0.5) > 1e-9 || !r.Start.Equal(clk.Now()) || r.Over != time.Second {
		t.Fatalf("second ramp returned %+v, want from 0.5, now, over 1s", r)
	}
	if a := s.View().Analyzers[1]; math.Abs(a.Ramp.From-0.5) > 1e-9 || math.Abs(a.EffectiveWeight-0.5) > 1e-9 {
		t.Fatalf("second ramp: from %v in force %v, want both 0.5", a.Ramp.From, a.EffectiveWeight)
	}
	if err := s.SetWeight("a1", 2); err != nil {
		t.Fatal(err)
	}
	if a := s.View().Analyzers[1]; a.EffectiveWeight != 2 || a.Ramp != (Ramp{}) {
		t.Fatalf("SetWeight during a ramp: %+v; want 2 at once, no ramp", a)
	}
	if _, err := s.SetWeightRamp("a1", 1, Ramp{Over: -time.Second}); err == nil {
		t.Fatal("a negative ramp was accepted")
	}
}

// A ramp given to Add (restored after a restart) carries on from where its
// absolute times put it; one that has ended is the weight.
func TestWeightRampRestored(t *testing.T) {
	clk := newFakeClock()
	s, err := New(testConfig(SWRR, clk))
	if err != nil {
		t.Fatal(err)
	}
	start := clk.Now().Add(-5 * time.Second)
	if _, err := s.Add(AnalyzerConfig{Name: "mid", Addr: "127.0.0.1:1", Weight: 3, Ramp: Ramp{From: 1, Start: start, Over: 10 * time.Second}, Admin: ForcedUp}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(AnalyzerConfig{Name: "done", Addr: "127.0.0.1:2", Weight: 3, Ramp: Ramp{From: 1, Start: start, Over: time.Second}, Admin: ForcedUp}); err != nil {
		t.Fatal(err)
	}
	v := s.View()
	if a := v.Analyzers[0]; math.Abs(a.EffectiveWeight-2) > 1e-9 || a.Ramp.Over != 10*time.Second {
		t.Fatalf("restored midway: %+v, want 2 in force and the ramp kept", a)
	}
	if a := v.Analyzers[1]; a.EffectiveWeight != 3 || a.Ramp != (Ramp{}) {
		t.Fatalf("restored after its end: %+v, want 3 and no ramp", a)
	}
}
