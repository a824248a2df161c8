package proxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/arena"
)

// expireEvery is how often a loop scans its agents for handshake and idle
// timeouts.
const expireEvery = 100 * time.Millisecond

// loop is the state one gnet event loop owns: its agent connections, its
// connection to every analyzer, its cursor and its ledger. Only that
// loop's goroutine touches it, except the atomics; work from elsewhere
// reaches it through exec.
type loop struct {
	s    *Server
	el   gnet.EventLoop
	idx  int
	conf *settings // taken on this goroutine: see settings
	cur  *balancer.Cursor
	hash bool // the Hash strategy: sticky, never spilled (anyWithRoom)
	// spill rotates anyWithRoom's start.
	spill int

	// ups holds this loop's connection to every analyzer, by ID, as of
	// the registry reg; retiring, those of analyzers removed since,
	// settling what they carry (reconcile.go).
	ups      []*upstream
	reg      *registry
	retiring []*upstream
	upCfg    session.ClientConfig // this loop's HELLO to analyzers

	agents map[*agentConn]struct{}
	led    ledger
	sp     loopSpool // the spool's per-loop side (durable.go)
	// lastSpoolErr is the error of the last append the spool refused.
	lastSpoolErr error
	rg           regather
	fl           flusher
	sacks        sackScheduler
	dec          *frame.Decoder
	pkt          frame.Packet
	// red is the redaction scratch (Config.Redactor): the replaced text
	// of the packet being redacted, its encoder and its new frame.
	red struct {
		buf    []byte
		enc    frame.Encoder
		frame  []byte
		traced []byte // frame with the agent's trace context put back
	}
	// traceBuf holds an agent's frame given a trace context here
	// (traceIn), until newRecord copies it.
	traceBuf []byte

	// now is the loop's coarse monotonic clock in ns since base, refreshed
	// by every tick (at most 50 ms old), by every flush and by rare
	// events; per-packet code reads it instead of the system clock, which
	// costs 20-250 ns a read.
	now        int64
	base       time.Time
	wall0      int64 // Unix ns at base
	lastExpire int64 // when expireAgents last ran
	setVersion uint64
	// warming is true until every first connection attempt has ended.
	warming bool
	// syslog is set on loops that have taken syslog messages.
	syslog *syslogIngest
	m      *loopMetrics
	// pend counts what the loop did since it last published its counters
	// (publish, at the end of every flush and tick): plain adds on the
	// per-packet path instead of atomic ones.
	pend    pendingCounts
	acctUps []*upstream // upstreams with packets to account to the balancer
	// touch keeps the cache-warming passes from being optimized away.
	touch uint64
	live  atomic.Int64 // led.live as last published (read by the drain)
	// batchesOpen tells the ticker that syslog batches are open: the loop
	// is woken every syslog linger, not only every timer interval.
	batchesOpen atomic.Bool

	tickFn, goAwayFn, reconfigureFn gnet.RunnableFunc
}

