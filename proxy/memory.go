package proxy

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Memory. What logdist holds is bounded by its configuration (the
// formula is in docs/OPERATIONS.md, "Memory"): records by the analyzers'
// windows and the wait queue's bounds, half-sent frames by
// MaxPartialBytes, answers an agent does not read by maxAgentOutbound.
//
// Giving it back: the buffers of closed connections return to gnet's and
// Go's pools, and the Go runtime returns freed pages to the operating
// system only slowly. After a burst of half-sent frames (a slowloris, or
// a few hundred agents stalled mid-frame) that left, logdist would keep
// its peak RSS for minutes. So when the bytes held in half-sent frames
// fall to a quarter of a peak of at least memReleasePeak, the ticker runs
// two garbage collections (pooled buffers survive the first) and returns
// the freed memory to the system, at most once per memReleaseEvery.

const (
	memReleasePeak  = 16 << 20
	memReleaseEvery = 10 * time.Second
)

// memWatch follows the partial-frame bytes for the ticker.
type memWatch struct {
	peak int64
	last time.Time
}

// tick gives memory back if a large peak of half-sent frames is gone.
func (m *memWatch) tick(s *Server, now time.Time) {
	cur := s.partial.Load()
	m.peak = max(m.peak, cur)
	if m.peak < memReleasePeak || cur > m.peak/4 || now.Sub(m.last) < memReleaseEvery {
		return
	}
	m.last = now
	s.log.Info("giving memory back to the system after a peak of half-sent frames", "peak_bytes", m.peak, "now_bytes", cur)
	m.peak = cur
	runtime.GC()
	debug.FreeOSMemory()
}
