package balancer

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func helper(t tb) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
}

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testConfig is DefaultConfig without slow start, quiet, seeded, on clk.
func testConfig(st Strategy, clk *fakeClock) Config {
	cfg := DefaultConfig()
	cfg.Strategy = st
	cfg.SlowStart = 0
	cfg.Seed = 1
	cfg.Logger = slog.New(slog.DiscardHandler)
	if clk != nil {
		cfg.Now = clk.Now
	}
	return cfg
}

// newTestSet returns a set with analyzers a0, a1... of the given weights,
// all up. IDs equal the indices.
func newTestSet(t tb, cfg Config, weights ...float64) *Set {
	helper(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range weights {
		id, err := s.Add(AnalyzerConfig{Name: fmt.Sprintf("a%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 7500+i), Weight: w})
		if err != nil {
			t.Fatal(err)
		}
		if id != i {
			t.Fatalf("Add #%d: got ID %d", i, id)
		}
		bringUp(t, s, id)
	}
	return s
}

// bringUp reports Rise successes.
func bringUp(t tb, s *Set, id int) {
	helper(t)
	for range s.cfg.Rise {
		s.Report(id, HeartbeatOK)
	}
	if v := s.View(); v.Analyzers[indexOf(v, id)].Health != Up {
		t.Fatalf("analyzer %d not up after %d successes", id, s.cfg.Rise)
	}
}

func indexOf(v View, id int) int {
	for i, a := range v.Analyzers {
		if a.ID == id {
			return i
		}
	}
	return -1
}

// pickN picks n times from c and returns the counts by ID.
func pickN(t tb, c *Cursor, n int, key []byte) map[int]int {
	helper(t)
	got := make(map[int]int)
	for range n {
		id, ok := c.Pick(key)
		if !ok {
			t.Fatalf("Pick: nothing selectable")
		}
		got[id]++
	}
	return got
}
