package balancer

import "testing"

// A pick and an Account allocate nothing, for every strategy.
func TestPickAllocs(t *testing.T) {
	for _, st := range []Strategy{SWRR, Random, Hash} {
		s := newTestSet(t, testConfig(st, nil), 0.4, 0.3, 0.2, 0.1, 1.7)
		c := s.NewCursor()
		key := []byte("agent-0123456789")
		c.Pick(key) // load the snapshot
		if n := testing.AllocsPerRun(1000, func() {
			id, _ := c.Pick(key)
			c.Account(id, 10, 1500)
		}); n != 0 {
			t.Errorf("%s: %v allocations per Pick+Account, want 0", st, n)
		}
		if n := testing.AllocsPerRun(100, func() { s.Report(0, HeartbeatOK) }); n != 0 {
			t.Errorf("%s: %v allocations per no-op Report, want 0", st, n)
		}
		c.Close()
	}
}
