package proxy

import (
	"container/heap"
	"context"
	"time"

	"github.com/logdist/logdist/internal/arena"
)

// The delivery ledger: every packet a loop holds is a record in exactly one
// state, in exactly the place that state names, until it leaves the loop.
//
//	            dispatch                 send                 ACK
//	recNew ───────────────▶ recAssigned ─────▶ recInFlight ─────────▶ freed (acknowledged to its agent)
//	   │ no analyzer           (backlog)          │  │  │ ERROR ─────▶ freed (ERROR to the agent)
//	   ▼ can take it                              │  │  └ BUSY ─────▶ recDelayed ─(retry-after)─▶ dispatch
//	recWaiting (loop queue) ──(room)──▶ dispatch   │  └ connection lost / drained / ack timeout
//	   │ queue full: BUSY to the agent, freed      ▼
//	   │ (syslog: dropped, counted)             recRedo ─(next flush)─▶ dispatch
//	   └ agent gone: freed (the agent resends it)
//
// A record whose agent connection closed is an orphan: nobody waits for
// its ACK, and the agent resends the packet on its next connection, so an
// orphan still waiting is dropped (counted) rather than forwarded. One
// already in flight finishes where it is.
type recState uint8

const (
	recFree     recState = iota // on the loop's free list
	recNew                      // built from an agent's DATA or a syslog batch, not yet dispatched
	recWaiting                  // in the loop's wait queue: no analyzer could take it
	recAssigned                 // in an upstream's backlog, waiting for its window
	recInFlight                 // written (or being written) to an analyzer, awaiting its answer
	recDelayed                  // an analyzer answered BUSY: waits its retry-after, then is dispatched again
	recRedo                     // its connection failed or drained: dispatched again at the next flush
	recSpooling                 // being written to the spool by the loop's worker (durable.go)
	numRecStates
)

var recStateNames = [numRecStates]string{"free", "new", "waiting", "assigned", "in-flight", "delayed", "redo", "spooling"}

func (s recState) String() string {
	if s < numRecStates {
		return recStateNames[s]
	}
	return "invalid"
}

// recMoves[from] has bit to set for every legal transition.
var recMoves = func() (m [numRecStates]uint8) {
	allow := func(from recState, to ...recState) {
		for _, t := range to {
			m[from] |= 1 << t
		}
	}
	allow(recFree, recNew)
	allow(recNew, recAssigned, recInFlight, recWaiting, recFree, recSpooling)
	allow(recWaiting, recAssigned, recInFlight, recFree, recSpooling)
	allow(recAssigned, recInFlight, recRedo)
	allow(recInFlight, recFree, recDelayed, recRedo)
	allow(recDelayed, recAssigned, recInFlight, recWaiting, recFree, recSpooling)
	allow(recRedo, recAssigned, recInFlight, recWaiting, recFree, recDelayed, recSpooling)
	allow(recSpooling, recNew)
	return m
}()

// move changes r's state, checking the transition: a record in a place
// its state does not name is a bookkeeping bug that would lose or
// duplicate a packet.
func (r *record) move(to recState) {
	if recMoves[r.state]&(1<<to) == 0 {
		panic("BUG: proxy: record moved from " + r.state.String() + " to " + to.String())
	}
	r.state = to
}

// record is one packet on its way to an analyzer: a private copy of the
// whole DATA frame (gnet's buffers are not kept past a callback), who sent
// it and where it is. Records are owned by one loop and recycled through
// its free list.
type record struct {
	// The first 64 bytes hold what settling a record reads (the
	// upstream's Acked, freeRecord): they are one cache line, as records
	// are 128 bytes and so 64-byte aligned (TestRecordLayout). At ack time
	// a record has been out of the cache for milliseconds; one line is
	// one miss.
	// agent is the connection that sent the packet and waits for its
	// answer; nil for a packet logdist owns: a syslog batch, or a packet
	// in the spool (durable.go), whose aseq is then its spool sequence
	// (0: not in the spool). See spoolSeq.
	agent *agentConn
	aseq  uint64       // the agent's sequence for this packet (or the spool's)
	ch    *arena.Chunk // the arena chunk buf is in, or nil if buf is own
	stamp int64        // precise receive time of a packet sampled for latency (one in ackSample); 0 if not sampled
	msgs  uint32
	// syslog marks a packet built from syslog messages: no agent waits
	// for it, and it is dropped (counted) where an agent would get BUSY.
	syslog bool
	state  recState
	// traced marks a packet with spans (tr): the one byte left in the
	// first cache line, so untraced packets never read tr.
	traced bool
	// hedged marks a packet in flight to a late analyzer that was copied
	// to another (upstream.checkLate): the copy carries its delivery, so
	// this one is never dispatched again.
	hedged bool
	own    []byte // the record's own buffer, kept across reuse, for frames not in the arena

	buf    []byte // the DATA frame; its header sequence is rewritten per upstream
	sentAt int64  // the loop's coarse clock when queued or written upstream (queue age, ack timeout)
	// notBefore delays a re-dispatch after an analyzer said BUSY.
	notBefore int64
	// dispatched is the precise time a sampled packet (stamp != 0) was
	// last written to an analyzer.
	dispatched int64
	tr         *packetTrace // a traced packet's spans (traced)
	// tries counts delivery attempts that failed (retry).
	tries uint8
	_     [7]byte // to 128 bytes
}

