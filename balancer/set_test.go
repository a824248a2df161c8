package balancer

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config (all defaults) invalid: %v", err)
	}
	f := func(field string, mutate func(*Config)) {
		t.Helper()
		cfg := DefaultConfig()
		mutate(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), field) {
			t.Fatalf("%s: Validate() = %v, want ErrInvalidConfig naming %s", field, err, field)
		}
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%s: New accepted the config (%v)", field, err)
		}
	}
	f("Strategy", func(c *Config) { c.Strategy = 9 })
	f("Rise", func(c *Config) { c.Rise = -1 })
	f("Fall", func(c *Config) { c.Fall = -1 })
	f("SlowStart", func(c *Config) { c.SlowStart = -time.Second })
	f("SlowStartSteps", func(c *Config) { c.SlowStartSteps = 5000 })
	f("BreakerBackoff", func(c *Config) { c.BreakerBackoff = -1 })
	f("BreakerMaxBackoff", func(c *Config) { c.BreakerMaxBackoff = c.BreakerBackoff / 2 })
	f("HalfOpenProbes", func(c *Config) { c.HalfOpenProbes = -1 })
	f("ProbeTimeout", func(c *Config) { c.ProbeTimeout = -1 })
	f("MaxAnalyzers", func(c *Config) { c.MaxAnalyzers = 1 << 20 })
	// A backoff above the default cap is refused once defaults apply.
	if _, err := New(Config{BreakerBackoff: time.Minute}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("BreakerBackoff above the default BreakerMaxBackoff: %v", err)
	}
}

func TestAddErrors(t *testing.T) {
	cfg := testConfig(SWRR, nil)
	cfg.MaxAnalyzers = 2
	s, _ := New(cfg)
	f := func(ac AnalyzerConfig, want error) {
		t.Helper()
		if _, err := s.Add(ac); !errors.Is(err, want) {
			t.Fatalf("Add(%+v) = %v, want %v", ac, err, want)
		}
	}
	f(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: -1}, ErrInvalidWeight)
	f(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: math.NaN()}, ErrInvalidWeight)
	f(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: math.Inf(1)}, ErrInvalidWeight)
	f(AnalyzerConfig{Name: "", Addr: "x:1", Weight: 1}, ErrInvalidAnalyzer)
	f(AnalyzerConfig{Name: "a", Addr: "", Weight: 1}, ErrInvalidAnalyzer)
	f(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1, Admin: 9}, ErrInvalidAnalyzer)
	if _, err := s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	f(AnalyzerConfig{Name: "a", Addr: "x:2", Weight: 1}, ErrDuplicateName)
	if _, err := s.Add(AnalyzerConfig{Name: "b", Addr: "x:2", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	f(AnalyzerConfig{Name: "c", Addr: "x:3", Weight: 1}, ErrTooManyAnalyzers)
	for _, err := range []error{s.SetWeight("zz", 1), s.Drain("zz"), s.ForceDown("zz"),
		s.ForceUp("zz"), s.Enable("zz"), s.Remove("zz")} {
		if !errors.Is(err, ErrUnknownAnalyzer) {
			t.Fatalf("by-name call on an unknown analyzer: %v", err)
		}
	}
	if err := s.SetWeight("a", -2); !errors.Is(err, ErrInvalidWeight) {
		t.Fatalf("SetWeight(-2): %v", err)
	}
}

// IDs: lowest free first, reused only after Remove, with a new Gen and
// counters starting from zero.
func TestIDReuse(t *testing.T) {
	s := newTestSet(t, testConfig(SWRR, nil), 1, 1, 1)
	c := s.NewCursor()
	defer c.Close()
	c.Account(1, 5, 500)
	if got := s.IDLimit(); got != 3 {
		t.Fatalf("IDLimit %d, want 3", got)
	}
	if err := s.Remove("a1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("a1"); ok {
		t.Fatal("removed analyzer still found")
	}
	id, err := s.Add(AnalyzerConfig{Name: "new", Addr: "x:9", Weight: 1})
	if err != nil || id != 1 {
		t.Fatalf("Add after Remove: ID %d, %v; want the freed 1", id, err)
	}
	av := analyzerView(t, s, 1)
	if av.Gen != 2 || av.Name != "new" || av.Packets != 0 || av.Health != Down {
		t.Fatalf("reused ID: %+v; want gen 2, fresh counters, down", av)
	}
	if err := s.Remove("a2"); err != nil {
		t.Fatal(err)
	}
	if got := s.IDLimit(); got != 2 {
		t.Fatalf("IDLimit after removing the highest ID: %d, want 2", got)
	}
}

func TestViewShares(t *testing.T) {
	s := newTestSet(t, testConfig(SWRR, nil), 3, 1, 0)
	a := s.NewCursor()
	b := s.NewCursor()
	for range 400 {
		id, _ := a.Pick(nil)
		a.Account(id, 10, 1000)
	}
	prev := s.View()
	for range 100 {
		id, _ := b.Pick(nil)
		b.Account(id, 2, 100)
	}
	b.Close() // its counters are kept
	v := s.View()
	if v.Packets != 500 || v.Messages != 4200 || v.Bytes != 410000 {
		t.Fatalf("totals %d/%d/%d, want 500/4200/410000", v.Packets, v.Messages, v.Bytes)
	}
	want := []struct {
		packets    uint64
		configured float64
		selectable bool
	}{{375, 0.75, true}, {125, 0.25, true}, {0, 0, false}}
	for i, w := range want {
		av := v.Analyzers[i]
		if av.Packets != w.packets || av.ConfiguredShare != w.configured || av.Selectable != w.selectable ||
			av.TargetShare != w.configured {
			t.Fatalf("analyzer %d: %+v, want %+v", i, av, w)
		}
	}
	if v.MaxShareError != 0 || !v.Exact || v.Selectable != 2 {
		t.Fatalf("max share error %v exact %v selectable %d", v.MaxShareError, v.Exact, v.Selectable)
	}
	d := v.Since(prev)
	if d.Packets != 100 || d.Analyzers[0].Packets != 75 || d.Analyzers[0].Share != 0.75 {
		t.Fatalf("Since: %+v", d)
	}
	// Re-weighting moves the configured shares; the old counters now err.
	if err := s.SetWeight("a1", 3); err != nil {
		t.Fatal(err)
	}
	v = s.View()
	if v.Analyzers[1].ConfiguredShare != 0.5 || math.Abs(v.MaxShareError-0.25) > 1e-12 {
		t.Fatalf("after re-weight: configured %v, max error %v", v.Analyzers[1].ConfiguredShare, v.MaxShareError)
	}
	a.Close()
	a.Close() // idempotent
	if v2 := s.View(); v2.Packets != 500 {
		t.Fatalf("closed cursors' counters lost: %d", v2.Packets)
	}
}

func TestViewJSON(t *testing.T) {
	s := newTestSet(t, testConfig(SWRR, nil), 1)
	s.Report(0, AckTimeout)
	b, err := json.Marshal(s.View())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Health":"up"`, `"Breaker":"closed"`, `"Admin":"enabled"`,
		`"Strategy":"swrr"`, `"heartbeat-ok":2`, `"ack-timeout":1`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("view JSON lacks %s: %s", want, b)
		}
	}
}

