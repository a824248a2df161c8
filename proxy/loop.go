package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
)

// record is one agent packet on its way to an analyzer: a private copy of
// the whole DATA frame (gnet's buffers are not kept past a callback), who
// sent it and where it is. Records are owned by one loop and recycled
// through its free list.
type record struct {
	// The first 64 bytes hold what settling a record reads (upstream.ack,
	// freeRecord): they are one cache line, as records are 128 bytes and so
	// 64-byte aligned (TestRecordLayout). At ack time a record has been out
	// of the cache for milliseconds; one line is one miss.
	agent *agentConn // nil once the agent connection is gone
	aseq  uint64     // the agent's sequence for this packet
	ch    *chunk     // the arena chunk buf is in, or nil if buf is own
	stamp int64      // precise send time of a packet sampled for ack latency; 0 if not sampled
	msgs  uint32
	// syslog marks a packet built from syslog datagrams: no agent waits
	// for it, and it is dropped (counted) where an agent would get BUSY.
	syslog bool
	own    []byte // the record's own buffer, kept across reuse, for frames not in the arena

	buf    []byte // the DATA frame; its header sequence is rewritten per upstream
	useq   uint64 // the upstream sequence while in flight
	sentAt int64  // the loop's coarse clock when written upstream (ack timeout)
	// notBefore delays a re-dispatch after an analyzer said BUSY.
	notBefore int64
	_         [16]byte // to 128 bytes
}

// expireEvery is how often a loop scans its agents for handshake and idle
// timeouts.
const expireEvery = 100 * time.Millisecond

// maxFreeRecords and maxFreeBytes bound each loop's free list; past them
// records go to the GC. Buffers larger than maxRecordBuf are not kept, so
// one huge packet does not pin its buffer; syslog loops keep buffers up to
// their batch size, which they fill every time.
const (
	maxFreeRecords = 1 << 14
	maxFreeBytes   = 32 << 20
	maxRecordBuf   = 64 << 10
)

// loop is the state one gnet event loop owns. Only that loop's goroutine
// touches it, except the atomics.
type loop struct {
	s   *Server
	el  gnet.EventLoop
	idx int
	cur *balancer.Cursor
	ups []*upstream // by analyzer ID

	agents map[*agentConn]struct{}

	arena     arena
	free      []*record
	freeBytes int         // own-buffer capacity held by free
	maxBuf    int         // largest buffer kept on the free list
	waiting   recordQueue // packets no analyzer could take yet
	// orphansQueued counts packets in waiting whose agent has closed
	// (at least; see dropQueuedOrphans).
	orphansQueued int
	delayed       recordQueue // packets an analyzer answered BUSY to, with notBefore
	redo          []*record   // packets to re-dispatch (their upstream failed)

	dirtyUps    []*upstream
	dirtyAgents []*agentConn
	flushing    bool
	flushQueued bool              // a flushFn task is queued on the loop
	flushFn     gnet.RunnableFunc // runs flush at the end of a wake-up

	dec *frame.Decoder
	pkt frame.Packet
	// now is the loop's coarse monotonic clock in ns since base, refreshed
	// by every tick (at most 50 ms old) and by rare events; per-packet code
	// reads it instead of the system clock, which costs 20-250 ns a read.
	now        int64
	base       time.Time
	wall0      int64  // Unix ns at base
	lastExpire int64  // when expireAgents last ran
	setVersion uint64 // the balancer version the loop last saw
	// warming is true until every first connection attempt has ended.
	warming bool
	// syslog is set on the syslog engine's loops.
	syslog *syslogIngest
	m      *loopMetrics
	// pend counts what the loop did since it last published its counters
	// (publish, at the end of every flush and tick): plain adds on the
	// per-packet path instead of atomic ones.
	pend    pendingCounts
	acctUps []*upstream // upstreams with packets to account to the balancer
	// touch keeps upstream.ack's first pass from being optimized away.
	touch uint64
	// sackLater lists agents to reconsider for a SACK at the next flush,
	// which sackTimer makes happen within Config.SackDelay even if nothing
	// else wakes the loop.
	sackLater []*agentConn
	sackTimer *time.Timer
	sackArmed bool
	sackFn    gnet.RunnableFunc
	// sackRanges is the scratch space of agentConn.appendSacks.
	sackRanges []frame.SeqRange
	liveRecs   int64        // records alive on this loop
	live       atomic.Int64 // liveRecs as last published (read by the drain)
	// batchesOpen tells the ticker that syslog batches are open: the loop
	// is woken every syslog linger, not only every timer interval.
	batchesOpen atomic.Bool
	tickFn      gnet.RunnableFunc
	// goAwayFn sends GOAWAY to every agent on the loop.
	goAwayFn gnet.RunnableFunc
}