func newLoop(s *Server, el gnet.EventLoop, idx int) *loop {
	conf := s.conf.Load()
	lp := &loop{
		s:      s,
		el:     el,
		idx:    idx,
		conf:   conf,
		cur:    s.set.NewCursor(),
		hash:   s.set.Config().Strategy == balancer.Hash,
		agents: map[*agentConn]struct{}{},
		dec:    frame.NewDecoder(conf.Limits),
		base:   time.Now(),
	}
	lp.red.enc.Level = zstd.SpeedFastest
	lp.upCfg = session.ClientConfig{
		AgentID:  fmt.Sprintf("%s/loop%d", conf.ServerID, idx),
		Software: "logdist",
		Offer:    frame.CapZstd | frame.CapTrace,
		Window:   conf.UpstreamWindow,
		Dicts:    conf.Dicts.IDs(), // offers dict: analyzers list theirs (dict.go)
	}
	lp.dec.Dicts = conf.Dicts
	lp.wall0 = lp.base.UnixNano()
	lp.warming = true
	lp.led.maxBuf = maxRecordBuf
	lp.led.arena.MaxChunks = arena.DefaultChunks
	lp.m = newLoopMetrics(s.agentAckLatency)
	lp.tickFn = func(context.Context) error { lp.tick(); return nil }
	lp.goAwayFn = func(context.Context) error { lp.goAway(); return nil }
	lp.reconfigureFn = func(context.Context) error { lp.reconfigure(); return nil }
	lp.fl.fn = func(context.Context) error {
		lp.fl.queued = false
		lp.flush()
		return nil
	}
	lp.sp.acksFn = func(context.Context) error {
		lp.sp.acksQueued.Store(false)
		lp.ackDurable()
		lp.flush()
		return nil
	}
	lp.sacks.fn = func(context.Context) error {
		lp.sacks.armed = false
		lp.flush()
		return nil
	}
	return lp
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

// reconfigure takes the server's newest settings and the analyzer
// registry's newest members, on the loop's goroutine.
func (lp *loop) reconfigure() {
	conf := lp.s.conf.Load()
	if conf != lp.conf {
		lp.conf = conf
		lp.dec.Limits = conf.Limits
		lp.upCfg.AgentID = fmt.Sprintf("%s/loop%d", conf.ServerID, lp.idx)
		lp.upCfg.Window = conf.UpstreamWindow
		for a := range lp.agents {
			a.sess.SetConfig(&conf.agents)
		}
	}
	lp.reconcile()
}

// flusher batches a wake-up's writes: callbacks mark the connections they
// gave something to write, and one flush at the end of the wake-up writes
// each once.
type flusher struct {
	dirtyUps    []*upstream
	dirtyAgents []*agentConn
	flushing    bool
	queued      bool              // fn is queued on the loop
	fn          gnet.RunnableFunc // runs flush at the end of a wake-up
}

func (lp *loop) markUp(u *upstream) {
	if !u.dirty {
		u.dirty = true
		lp.fl.dirtyUps = append(lp.fl.dirtyUps, u)
	}
}

func (lp *loop) markAgent(a *agentConn) {
	if !a.dirty {
		a.dirty = true
		lp.fl.dirtyAgents = append(lp.fl.dirtyAgents, a)
	}
}

// requestFlush arranges for flush to run once this event-loop wake-up has
// handled all its ready connections: gnet runs tasks queued with Execute
// after the events of the same epoll round. So a wake-up that reads ten
// agents costs one writev per analyzer and one write per agent, not ten.
// The price is one eventfd write and one small allocation (gnet's task
// closure) per wake-up that produced output, shared by all its packets.
func (lp *loop) requestFlush() {
	if len(lp.fl.dirtyUps) == 0 && len(lp.fl.dirtyAgents) == 0 && len(lp.led.redo) == 0 && lp.sp.next == nil && lp.sp.nextDead == nil {
		return
	}
	if lp.el == nil || lp.fl.queued {
		if lp.el == nil { // driven by hand in tests: flush now
			lp.flush()
		}
		return
	}
	lp.fl.queued = true
	if err := lp.el.Execute(lp.s.ctx, lp.fl.fn); err != nil {
		lp.fl.queued = false
		lp.flush()
	}
}

// flush writes everything the callbacks produced: one writev per upstream
// and one write per agent touched. Writes can fail and close connections,
// which can schedule re-dispatches, which dirty other connections: it
// loops until nothing is left (bounded by the number of connections).
func (lp *loop) flush() {
	if lp.fl.flushing {
		return // re-entered from a close inside a write; the outer call finishes
	}
	lp.fl.flushing = true
	lp.sacks.reconsider(lp)
	for round := 0; round < 64; round++ {
		if len(lp.led.redo) > 0 {
			lp.runRedo()
		}
		if len(lp.fl.dirtyUps) == 0 && len(lp.fl.dirtyAgents) == 0 {
			break
		}
		for i := 0; i < len(lp.fl.dirtyUps); i++ {
			u := lp.fl.dirtyUps[i]
			lp.fl.dirtyUps[i] = nil
			u.dirty = false
			u.flush()
		}
		lp.fl.dirtyUps = lp.fl.dirtyUps[:0]
		for i := 0; i < len(lp.fl.dirtyAgents); i++ {
			a := lp.fl.dirtyAgents[i]
			lp.fl.dirtyAgents[i] = nil
			a.dirty = false
			a.flush()
		}
		lp.fl.dirtyAgents = lp.fl.dirtyAgents[:0]
	}
	lp.fl.flushing = false
	if lp.sp.next != nil {
		lp.submitSpool()
	}
	if lp.sp.nextDead != nil {
		lp.submitDead()
	}
	if len(lp.sacks.later) > 0 {
		lp.sacks.arm(lp)
	}
	lp.publish()
}

// sackScheduler has agents whose accepted packets wait for a SACK flushed
// again within the SACK delay, even if nothing else wakes the loop (a
// stuck analyzer, and agents whose windows are full).
type sackScheduler struct {
	later []*agentConn // agents to reconsider at the next flush
	timer *time.Timer
	armed bool
	fn    gnet.RunnableFunc
}

func (sc *sackScheduler) add(a *agentConn) {
	if !a.sackQueued {
		a.sackQueued = true
		sc.later = append(sc.later, a)
	}
}

// reconsider marks the agents waiting for a SACK dirty, so that this flush
// decides again whether their SACK is due.
func (sc *sackScheduler) reconsider(lp *loop) {
	for i, a := range sc.later {
		a.sackQueued = false
		if !a.closed && a.sess.SackPending() {
			lp.markAgent(a)
		}
		sc.later[i] = nil
	}
	sc.later = sc.later[:0]
}

func (sc *sackScheduler) arm(lp *loop) {
	if sc.armed || lp.el == nil {
		return
	}
	sc.armed = true
	d := lp.conf.SackDelay
	if sc.timer == nil {
		sc.timer = time.AfterFunc(d, func() {
			if lp.s.ctx.Err() == nil {
				lp.exec(sc.fn)
			}
		})
		return
	}
	sc.timer.Reset(d)
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
	// What a drain waits for: packets not in the spool, and agents
	// waiting for the spool to make theirs durable.
	if live := lp.led.live - lp.sp.held + int64(lp.sp.acks.len()); lp.live.Load() != live {
		lp.live.Store(live)
	}
}

// tick runs the loop's timers; the server's ticker calls it every timer
// interval, and at the syslog linger while batches are open.
func (lp *loop) tick() {
	now := lp.clock()
	lp.sealOld(now, false)
	if lp.s.reg.Load() != lp.reg {
		lp.reconcile()
	}
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
			u.publishInflight()
		}
	}
	lp.tickRetiring(now)
	lp.runRedo()
	lp.drainWaiting()
	lp.maybeReread()
	if lp.led.orphansQueued > 0 {
		lp.dropQueuedOrphans()
	}
	// Timeouts are seconds long: scanning every connection on every tick
	// (every few ms with syslog batching) would cost more than it buys.
	if now-lp.lastExpire >= int64(expireEvery) {
		lp.lastExpire = now
		lp.expireAgents(now)
	}
	q := &lp.led.waiting
	if q.len() > 0 {
		lp.m.oldestQueuedNs.Store(now - q.peek().sentAt)
	} else {
		lp.m.oldestQueuedNs.Store(0)
	}
	lp.flush()
}

func (lp *loop) goAway() {
	now := lp.clock()
	// Packets waiting out a retry's backoff go now: the drain would
	// otherwise wait for them (up to 30 s) or give up on them.
	for _, r := range lp.led.retrying {
		r.notBefore = now
	}
	for a := range lp.agents {
		a.goAway()
	}
	lp.flush()
}