// orphan reports whether r's agent connection is gone: nobody waits for
// its ack, and the agent resends it on its next connection. A packet
// logdist owns (agent nil) is never one.
func (r *record) orphan() bool { return r.agent != nil && r.agent.closed }

// maxFreeRecords and maxFreeBytes bound each loop's free list; past them
// records go to the GC. Buffers larger than maxRecordBuf are not kept, so
// one huge packet does not pin its buffer; syslog loops keep buffers up to
// their batch size, which they fill every time.
const (
	maxFreeRecords = 1 << 14
	maxFreeBytes   = 32 << 20
	maxRecordBuf   = 64 << 10
)

// ledger is the records one loop holds outside its upstreams, and their
// memory. Only the loop's goroutine touches it.
type ledger struct {
	arena     arena.Arena
	free      []*record
	freeBytes int // own-buffer capacity held by free
	maxBuf    int // largest buffer kept on the free list
	// live counts the records out of the free list.
	live    int64
	waiting recordQueue // recWaiting, oldest first
	// orphansQueued counts packets in waiting whose agent has closed (at
	// least; see dropQueuedOrphans).
	orphansQueued int
	delayed       recordQueue // recDelayed after BUSY, by notBefore (FIFO: retry-afters are clamped)
	// retrying holds recDelayed packets waiting out a retry's backoff
	// (retryDelay), a heap by notBefore: backoffs differ per packet.
	retrying retryHeap
	redo     []*record // recRedo
}

func (lp *loop) newRecord(frameBytes []byte, a *agentConn, aseq uint64, msgs uint32) *record {
	l := &lp.led
	var r *record
	if n := len(l.free); n > 0 {
		r = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		l.freeBytes -= cap(r.own)
	} else {
		r = &record{}
	}
	r.move(recNew)
	if b, c := l.arena.Alloc(len(frameBytes)); c != nil {
		copy(b, frameBytes)
		r.buf, r.ch = b, c
	} else {
		r.own = append(r.own[:0], frameBytes...)
		r.buf = r.own
	}
	r.agent, r.aseq, r.msgs = a, aseq, msgs
	r.sentAt, r.stamp, r.notBefore, r.syslog, r.hedged, r.tries = 0, 0, 0, false, false, 0
	if lp.m.sampleNow() {
		r.stamp = lp.preciseNow()
	}
	l.live++
	return r
}

// warmFree loads the two cache lines of the next n records newRecord
// will take. Other processes run on the core between two wake-ups of the
// loop and evict its caches; a tight loop of independent loads takes the
// misses all at once, where newRecord would take them one at a time.
func (lp *loop) warmFree(n int) {
	free := lp.led.free
	n = min(n, len(free))
	var touch uint64
	for i := len(free) - n; i < len(free); i++ {
		touch += uint64(cap(free[i].own)) + uint64(free[i].notBefore) // both cache lines: newRecord fills both
	}
	lp.touch += touch
}

// freeRecord ends r's life on this loop.
func (lp *loop) freeRecord(r *record) {
	l := &lp.led
	if r.traced {
		r.traceEnd("dropped") // delivered or refused packets ended theirs already
		r.traced = false
	}
	r.move(recFree)
	l.live--
	if r.agent == nil && r.aseq != 0 {
		lp.sp.held--
	}
	r.agent = nil
	r.buf = nil
	if r.ch != nil {
		l.arena.Free(r.ch)
		r.ch = nil
	}
	if c := cap(r.own); c > l.maxBuf || len(l.free) >= maxFreeRecords || l.freeBytes+c > maxFreeBytes {
		return
	}
	l.free = append(l.free, r)
	l.freeBytes += cap(r.own)
}

