// Package ratelimit is the per-agent rate limit: packets per second and
// bytes per second, each with a burst, shared by every connection and
// event loop of one agent identity without a lock.
//
// Each dimension is a GCRA cell (the generic cell rate algorithm, a token
// bucket kept as one number): the theoretical arrival time of the next
// unit, advanced by one emission interval per unit taken, and allowed to
// run ahead of now by the burst. Taking is one atomic compare-and-swap;
// a refusal says how long until the request would fit, which is what a
// BUSY retry-after needs.
package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// Limits are one identity's rates. A rate of 0 is no limit on that
// dimension.
type Limits struct {
	PacketsPerSecond float64 `json:"packets-per-second" yaml:"packets-per-second"`
	// PacketsBurst is how many packets may come at once after a quiet
	// spell (default: one second's worth, at least 1).
	PacketsBurst   float64 `json:"packets-burst,omitempty" yaml:"packets-burst,omitempty"`
	BytesPerSecond float64 `json:"bytes-per-second" yaml:"bytes-per-second"`
	// BytesBurst likewise (default: one second's worth).
	BytesBurst float64 `json:"bytes-burst,omitempty" yaml:"bytes-burst,omitempty"`
}

// Zero reports whether l limits nothing.
func (l Limits) Zero() bool { return l.PacketsPerSecond <= 0 && l.BytesPerSecond <= 0 }

// Limiter enforces Limits. Its methods are safe for concurrent use; its
// limits may change while it is used (SetLimits), keeping what it has
// counted.
type Limiter struct {
	p   atomic.Pointer[params]
	pkt atomic.Int64 // theoretical arrival time of the next packet
	byt atomic.Int64 // and of the next byte
}

type params struct {
	limits   Limits
	pkt, byt cell
}

// New returns a Limiter for l. One with zero Limits allows everything,
// at the cost of an atomic load.
func New(l Limits) *Limiter {
	lim := &Limiter{}
	lim.SetLimits(l, 0)
	return lim
}

// SetLimits makes l the limits from now on (now on Take's clock). A
// debt run up under the old limits is cut to what the new ones allow: an
// agent held back by a limit an operator just raised gets the new rate at
// once.
func (l *Limiter) SetLimits(lim Limits, now int64) {
	p := &params{limits: lim}
	p.pkt.init(lim.PacketsPerSecond, lim.PacketsBurst)
	p.byt.init(lim.BytesPerSecond, lim.BytesBurst)
	l.p.Store(p)
	p.pkt.cap(&l.pkt, now)
	p.byt.cap(&l.byt, now)
}

// Limits returns what it enforces.
func (l *Limiter) Limits() Limits { return l.p.Load().limits }

// Take asks for one packet of n bytes at now (nanoseconds on any clock
// that every caller shares, e.g. Unix time). It returns 0 when the packet
// may go, or how long until it would fit, and then takes nothing. A nil
// Limiter allows everything.
func (l *Limiter) Take(now int64, n int) time.Duration {
	if l == nil {
		return 0
	}
	p := l.p.Load()
	if wait := p.pkt.take(&l.pkt, now, 1); wait > 0 {
		return time.Duration(wait)
	}
	if wait := p.byt.take(&l.byt, now, float64(n)); wait > 0 {
		p.pkt.refund(&l.pkt, 1)
		return time.Duration(wait)
	}
	return 0
}

// Idle reports whether both buckets are full at now: forgetting the
// Limiter then loses nothing.
func (l *Limiter) Idle(now int64) bool { return l.pkt.Load() <= now && l.byt.Load() <= now }

// cell is one GCRA dimension's parameters: interval is the emission
// interval (ns per unit), tolerance how far the theoretical arrival time
// may run ahead of now (the burst).
type cell struct {
	on        bool
	interval  float64
	tolerance int64
}

func (c *cell) init(rate, burst float64) {
	if rate <= 0 {
		return
	}
	if burst <= 0 {
		burst = max(rate, 1)
	}
	c.on = true
	// Below MinRate the interval would overflow the clock's arithmetic.
	c.interval = 1e9 / max(rate, MinRate)
	c.tolerance = int64(math.Min(burst*c.interval, maxAhead))
}

// MinRate is the lowest rate a Limiter keeps (one unit in 1000 s); lower
// ones are raised to it.
const MinRate = 1e-3

// maxDebt bounds how far past the tolerance one request larger than the
// whole burst may push the theoretical arrival time: a single 1 MiB
// packet at 1,000 bytes/s must not shut its agent out for 17 minutes.
// Beyond it the rate is not kept exactly for such requests.
const maxDebt = int64(60 * time.Second)

// maxAhead bounds the tolerance (and so a burst) to keep the arithmetic
// far from overflow.
const maxAhead = float64(1 << 60)

// cap cuts tat to at most now + tolerance (after a change of limits): the
// bucket is then empty under the new limits, no debt left from the old.
func (c *cell) cap(tat *atomic.Int64, now int64) {
	if !c.on || now == 0 {
		return
	}
	limit := now + c.tolerance
	for {
		t := tat.Load()
		if t <= limit || tat.CompareAndSwap(t, limit) {
			return
		}
	}
}

// take advances the theoretical arrival time tat by units; it returns how
// long to wait when that would run tat further ahead than the tolerance.
// A request bigger than the whole burst goes through when the cell is
// idle (tat not ahead of now), so that no packet waits for ever; the debt
// it leaves is paid by the next ones.
func (c *cell) take(tat *atomic.Int64, now int64, units float64) int64 {
	if !c.on {
		return 0
	}
	cost := int64(math.Min(units*c.interval, maxAhead))
	for {
		t := tat.Load()
		next := max(t, now) + cost
		if ahead := next - now; ahead > c.tolerance && t > now {
			return ahead - c.tolerance
		}
		next = min(next, now+c.tolerance+maxDebt)
		if tat.CompareAndSwap(t, next) {
			return 0
		}
	}
}

func (c *cell) refund(tat *atomic.Int64, units float64) {
	if c.on {
		tat.Add(-int64(units * c.interval))
	}
}
