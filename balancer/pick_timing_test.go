package balancer

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var benchSizes = []int{2, 4, 16, 256}

// benchWeights are decimal weights in (0, 1], as an operator would set
// them: the SWRR sequence is exact.
func benchWeights(n int) []float64 {
	rng := rand.New(rand.NewPCG(7, uint64(n)))
	w := make([]float64, n)
	for i := range w {
		w[i] = float64(1+rng.IntN(100)) / 100
	}
	return w
}

func benchKeys() [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "agent-%08d", i)
	}
	return keys
}

var benchSink int

// cpuMeter reports cpu-ns/op next to ns/op: the CPU time the process spent
// per operation. On a shared, oversubscribed machine ns/op (wall clock)
// includes time spent waiting for a core; cpu-ns/op does not. Under
// RunParallel it is the CPU summed over the goroutines, per operation.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	t, ok := processCPU()
	return cpuMeter{t, ok}
}

func (m cpuMeter) report(b *testing.B) {
	if t, ok := processCPU(); ok && m.ok && b.N > 0 {
		b.ReportMetric(float64(t-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPick: ns per pick for each strategy and set size, from one
// cursor, and from one cursor per goroutine under RunParallel.
func BenchmarkPick(b *testing.B) {
	keys := benchKeys()
	for _, st := range []Strategy{SWRR, Random, Hash} {
		for _, n := range benchSizes {
			s := newTestSet(b, testConfig(st, nil), benchWeights(n)...)
			b.Run(fmt.Sprintf("%s/n=%d/single", st, n), func(b *testing.B) {
				c := s.NewCursor()
				defer c.Close()
				b.ReportAllocs()
				sum, i := 0, 0
				cpu := startCPU()
				for b.Loop() {
					id, _ := c.Pick(keys[i&1023])
					sum += id
					i++
				}
				cpu.report(b)
				benchSink = sum
			})
			b.Run(fmt.Sprintf("%s/n=%d/parallel", st, n), func(b *testing.B) {
				b.ReportAllocs()
				cpu := startCPU()
				b.RunParallel(func(pb *testing.PB) {
					c := s.NewCursor()
					defer c.Close()
					sum, i := 0, 0
					for pb.Next() {
						id, _ := c.Pick(keys[i&1023])
						sum += id
						i++
					}
					benchSink = sum
				})
				cpu.report(b)
			})
		}
	}
}

// BenchmarkPickAccount: a pick plus its per-cursor counters, as the proxy
// does per packet.
func BenchmarkPickAccount(b *testing.B) {
	for _, n := range []int{4, 256} {
		s := newTestSet(b, testConfig(SWRR, nil), benchWeights(n)...)
		b.Run(fmt.Sprintf("swrr/n=%d/single", n), func(b *testing.B) {
			c := s.NewCursor()
			defer c.Close()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				id, _ := c.Pick(nil)
				c.Account(id, 16, 4096)
			}
			cpu.report(b)
		})
		b.Run(fmt.Sprintf("swrr/n=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			b.RunParallel(func(pb *testing.PB) {
				c := s.NewCursor()
				defer c.Close()
				for pb.Next() {
					id, _ := c.Pick(nil)
					c.Account(id, 16, 4096)
				}
			})
			cpu.report(b)
		})
	}
}

// mutexSWRR is the classic smooth WRR (nginx's ngx_http_upstream_get_peer)
// run live, per pick, under a mutex: what the cursor design replaces.
type mutexSWRR struct {
	mu    sync.Mutex
	w     []int64
	cur   []int64
	total int64
}

func newMutexSWRR(weights []float64) *mutexSWRR {
	m := &mutexSWRR{w: make([]int64, len(weights)), cur: make([]int64, len(weights))}
	for i, x := range weights {
		m.w[i] = int64(x * 100)
		m.total += m.w[i]
	}
	return m
}

func (m *mutexSWRR) pick() int {
	m.mu.Lock()
	best := -1
	for i, w := range m.w {
		m.cur[i] += w
		if best < 0 || m.cur[i] > m.cur[best] {
			best = i
		}
	}
	m.cur[best] -= m.total
	m.mu.Unlock()
	return best
}

func BenchmarkMutexSWRR(b *testing.B) {
	for _, n := range benchSizes {
		m := newMutexSWRR(benchWeights(n))
		b.Run(fmt.Sprintf("n=%d/single", n), func(b *testing.B) {
			b.ReportAllocs()
			sum := 0
			cpu := startCPU()
			for b.Loop() {
				sum += m.pick()
			}
			cpu.report(b)
			benchSink = sum
		})
		b.Run(fmt.Sprintf("n=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			b.RunParallel(func(pb *testing.PB) {
				sum := 0
				for pb.Next() {
					sum += m.pick()
				}
				benchSink = sum
			})
			cpu.report(b)
		})
	}
}

// BenchmarkReport: a health event that changes nothing (the common case:
// a heartbeat from an analyzer that is up), from many goroutines.
func BenchmarkReport(b *testing.B) {
	s := newTestSet(b, testConfig(SWRR, nil), benchWeights(16)...)
	b.ReportAllocs()
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		id := 0
		for pb.Next() {
			s.Report(id, HeartbeatOK)
			id = (id + 1) & 15
		}
	})
	cpu.report(b)
}
