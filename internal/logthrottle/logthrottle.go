// Package logthrottle keeps a repeated log line from flooding the log: a
// peer sending a stream of bad packets would otherwise write one line per
// packet. A Throttle lets one record through per interval and counts the
// ones it held back; the next record let through reports that count (as
// the attribute "suppressed"), so nothing is hidden without a trace.
//
// Throttles are per reason: a Keyed holds one per key (a message, an
// error code), so that a flood of one kind of error does not hide the
// first of another. Both are safe for concurrent use and take no lock
// once a key exists: a throttled call costs a clock read and an atomic
// add.
package logthrottle

import (
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the origin of the monotonic clock the throttles read.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// Throttle lets one record through per Interval. The zero value lets
// every record through; set Interval before first use.
type Throttle struct {
	// Interval is the least time between two records let through.
	Interval time.Duration

	next       atomic.Int64 // when the next record may go, on the epoch clock
	suppressed atomic.Uint64
	clock      func() int64 // nil: now (tests drive their own)
}

// New returns a Throttle with the given interval.
func New(interval time.Duration) *Throttle { return &Throttle{Interval: interval} }

// Allow reports whether to log now and, if so, how many records were held
// back since the last one let through. Call it before building the
// record, so that a suppressed one costs nothing more.
func (t *Throttle) Allow() (ok bool, suppressed uint64) {
	clock := t.clock
	if clock == nil {
		clock = now
	}
	n := clock()
	next := t.next.Load()
	if n < next || !t.next.CompareAndSwap(next, n+int64(t.Interval)) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}

// Keyed is one Throttle per key, each with the same interval. Keys must
// come from a bounded set (messages, error codes), never from what a
// peer sends: every key seen is kept. The zero value lets every record
// through; set Interval before first use.
type Keyed[K comparable] struct {
	// Interval is the least time between two records of one key.
	Interval time.Duration

	m     sync.Map // K → *Throttle
	clock func() int64
}

// NewKeyed returns a Keyed with the given interval.
func NewKeyed[K comparable](interval time.Duration) *Keyed[K] {
	return &Keyed[K]{Interval: interval}
}

// Allow is Throttle.Allow for key's throttle.
func (k *Keyed[K]) Allow(key K) (ok bool, suppressed uint64) {
	v, found := k.m.Load(key)
	if !found {
		v, _ = k.m.LoadOrStore(key, &Throttle{Interval: k.Interval, clock: k.clock})
	}
	return v.(*Throttle).Allow()
}
