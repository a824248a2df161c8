package logthrottle

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestThrottle(t *testing.T) {
	var clk fakeClock
	clk.advance(time.Hour)
	th := &Throttle{Interval: time.Second, clock: clk.now}
	f := func(wantOK bool, wantSuppressed uint64) {
		t.Helper()
		ok, n := th.Allow()
		if ok != wantOK || n != wantSuppressed {
			t.Fatalf("Allow() = %v, %d; want %v, %d", ok, n, wantOK, wantSuppressed)
		}
	}
	f(true, 0) // the first goes through
	for range 5 {
		f(false, 0)
	}
	clk.advance(999 * time.Millisecond)
	f(false, 0)
	clk.advance(time.Millisecond)
	f(true, 6) // one interval later: with what was held back
	f(false, 0)
	clk.advance(10 * time.Second)
	f(true, 1)
	clk.advance(10 * time.Second)
	f(true, 0) // quiet since: nothing to report
}

// A flood of one reason does not hide the first record of another.
func TestKeyedPerReason(t *testing.T) {
	var clk fakeClock
	k := &Keyed[string]{Interval: time.Second, clock: clk.now}
	if ok, _ := k.Allow("bad checksum"); !ok {
		t.Fatal("first record of a reason held back")
	}
	for range 100 {
		if ok, _ := k.Allow("bad checksum"); ok {
			t.Fatal("flood let through")
		}
	}
	if ok, n := k.Allow("too large"); !ok || n != 0 {
		t.Fatalf("another reason: %v, %d; want its first record through", ok, n)
	}
	clk.advance(time.Second)
	if ok, n := k.Allow("bad checksum"); !ok || n != 100 {
		t.Fatalf("after the interval: %v, %d; want true, 100", ok, n)
	}
}

// Under concurrent use exactly one record goes through per interval and
// every other one is counted: none is lost.
func TestThrottleConcurrent(t *testing.T) {
	var clk fakeClock
	k := &Keyed[int]{Interval: time.Second, clock: clk.now}
	const workers, each = 8, 1000
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if ok, _ := k.Allow(7); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 1 {
		t.Fatalf("%d records let through in one interval, want 1", allowed.Load())
	}
	clk.advance(time.Second)
	if ok, n := k.Allow(7); !ok || n != workers*each-1 {
		t.Fatalf("after the interval: %v, %d; want true, %d", ok, n, workers*each-1)
	}
}

// A suppressed record costs no allocation: throttling is for hot paths.
func TestAllowAllocs(t *testing.T) {
	th := New(time.Hour)
	k := NewKeyed[uint8](time.Hour)
	k.Allow(3)
	if n := testing.AllocsPerRun(100, func() { th.Allow(); k.Allow(3) }); n != 0 {
		t.Fatalf("Allow allocates %v times", n)
	}
}
