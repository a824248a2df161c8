package balancer

import (
	"math/rand/v2"
	"sync/atomic"
)

// cacheLine pads per-cursor state so that two event loops never write to
// the same cache line.
const cacheLine = 64

// Cursor picks analyzers for one event loop. It is not safe for concurrent
// use: each goroutine that picks owns its own (Set.NewCursor), and that is
// what makes a pick lock-free and uncontended — an atomic pointer load to
// check the snapshot is still current (a plain load on amd64 and arm64),
// then, for SWRR, a slice index and an increment.
//
// When the set publishes a new snapshot the cursor's next Pick moves to it
// and, for SWRR, starts at the beginning of the new sequence, which is
// where the accuracy bound holds: from that point, N picks give every
// analyzer between floor(N·share) and ceil(N·share) picks, share being its
// share in that snapshot (AnalyzerView.TargetShare: the effective weight's
// share, exact or within 1/65536, see quantize). K cursors together are
// within K of N·share. All cursors start at offset 0 on purpose: a window
// that starts elsewhere in the sequence is only within 2 (the difference
// of two prefixes), so staggered offsets would double the worst-case
// aggregate bound; what they would buy, smoothing while every loop has
// picked only a few packets, the bound already gives.
type Cursor struct {
	_ [cacheLine]byte
	// src is the set's published snapshot. fast is the snapshot seq and pos
	// walk, or nil when the fast path does not apply (another strategy, or
	// nothing selectable): then every pick takes pickSlow.
	src      *atomic.Pointer[snapshot]
	fast     *snapshot
	seq      []uint16
	pos      int
	strategy Strategy
	rng      rand.PCG
	ctr      []counter
	set      *Set
	stats    *cursorStats
	_        [cacheLine]byte
}

// counter is one analyzer's counters in one cursor. Only the owning cursor
// adds to them (an uncontended atomic add on a line no other core writes);
// View sums them over the cursors.
type counter struct {
	packets, messages, bytes atomic.Uint64
}

// cursorStats is the part of a cursor the set can see.
type cursorStats struct {
	c []counter
}

// counterPad keeps two cursors' counter arrays off each other's cache lines
// (3 counters of 24 bytes > 64 bytes on each side).
const counterPad = 3

func newCursorStats(n int) *cursorStats {
	all := make([]counter, n+2*counterPad)
	return &cursorStats{c: all[counterPad : counterPad+n : counterPad+n]}
}

// NewCursor returns a cursor for one goroutine. Close it when the goroutine
// is done, so that its counters are kept and it is no longer summed.
func (s *Set) NewCursor() *Cursor {
	st := newCursorStats(s.cfg.MaxAnalyzers)
	s.mu.Lock()
	s.cursors[st] = struct{}{}
	s.nextCur++
	n := s.nextCur
	s.mu.Unlock()
	c := &Cursor{src: &s.snap, set: s, strategy: s.cfg.Strategy, ctr: st.c, stats: st}
	c.rng.Seed(s.seed, fmix64(n))
	return c
}

// Pick returns the analyzer to send the next packet to, or ok = false (and
// id = -1) when none is selectable: every analyzer down, drained, forced
// down or at weight 0, or the set empty. The caller then queues the packet.
// key is used only by the Hash strategy (for example the agent id); pass
// nil otherwise. Pick does not count anything: call Account for a packet
// actually sent, so that an abandoned pick does not skew the counters.
// It does not allocate.
func (c *Cursor) Pick(key []byte) (id int, ok bool) {
	// One atomic load (a plain load on amd64 and arm64), a compare, an
	// index and an increment.
	if c.src.Load() != c.fast {
		return c.pickSlow(key)
	}
	p := c.pos
	id = int(c.seq[p])
	if p++; p == len(c.seq) {
		p = 0
	}
	c.pos = p
	return id, true
}

// pickSlow picks for the strategies other than SWRR, and for SWRR when the
// snapshot changed (the cursor moves to the start of the new sequence) or
// has nothing to pick.
func (c *Cursor) pickSlow(key []byte) (int, bool) {
	sn := c.src.Load()
	switch c.strategy {
	case SWRR:
		if len(sn.seq) == 0 {
			c.fast = nil
			return -1, false
		}
		c.fast, c.seq, c.pos = sn, sn.seq, 1%len(sn.seq)
		return int(sn.seq[0]), true
	case Random:
		if len(sn.alias) == 0 {
			return -1, false
		}
		return int(pickAlias(sn.alias, &c.rng)), true
	case Hash:
		if len(sn.ids) == 0 {
			return -1, false
		}
		return int(sn.ids[pickRendezvous(sn, key)]), true
	}
	panic("BUG: balancer: cursor with unknown strategy")
}

// Selectable returns the IDs of the analyzers the current snapshot
// selects from, ascending. The slice is the snapshot's own: read it, do
// not keep or change it. For a caller that must find any selectable
// analyzer when its picks are full (not for the per-packet path).
func (c *Cursor) Selectable() []uint16 { return c.src.Load().ids }

// Account records that one packet of msgs messages and bytes bytes was
// sent to analyzer id. It is cheap (three uncontended atomic adds on this
// cursor's own counters) and ignores an id that is not a valid ID, such as
// the -1 of a failed Pick.
func (c *Cursor) Account(id, msgs, bytes int) { c.AccountBatch(id, 1, msgs, bytes) }

// AccountBatch records packets packets, of msgs messages and bytes bytes
// in all, sent to analyzer id. A caller that picks many packets between
// two points where the counters must be current (logdist: one event-loop
// wake-up) adds them up itself and calls this once per analyzer, keeping
// atomic instructions, which stall the pipeline, off its per-packet path.
func (c *Cursor) AccountBatch(id, packets, msgs, bytes int) {
	if uint(id) >= uint(len(c.ctr)) {
		return
	}
	k := &c.ctr[id]
	k.packets.Add(uint64(packets))
	k.messages.Add(uint64(msgs))
	k.bytes.Add(uint64(bytes))
}

// Close folds the cursor's counters into the set's totals and unregisters
// it. The cursor must not be used after Close; Close is idempotent.
func (c *Cursor) Close() {
	s := c.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cursors[c.stats]; !ok {
		return
	}
	delete(s.cursors, c.stats)
	for id := range c.stats.c {
		k := &c.stats.c[id]
		s.retired[id].add(k.packets.Load(), k.messages.Load(), k.bytes.Load())
	}
	c.ctr = nil
}