// dispatch sends r to the analyzer the cursor picks; if none can take it,
// r waits in the queue, and if the queue is full the agent gets BUSY.
func (lp *loop) dispatch(r *record) {
	if !lp.tryDispatch(r) && !lp.strandedDict(r) {
		lp.enqueueWaiting(r)
	}
}

// tryDispatch hands r to the analyzer the cursor picks and reports whether
// one took it. An analyzer this loop has no working connection to, or
// whose window is full, is skipped (the pick moves on), so a dead
// connection costs a few picks, never a packet.
func (lp *loop) tryDispatch(r *record) bool {
	if lp.warming && lp.stillWarming() {
		return false
	}
	if lp.rg.outage || lp.rg.until != 0 {
		if lp.regathering() {
			return false
		}
	}
	var key []byte
	if r.agent != nil {
		key = r.agent.sess.AgentID()
	}
	dict := lp.dictOf(r) // 0 without dictionaries (dict.go)
	for tries := 0; tries <= len(lp.ups); tries++ {
		id, ok := lp.cur.Pick(key)
		if !ok {
			lp.rg.outage = true // no analyzer selectable: a total outage
			return false
		}
		u := lp.upstreamFor(id)
		if u == nil || !u.accepting() || !u.takesDict(dict) {
			continue
		}
		u.take(r)
		return true
	}
	return lp.anyWithRoom(r, dict)
}

// regather is the end of a total outage. When the first analyzer comes
// back, the others are made eligible for a probe at once (their breakers
// may have backed off for up to BreakerMaxBackoff), and the packets that
// waited — and those that arrive meanwhile — keep waiting until each of
// the loop's analyzers has either come up or failed its probe, at most
// regatherMax. The backlog then drains by weight across every analyzer
// that came back; before, the first one back took it all (weight 0.2 took
// 85 % of a 45 s outage's packets).
type regather struct {
	outage bool  // a dispatch found no analyzer selectable
	from   int64 // when the first came back (loop clock)
	until  int64 // when the wait ends at the latest; 0: not waiting
}

const (
	// regatherMin (and at least three timer ticks) lets the probes
	// RetryDown allowed start before the loop judges whether any is under
	// way.
	regatherMin = 50 * time.Millisecond
	// regatherMax bounds the wait: an analyzer slow to come back must not
	// hold the backlog long.
	regatherMax = 2 * time.Second
)

// regathering reports whether dispatch waits for analyzers coming back
// after a total outage; it starts the wait when the first one is back.
func (lp *loop) regathering() bool {
	rg := &lp.rg
	now := lp.clock()
	if rg.outage {
		if len(lp.cur.Selectable()) == 0 {
			return false // still out: dispatch finds out itself
		}
		rg.outage = false
		if lp.led.waiting.len() == 0 {
			return false // nothing held back: nothing to spread
		}
		rg.from, rg.until = now, now+int64(regatherMax)
		if n := lp.s.set.RetryDown(); n > 0 {
			lp.s.log.Info("an analyzer is back after all were down: probing the others now and holding the backlog until they answer",
				"loop", lp.idx, "probing", n, "waiting", lp.led.waiting.len(), "at_most", regatherMax)
		}
		for _, u := range lp.ups { // dial now, not at the next tick
			if u != nil && u.state == upIdle && !u.retiring && lp.s.set.AllowProbeGen(u.id, u.gen) {
				u.dial()
			}
		}
	}
	if rg.until == 0 {
		return false
	}
	if now >= rg.until {
		rg.until = 0
		return false
	}
	if now-rg.from < max(int64(regatherMin), 3*int64(lp.conf.timer)) {
		return true
	}
	for _, u := range lp.ups {
		if u == nil || u.retiring {
			continue
		}
		switch u.state {
		case upDialing, upHandshake:
			return true
		case upReady, upIdle:
			// Rising: connected and counting successes, or being probed
			// (by this loop or another: a half-open breaker lets one
			// probe through, so the other loops' connections wait idle).
			if lp.s.set.Rising(u.id) {
				return true
			}
		}
	}
	rg.until = 0
	return false
}

// anyWithRoom hands r to a selectable analyzer with room, when the picks
// ran out on full ones: with skewed weights (0.97/0.01/0.01/0.01) a full
// heavy analyzer would otherwise make packets wait while the light ones
// have room. The share moves towards them while the heavy one is full,
// which is what its being full means. Hash keeps its keys where they are
// (sticky routing) and lets the packet wait.
func (lp *loop) anyWithRoom(r *record, dict uint32) bool {
	if lp.hash {
		return false
	}
	ids := lp.cur.Selectable()
	n := len(ids)
	for i := 0; i < n; i++ {
		lp.spill++
		u := lp.upstreamFor(int(ids[(lp.spill)%n]))
		if u != nil && u.accepting() && u.takesDict(dict) {
			u.take(r)
			lp.m.spilled.Inc()
			return true
		}
	}
	return false
}

