package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A sender that takes as fast as it can gets the rate, after its burst;
// a refusal names the wait, and the packet goes when it has passed.
func TestRate(t *testing.T) {
	l := New(Limits{PacketsPerSecond: 1000, PacketsBurst: 10})
	var now int64 = 1e18
	got := 0
	for step := int64(0); step < 10e9; step += 100_000 { // 10 s in 100 µs steps
		for l.Take(now+step, 100) == 0 {
			got++
		}
	}
	if want := 10 + 10_000; got < want-1 || got > want+1 {
		t.Fatalf("%d packets in 10 s at 1000/s with a burst of 10, want %d", got, want)
	}
	now += 20e9
	for range 10 {
		if w := l.Take(now, 1); w != 0 {
			t.Fatalf("within the burst after a quiet spell: wait %v", w)
		}
	}
	w := l.Take(now, 1)
	if w <= 0 || w > time.Millisecond {
		t.Fatalf("beyond the burst: wait %v, want (0, 1ms]", w)
	}
	if l.Take(now+int64(w), 1) != 0 {
		t.Fatal("refused after waiting what it was told")
	}
}

// Bytes: a refusal on bytes takes no packet either; a packet bigger than
// the whole burst still goes when the bucket is idle, and its debt delays
// the next.
func TestBytes(t *testing.T) {
	l := New(Limits{PacketsPerSecond: 1e6, BytesPerSecond: 1000, BytesBurst: 1000})
	var now int64 = 1e18
	if l.Take(now, 800) != 0 {
		t.Fatal("800 bytes of a 1000-byte burst refused")
	}
	if w := l.Take(now, 800); w <= 0 || w > time.Second {
		t.Fatalf("1600 bytes at once: wait %v", w)
	}
	big := New(Limits{BytesPerSecond: 1000, BytesBurst: 1000})
	if big.Take(now, 5000) != 0 {
		t.Fatal("a 5000-byte packet refused on an idle bucket")
	}
	if w := big.Take(now, 1); w < 3*time.Second {
		t.Fatalf("after a 5000-byte packet at 1000 B/s: wait %v, want its debt paid first", w)
	}
	if New(Limits{}).Take(now, 1<<30) != 0 || (*Limiter)(nil).Take(now, 1) != 0 {
		t.Fatal("zero limits and a nil limiter must allow all")
	}
}

// Many goroutines (loops) sharing a limiter together get its rate, not
// each.
func TestShared(t *testing.T) {
	l := New(Limits{PacketsPerSecond: 5000, PacketsBurst: 1})
	var got atomic.Int64
	var wg sync.WaitGroup
	start := int64(1e18)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for step := int64(g); step < 1e9; step += 8 * 20_000 { // 1 s, interleaved
				if l.Take(start+step, 1) == 0 {
					got.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	if n := got.Load(); n > 5000+8 {
		t.Fatalf("8 goroutines took %d in 1 s at 5000/s", n)
	}
}

// New limits apply at once; what was counted stays.
func TestSetLimits(t *testing.T) {
	l := New(Limits{})
	var now int64 = 1e18
	for range 100 {
		if l.Take(now, 1) != 0 {
			t.Fatal("refused without limits")
		}
	}
	l.SetLimits(Limits{PacketsPerSecond: 10, PacketsBurst: 2}, now)
	for i := range 2 {
		if l.Take(now, 1) != 0 {
			t.Fatalf("packet %d of the new limits' burst of 2 refused", i+1)
		}
	}
	if w := l.Take(now, 1); w <= 0 || w > 100*time.Millisecond {
		t.Fatalf("past the new burst: wait %v", w)
	}
	if l.Limits().PacketsPerSecond != 10 {
		t.Fatal("Limits does not say what it enforces")
	}

	// A debt run up under a low limit is cut when the limit is raised.
	b := New(Limits{BytesPerSecond: 1000, BytesBurst: 1000})
	if b.Take(now, 1<<20) != 0 {
		t.Fatal("a 1 MiB packet on an idle bucket refused")
	}
	if w := b.Take(now, 1); w > 61*time.Second {
		t.Fatalf("after a 1 MiB packet at 1000 B/s: wait %v, want the debt capped at a minute", w)
	}
	b.SetLimits(Limits{BytesPerSecond: 1e9}, now)
	if w := b.Take(now, 1000); w > time.Millisecond {
		t.Fatalf("after raising the limit to 1 GB/s: wait %v, want at most the new rate's", w)
	}
}

// A rate too small to compute with is raised to MinRate, not turned into
// no limit by an overflow.
func TestTinyRate(t *testing.T) {
	l := New(Limits{PacketsPerSecond: 1e-11, PacketsBurst: 1})
	var now int64 = 1e18
	if l.Take(now, 1) != 0 {
		t.Fatal("the first packet refused")
	}
	if w := l.Take(now, 1); w < time.Second {
		t.Fatalf("second packet at a tiny rate: wait %v, want a long one", w)
	}
}

// Taking is lock-free and allocation-free: it is on the per-packet path.
func TestTakeAllocs(t *testing.T) {
	l := New(Limits{PacketsPerSecond: 1e9, BytesPerSecond: 1e12})
	var now int64 = 1e18
	if n := testing.AllocsPerRun(1000, func() { now += 1000; l.Take(now, 1000) }); n != 0 {
		t.Fatalf("Take allocates %v times", n)
	}
}

func BenchmarkTake(b *testing.B) {
	l := New(Limits{PacketsPerSecond: 1e9, BytesPerSecond: 1e12})
	now := time.Now().UnixNano()
	for b.Loop() {
		now += 1000
		l.Take(now, 1000)
	}
}