func newLoop(s *Server, el gnet.EventLoop, idx int) *loop {
	lp := &loop{
		s:      s,
		el:     el,
		idx:    idx,
		cur:    s.set.NewCursor(),
		agents: map[*agentConn]struct{}{},
		dec:    frame.NewDecoder(s.cfg.Limits),
		base:   time.Now(),
	}
	lp.wall0 = lp.base.UnixNano()
	lp.warming = true
	lp.maxBuf = maxRecordBuf
	lp.arena.maxChunks = defaultArenaChunks
	lp.m = newLoopMetrics(s.mset, idx)
	lp.tickFn = func(context.Context) error { lp.tick(); return nil }
	lp.goAwayFn = func(context.Context) error { lp.goAway(); return nil }
	lp.sackFn = func(context.Context) error {
		lp.sackArmed = false
		lp.flush()
		return nil
	}
	lp.flushFn = func(context.Context) error {
		lp.flushQueued = false
		lp.flush()
		return nil
	}
	for _, a := range s.set.View().Analyzers {
		lp.ensureUpstream(a.ID, a.Name, a.Addr)
	}
	return lp
}

func (lp *loop) ensureUpstream(id int, name, addr string) *upstream {
	for len(lp.ups) <= id {
		lp.ups = append(lp.ups, nil)
	}
	if lp.ups[id] == nil {
		lp.ups[id] = newUpstream(lp, id, name, addr)
	}
	return lp.ups[id]
}

// startAll dials every analyzer from this loop. Called once, when the loop
// is first seen.
func (lp *loop) startAll() {
	for _, u := range lp.ups {
		if u != nil {
			u.dial()
		}
	}
}

// exec runs fn on the loop's goroutine.
func (lp *loop) exec(fn gnet.RunnableFunc) {
	if err := lp.el.Execute(lp.s.ctx, fn); err != nil {
		lp.s.log.Debug("cannot run on event loop", "loop", lp.idx, "err", err)
	}
}

// clock refreshes the coarse clock and returns it.
func (lp *loop) clock() int64 {
	lp.now = int64(time.Since(lp.base))
	return lp.now
}

// wallNow returns the coarse clock as Unix ns.
func (lp *loop) wallNow() int64 { return lp.wall0 + lp.now }

// preciseNow reads the system clock without touching the coarse one.
func (lp *loop) preciseNow() int64 { return int64(time.Since(lp.base)) }

func (lp *loop) newRecord(frameBytes []byte, a *agentConn, aseq uint64, msgs uint32) *record {
	var r *record
	if n := len(lp.free); n > 0 {
		r = lp.free[n-1]
		lp.free[n-1] = nil
		lp.free = lp.free[:n-1]
		lp.freeBytes -= cap(r.own)
	} else {
		r = &record{}
	}
	if b, c := lp.arena.alloc(len(frameBytes)); c != nil {
		copy(b, frameBytes)
		r.buf, r.ch = b, c
	} else {
		r.own = append(r.own[:0], frameBytes...)
		r.buf = r.own
	}
	r.agent, r.aseq, r.msgs = a, aseq, msgs
	r.useq, r.sentAt, r.stamp, r.notBefore, r.syslog = 0, 0, 0, 0, false
	lp.liveRecs++
	return r
}

// warmFree loads the two cache lines of the next n records newRecord
// will take. Other processes run on the core between two wake-ups of the
// loop and evict its caches; a tight loop of independent loads takes the
// misses all at once, where newRecord would take them one at a time.
func (lp *loop) warmFree(n int) {
	free := lp.free
	n = min(n, len(free))
	var touch uint64
	for i := len(free) - n; i < len(free); i++ {
		touch += uint64(cap(free[i].own)) + free[i].useq // both cache lines: newRecord fills both
	}
	lp.touch += touch
}

func (lp *loop) freeRecord(r *record) {
	lp.liveRecs--
	r.agent = nil
	r.buf = nil
	if r.ch != nil {
		lp.arena.free(r.ch)
		r.ch = nil
	}
	if c := cap(r.own); c > lp.maxBuf || len(lp.free) >= maxFreeRecords || lp.freeBytes+c > maxFreeBytes {
		return
	}
	lp.free = append(lp.free, r)
	lp.freeBytes += cap(r.own)
}

// dispatch sends r to the analyzer the cursor picks; if none can take it,
// r waits in the queue, and if the queue is full the agent gets BUSY.
func (lp *loop) dispatch(r *record) {
	if !lp.tryDispatch(r) {
		lp.enqueueWaiting(r)
	}
}