// stillWarming reports whether one of the loop's first connections to the
// analyzers is still being set up. Until each has either succeeded or
// failed, packets wait: picking around a connection that is merely not up
// yet would skew the shares of a loop's first packets.
func (lp *loop) stillWarming() bool {
	for _, u := range lp.ups {
		if u != nil && !u.everReady && (u.state == upDialing || u.state == upHandshake) {
			return true
		}
	}
	lp.warming = false
	return false
}

func (lp *loop) enqueueWaiting(r *record) {
	s := lp.s
	if int(s.queuedPackets.Load()) >= lp.conf.QueueMaxPackets || s.queuedBytes.Load()+int64(len(r.buf)) > lp.conf.QueueMaxBytes {
		lp.m.queueFull.Inc()
		if lp.s.dur != nil && !lp.sp.noSpill && lp.led.waiting.len() > 0 {
			// Spill the oldest instead: it holds its agent's cumulative
			// ACK back the longest, and this one takes its place.
			old := lp.led.waiting.pop()
			lp.dequeued(old)
			if !lp.spillToSpool(old) {
				lp.busy(old)
			}
			lp.enqueueWaiting(r)
			return
		}
		if !lp.spillToSpool(r) {
			lp.busy(r)
		}
		return
	}
	s.queuedPackets.Add(1)
	s.queuedBytes.Add(int64(len(r.buf)))
	r.move(recWaiting)
	r.sentAt = lp.now // queued since
	if r.traced {
		r.traceEvent("queued")
	}
	if r.agent != nil {
		r.agent.queued++
	}
	lp.led.waiting.push(r)
}

// dequeued releases the queue budget r held.
func (lp *loop) dequeued(r *record) {
	lp.s.queuedPackets.Add(-1)
	lp.s.queuedBytes.Add(-int64(len(r.buf)))
	if r.agent != nil {
		r.agent.queued--
	}
}

// dropOrphan frees a packet whose agent's connection closed before it
// was forwarded: nobody waits for its ACK, and the agent resends it on its
// next connection (it was never acknowledged).
func (lp *loop) dropOrphan(r *record) {
	lp.m.orphansDropped.Inc()
	lp.freeRecord(r)
}

// dropQueuedOrphans removes from the wait queue every packet whose agent
// has gone, keeping the others in order, so that they stop holding queue
// budget (shared by every loop) while no analyzer can take them: when
// agents reconnect during an outage and resend, the queue would otherwise
// fill with the old copies and answer BUSY to the new. It runs from the
// loop's timer, O(queue length), only when an agent with queued packets
// has closed since the last run.
func (lp *loop) dropQueuedOrphans() {
	q := &lp.led.waiting
	n := q.len()
	kept := 0
	for i := 0; i < n; i++ {
		r := q.at(i)
		if r.orphan() {
			lp.dequeued(r)
			lp.dropOrphan(r)
			continue
		}
		q.set(kept, r)
		kept++
	}
	for i := kept; i < n; i++ {
		q.set(i, nil)
	}
	q.size = kept
	lp.led.orphansQueued = 0
}

// busy answers r's agent with BUSY and forgets r: the agent resends it.
func (lp *loop) busy(r *record) {
	if r.syslog {
		lp.m.syslogDropped.Inc() // UDP senders cannot be slowed down
		lp.freeRecord(r)
		return
	}
	if a := r.agent; a != nil {
		a.resolveBusy(r.aseq, lp.conf.busyRetryMs)
	}
	lp.m.busy.Inc()
	lp.freeRecord(r)
}

// drainWaiting dispatches queued packets, oldest first, while some
// analyzer can take them.
func (lp *loop) drainWaiting() {
	q := &lp.led.waiting
	for q.len() > 0 {
		r := q.peek()
		if r.agent != nil && !r.orphan() && !r.agent.sess.Open(r.aseq) {
			// A copy of a late analyzer's packet whose original was
			// answered meanwhile: nothing waits for it.
			q.pop()
			lp.dequeued(r)
			lp.freeRecord(r)
			continue
		}
		if !r.orphan() && !lp.tryDispatch(r) {
			if !lp.unroutableDict(r) { // dict.go
				return
			}
			q.pop() // its dictionary's analyzers are gone: BUSY to its agent
			lp.dequeued(r)
			lp.busyDict(r)
			continue
		}
		q.pop()
		lp.dequeued(r)
		if r.state == recWaiting { // not taken: an orphan
			lp.led.orphansQueued = max(lp.led.orphansQueued-1, 0)
			lp.dropOrphan(r)
		}
	}
}

