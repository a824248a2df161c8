package proxy

import (
	"fmt"
	"testing"
)

// BenchmarkForwardPath measures logdist's CPU cost per packet on the
// per-packet path, without the kernel: parse and check an agent's DATA
// frame, copy it into a record, pick an analyzer, queue the write, take
// the analyzer's ACK, settle the record and queue the agent's ACK.
func BenchmarkForwardPath(b *testing.B) {
	for _, msgs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("msgs=%d", msgs), func(b *testing.B) {
			h := newHarness(b, msgs)
			for i := 0; i < 1000; i++ {
				h.cycle()
			}
			b.SetBytes(int64(len(h.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.cycle()
			}
		})
	}
}