// tryDispatch hands r to the analyzer the cursor picks and reports whether
// one took it. An analyzer this loop has no working connection to is
// skipped (the pick moves on), so a dead connection costs a few picks,
// never a packet.
func (lp *loop) tryDispatch(r *record) bool {
	if lp.warming && lp.stillWarming() {
		return false
	}
	var key []byte
	if r.agent != nil {
		key = r.agent.agentID
	}
	for tries := 0; tries <= len(lp.ups); tries++ {
		id, ok := lp.cur.Pick(key)
		if !ok {
			return false
		}
		u := lp.ups[id]
		if u == nil || !u.accepting() {
			continue
		}
		u.account(r)
		u.enqueue(r)
		return true
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

// orphan reports whether r's agent connection is gone: nobody waits for
// its ack, and the agent resends it on its next connection.
func (r *record) orphan() bool { return !r.syslog && (r.agent == nil || r.agent.closed) }

func (lp *loop) enqueueWaiting(r *record) {
	s := lp.s
	if int(s.queuedPackets.Load()) >= s.cfg.QueueMaxPackets || s.queuedBytes.Load()+int64(len(r.buf)) > s.cfg.QueueMaxBytes {
		lp.m.queueFull.Inc()
		lp.busy(r)
		return
	}
	s.queuedPackets.Add(1)
	s.queuedBytes.Add(int64(len(r.buf)))
	r.sentAt = lp.now // queued since
	if r.agent != nil {
		r.agent.queued++
	}
	lp.waiting.push(r)
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
	q := &lp.waiting
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
	lp.orphansQueued = 0
}

// busy answers r's agent with BUSY and forgets r: the agent resends it.
func (lp *loop) busy(r *record) {
	if r.syslog {
		lp.m.syslogDropped.Inc() // UDP senders cannot be slowed down
		lp.freeRecord(r)
		return
	}
	if a := r.agent; a != nil {
		a.resolveBusy(r.aseq, uint32(lp.s.cfg.BusyRetryAfter/time.Millisecond))
	}
	lp.m.busy.Inc()
	lp.freeRecord(r)
}

// drainWaiting dispatches queued packets, oldest first, while some
// analyzer can take them.
func (lp *loop) drainWaiting() {
	for lp.waiting.len() > 0 {
		r := lp.waiting.peek()
		if !r.orphan() && !lp.tryDispatch(r) {
			return
		}
		lp.waiting.pop()
		lp.dequeued(r)
		if r.orphan() {
			lp.orphansQueued = max(lp.orphansQueued-1, 0)
			lp.dropOrphan(r)
		}
	}
}

// runRedo re-dispatches packets whose upstream failed, and those whose
// BUSY delay has passed.
func (lp *loop) runRedo() {
	for i := 0; i < len(lp.redo); i++ {
		r := lp.redo[i]
		lp.redo[i] = nil
		if r.orphan() {
			lp.dropOrphan(r)
			continue
		}
		lp.m.redispatched.Inc()
		lp.dispatch(r)
	}
	lp.redo = lp.redo[:0]
	for lp.delayed.len() > 0 && lp.delayed.peek().notBefore <= lp.now {
		r := lp.delayed.pop()
		if r.orphan() {
			lp.dropOrphan(r)
			continue
		}
		lp.dispatch(r)
	}
}

func (lp *loop) markUp(u *upstream) {
	if !u.dirty {
		u.dirty = true
		lp.dirtyUps = append(lp.dirtyUps, u)
	}
}

func (lp *loop) markAgent(a *agentConn) {
	if !a.dirty {
		a.dirty = true
		lp.dirtyAgents = append(lp.dirtyAgents, a)
	}
}

// requestFlush arranges for flush to run once this event-loop wake-up has
// handled all its ready connections: gnet runs tasks queued with Execute
// after the events of the same epoll round. So a wake-up that reads ten
// agents costs one writev per analyzer and one write per agent, not ten.
// The price is one eventfd write and one small allocation (gnet's task
// closure) per wake-up that produced output, shared by all its packets.
func (lp *loop) requestFlush() {
	if len(lp.dirtyUps) == 0 && len(lp.dirtyAgents) == 0 && len(lp.redo) == 0 {
		return
	}
	if lp.el == nil || lp.flushQueued {
		if lp.el == nil { // driven by hand in tests: flush now
			lp.flush()
		}
		return
	}
	lp.flushQueued = true
	if err := lp.el.Execute(lp.s.ctx, lp.flushFn); err != nil {
		lp.flushQueued = false
		lp.flush()
	}
}

// flush writes everything the callback produced: one writev per upstream
// and one write per agent touched. Writes can fail and close connections,
// which can schedule re-dispatches, which dirty other connections: it
// loops until nothing is left (bounded by the number of connections).
func (lp *loop) flush() {
	if lp.flushing {
		return // re-entered from a close inside a write; the outer call finishes
	}
	lp.flushing = true
	// Agents with accepted packets beyond their ack point left unreported
	// by the last flush (agentConn.flush): reconsider them.
	for i, a := range lp.sackLater {
		a.sackQueued = false
		if !a.closed && a.unreported > 0 {
			lp.markAgent(a)
		}
		lp.sackLater[i] = nil
	}
	lp.sackLater = lp.sackLater[:0]
	for round := 0; round < 64; round++ {
		if len(lp.redo) > 0 {
			lp.runRedo()
		}
		if len(lp.dirtyUps) == 0 && len(lp.dirtyAgents) == 0 {
			break
		}
		for i := 0; i < len(lp.dirtyUps); i++ {
			u := lp.dirtyUps[i]
			lp.dirtyUps[i] = nil
			u.dirty = false
			u.flush()
		}
		lp.dirtyUps = lp.dirtyUps[:0]
		for i := 0; i < len(lp.dirtyAgents); i++ {
			a := lp.dirtyAgents[i]
			lp.dirtyAgents[i] = nil
			a.dirty = false
			a.flush()
		}
		lp.dirtyAgents = lp.dirtyAgents[:0]
	}
	lp.flushing = false
	if len(lp.sackLater) > 0 {
		lp.armSack()
	}
	lp.publish()
}

// armSack has the loop flush again once the SACK delay has passed, so a
// deferred SACK does not wait for the next tick when nothing else happens
// (a stuck analyzer, and agents whose windows are full).
func (lp *loop) armSack() {
	if lp.sackArmed || lp.el == nil {
		return
	}
	lp.sackArmed = true
	d := lp.s.cfg.SackDelay
	if lp.sackTimer == nil {
		lp.sackTimer = time.AfterFunc(d, func() {
			if lp.s.ctx.Err() == nil {
				lp.exec(lp.sackFn)
			}
		})
		return
	}
	lp.sackTimer.Reset(d)
}

// pendingCounts are per-packet counters not yet added to the metrics.
type pendingCounts struct {
	frames, messages, bytes int
	forwarded               int
	agentAcks               int
	syslogForwarded         int
}

// publish adds the pending counts to the metrics and the balancer's
// per-analyzer counters. Scrapes and the admin API see them at most one
// wake-up (or one tick) late.
func (lp *loop) publish() {
	if p := &lp.pend; *p != (pendingCounts{}) {
		m := lp.m
		m.frames.Add(p.frames)
		m.messages.Add(p.messages)
		m.bytes.Add(p.bytes)
		m.forwarded.Add(p.forwarded)
		m.agentAcks.Add(p.agentAcks)
		m.syslogForwarded.Add(p.syslogForwarded)
		*p = pendingCounts{}
	}
	for i, u := range lp.acctUps {
		lp.cur.AccountBatch(u.id, u.acct.packets, u.acct.messages, u.acct.bytes)
		u.acct = upstreamAcct{}
		lp.acctUps[i] = nil
	}
	lp.acctUps = lp.acctUps[:0]
	if lp.live.Load() != lp.liveRecs {
		lp.live.Store(lp.liveRecs)
	}
}

// tick runs the loop's timers; the server calls it every tickInterval.
func (lp *loop) tick() {
	now := lp.clock()
	lp.sealOld(now, false)
	if v := lp.s.set.Version(); v != lp.setVersion {
		// Something changed in the set — typically an analyzer came back
		// up through another loop's probe. This loop's idle connections
		// stop waiting out their backoff and try again now (still gated by
		// the breaker), so that no loop keeps skipping a healthy analyzer.
		lp.setVersion = v
		for _, u := range lp.ups {
			if u != nil && u.state == upIdle {
				u.redialAt = now
			}
		}
	}
	for _, u := range lp.ups {
		if u != nil {
			u.tick(now)
		}
	}
	lp.runRedo()
	lp.drainWaiting()
	if lp.orphansQueued > 0 {
		lp.dropQueuedOrphans()
	}
	// Timeouts are seconds long: scanning every connection on every tick
	// (every few ms with syslog batching) would cost more than it buys.
	if now-lp.lastExpire >= int64(expireEvery) {
		lp.lastExpire = now
		lp.expireAgents(now)
	}
	lp.m.queued.Set(uint64(lp.waiting.len()))
	if lp.waiting.len() > 0 {
		lp.m.oldestQueuedNs.Store(now - lp.waiting.peek().sentAt)
	} else {
		lp.m.oldestQueuedNs.Store(0)
	}
	lp.flush()
}

func (lp *loop) goAway() {
	lp.clock()
	for a := range lp.agents {
		a.goAway()
	}
	lp.flush()
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