// toRedo has r dispatched again at the next flush.
func (lp *loop) toRedo(r *record) {
	if r.traced {
		r.traceAttemptFailed("not acknowledged: the connection to the analyzer failed or closed")
	}
	r.move(recRedo)
	lp.led.redo = append(lp.led.redo, r)
}

// runRedo re-dispatches packets whose upstream failed, and those whose
// BUSY delay has passed.
func (lp *loop) runRedo() {
	l := &lp.led
	for i := 0; i < len(l.redo); i++ {
		r := l.redo[i]
		l.redo[i] = nil
		if r.orphan() {
			lp.dropOrphan(r)
			continue
		}
		if lp.settled(r) {
			continue
		}
		lp.m.redispatched.Inc()
		if r.traced {
			r.traceEvent("redispatch")
		}
		if delay := lp.retryDelay(r); delay > 0 {
			r.notBefore = lp.now + delay
			r.move(recDelayed)
			heap.Push(&l.retrying, r)
			continue
		}
		lp.dispatch(r)
	}
	l.redo = l.redo[:0]
	for {
		var r *record
		switch {
		case l.delayed.len() > 0 && l.delayed.peek().notBefore <= lp.now:
			r = l.delayed.pop()
		case len(l.retrying) > 0 && l.retrying[0].notBefore <= lp.now:
			r = heap.Pop(&l.retrying).(*record)
		default:
			return
		}
		if r.orphan() {
			lp.dropOrphan(r)
			continue
		}
		if lp.settled(r) {
			continue
		}
		lp.dispatch(r)
	}
}

// settled frees r instead of dispatching it again when its delivery is
// no longer its own: a hedged original (its copy went to another
// analyzer), or a packet whose agent sequence the other copy already
// resolved.
func (lp *loop) settled(r *record) bool {
	if !r.hedged && (r.agent == nil || r.agent.sess.Open(r.aseq)) {
		return false
	}
	lp.freeRecord(r)
	return true
}

// recordQueue is a FIFO of records on a ring buffer that grows as needed;
// its length is a power of two, so positions wrap with a mask (a division
// per pop showed in the profile).
type recordQueue struct {
	buf        []*record
	head, size int
}

func (q *recordQueue) len() int { return q.size }

func (q *recordQueue) push(r *record) {
	if q.size == len(q.buf) {
		n := 2 * len(q.buf)
		if n == 0 {
			n = 64
		}
		nb := make([]*record, n)
		for i := 0; i < q.size; i++ {
			nb[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)&(len(q.buf)-1)] = r
	q.size++
}

func (q *recordQueue) peek() *record { return q.buf[q.head] }

// at returns the i-th record from the head.
func (q *recordQueue) at(i int) *record { return q.buf[(q.head+i)&(len(q.buf)-1)] }

func (q *recordQueue) set(i int, r *record) { q.buf[(q.head+i)&(len(q.buf)-1)] = r }

func (q *recordQueue) pop() *record {
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.size--
	return r
}

// FlushQueue sends what waits to the analyzers now, on every loop:
// packets held back by an analyzer's BUSY go out without waiting for their
// retry-after, idle connections redial without waiting for their backoff
// (the breaker still decides), and the waiting queue is offered to every
// analyzer with room. It returns how many packets were waiting when it
// was called; it does not wait for the loops.
func (s *Server) FlushQueue() (waiting int) {
	waiting = int(s.queuedPackets.Load())
	for _, lp := range s.snapshotLoops() {
		lp.exec(func(context.Context) error { lp.flushQueue(); return nil })
	}
	return waiting
}

func (lp *loop) flushQueue() {
	now := lp.clock()
	for i := range lp.led.delayed.len() {
		lp.led.delayed.at(i).notBefore = now
	}
	for _, r := range lp.led.retrying {
		r.notBefore = now // all equal: still a heap
	}
	for _, u := range lp.ups {
		if u != nil && u.state == upIdle {
			u.redialAt = now
		}
	}
	lp.tick()
}

// retryHeap is a min-heap of records by notBefore (container/heap).
type retryHeap []*record

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].notBefore < h[j].notBefore }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*record)) }
func (h *retryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
