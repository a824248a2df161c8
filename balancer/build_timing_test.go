package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The cost of publishing a snapshot (off the per-packet path): it is paid
// on every Add, Remove, re-weight, health transition and slow-start step.
func BenchmarkBuildSnapshot(b *testing.B) {
	for _, st := range []Strategy{SWRR, Random, Hash} {
		for _, n := range []int{2, 4, 16, 256} {
			for _, kind := range []string{"decimal", "irrational"} {
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				ids := make([]uint16, n)
				w := make([]float64, n)
				seeds := make([]uint64, n)
				for i := range w {
					ids[i] = uint16(i)
					seeds[i] = nameSeed(fmt.Sprint("a", i))
					if kind == "decimal" {
						w[i] = float64(1+rng.IntN(100)) / 100
					} else {
						w[i] = 0.1 + rng.Float64()
					}
				}
				b.Run(fmt.Sprintf("%s/n=%d/%s", st, n, kind), func(b *testing.B) {
					b.ReportAllocs()
					cpu := startCPU()
					for b.Loop() {
						buildSnapshot(st, 1, ids, w, seeds)
					}
					cpu.report(b)
				})
			}
		}
	}
}