func TestVersionAndChanged(t *testing.T) {
	s := newTestSet(t, testConfig(SWRR, nil), 1)
	ch := s.Changed()
	v0 := s.Version()
	s.Report(0, HeartbeatOK) // no change
	select {
	case <-ch:
		t.Fatal("Changed closed without a change")
	default:
	}
	if s.Version() != v0 {
		t.Fatal("Version moved without a change")
	}
	if _, err := s.Add(AnalyzerConfig{Name: "b", Addr: "x:2", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Add")
	}
	if s.Version() == v0 {
		t.Fatal("Version did not move on Add")
	}
}

// ForceUp selects a down analyzer; weight 0 still keeps it out.
func TestForceUp(t *testing.T) {
	s, _ := New(testConfig(SWRR, nil))
	_, _ = s.Add(AnalyzerConfig{Name: "a", Addr: "x:1", Weight: 1})
	c := s.NewCursor()
	defer c.Close()
	if _, ok := c.Pick(nil); ok {
		t.Fatal("down analyzer picked")
	}
	if err := s.ForceUp("a"); err != nil {
		t.Fatal(err)
	}
	if id, ok := c.Pick(nil); !ok || id != 0 {
		t.Fatalf("forced-up analyzer not picked: %d, %v", id, ok)
	}
	if err := s.SetWeight("a", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Pick(nil); ok {
		t.Fatal("weight-0 analyzer picked")
	}
}

func TestStateText(t *testing.T) {
	f := func(m interface{ MarshalText() ([]byte, error) }, want string) {
		t.Helper()
		if b, _ := m.MarshalText(); string(b) != want {
			t.Fatalf("MarshalText = %q, want %q", b, want)
		}
	}
	f(Up, "up")
	f(Down, "down")
	f(HalfOpen, "half-open")
	f(Open, "open")
	f(Closed, "closed")
	f(Drained, "drained")
	f(ForcedDown, "forced-down")
	f(ForcedUp, "forced-up")
	f(Enabled, "enabled")
	f(Hash, "hash")
	f(AckTimeout, "ack-timeout")
}
