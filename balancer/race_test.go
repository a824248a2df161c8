package balancer

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Pickers on several goroutines, each with its own cursor, while other
// goroutines flip health, re-weight, drain, add and remove analyzers and
// read views. Run with -race. Also checks, across goroutines, that an
// analyzer forced down is never picked by a pick that started after
// ForceDown returned, and that no accounted packet is lost.
func TestConcurrentPickAndChange(t *testing.T) {
	for _, st := range []Strategy{SWRR, Random, Hash} {
		t.Run(st.String(), func(t *testing.T) {
			s := newTestSet(t, testConfig(st, nil), 0.4, 0.3, 0.2, 0.1)
			var (
				stop      atomic.Bool
				banned    atomic.Int64 // ID forced down, -1: none
				accounted atomic.Uint64
				progress  atomic.Uint64 // picks / 32, so that changes interleave with picks
				wg        sync.WaitGroup
				errs      = make(chan error, 8)
			)
			banned.Store(-1)
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := s.NewCursor()
					defer c.Close()
					key := []byte(fmt.Sprint("agent-", g))
					var n uint64
					for i := 0; !stop.Load(); i++ {
						b := banned.Load() // read before the pick starts
						id, ok := c.Pick(key)
						if !ok {
							continue
						}
						if int64(id) == b {
							errs <- fmt.Errorf("picked %d after ForceDown returned", id)
							return
						}
						c.Account(id, 3, 100)
						n++
						if i%32 == 0 {
							key[len(key)-1]++
							progress.Add(1)
							runtime.Gosched() // 6 busy goroutines, 2 cores: let the writer in
						}
					}
					accounted.Add(n)
				}()
			}
			wg.Add(1)
			go func() { // a metrics scraper
				defer wg.Done()
				for !stop.Load() {
					v := s.View()
					if v.Selectable > len(v.Analyzers) {
						errs <- fmt.Errorf("view: %d selectable of %d", v.Selectable, len(v.Analyzers))
						return
					}
					runtime.Gosched()
				}
			}()
			for round := range 150 {
				// Let the pickers run between changes; poll, never sleep.
				seen, deadline := progress.Load(), time.Now().Add(10*time.Second)
				for progress.Load() < seen+2 && time.Now().Before(deadline) {
					runtime.Gosched()
				}
				id := round % 4
				name := fmt.Sprint("a", id)
				switch round % 5 {
				case 0:
					for range s.cfg.Fall {
						s.Report(id, WriteError)
					}
					s.Report(id, AckTimeout) // ignored: breaker open
				case 1:
					_ = s.SetWeight(name, float64(round%7)/10)
				case 2:
					_ = s.ForceDown(name)
					banned.Store(int64(id))
					_ = s.SetWeight(name, 0.5) // still not selectable
					banned.Store(-1)
					_ = s.Enable(name)
				case 3:
					_ = s.Drain(name)
					_ = s.ForceUp(name)
				case 4:
					_ = s.Remove("extra")
					xid, err := s.Add(AnalyzerConfig{Name: "extra", Addr: "x:9", Weight: 0.25})
					if err == nil {
						bringUp(t, s, xid)
					}
				}
				s.AllowProbe(id)
				s.Tick()
			}
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Every accounted packet is in the view, except those of the
			// "extra" analyzers removed on the way (their counters leave
			// with them).
			v := s.View()
			if v.Packets > accounted.Load() {
				t.Fatalf("view counts %d packets, %d accounted", v.Packets, accounted.Load())
			}
			t.Logf("%d packets accounted, %d in the view", accounted.Load(), v.Packets)
		})
	}
}
