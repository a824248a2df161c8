package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

// Durability: the disk spool (internal/spool) under Config.DataDir, the
// dead letters beside it, and how the loops use them. Every disk access
// runs on a loop's worker (worker.go), never on the loop.
//
// What goes to the spool:
//
//   - every syslog batch, when a spool is configured: its senders cannot
//     resend, so it is written before it is forwarded;
//   - with AckSpool, every agent packet: written first, acknowledged to
//     its agent once durable (Spool.Durable), forwarded meanwhile;
//   - with AckAnalyzer, an agent packet only when no analyzer can take it
//     and the waiting queue is full ("spill"): instead of BUSY it is
//     written, acknowledged once durable, and read back later.
//
// A record in the spool is owned by logdist: its agent field is nil, and
// its aseq holds its spool sequence (record.spoolSeq). When an analyzer
// acknowledges it, the spool is told (Ack); when the waiting queue is
// full, its memory is dropped (Evict) and the spool hands it back later
// (Reread) — the same path that replays what a restart found unacknowledged.
//
//	agent DATA ─┬─ AckAnalyzer ─────────────────────▶ dispatch (as without a spool)
//	            └─ AckSpool ─┐
//	syslog batch ────────────┴▶ recSpooling ─(worker: Append)─▶ dispatch; agent ACK once Durable
//	                                                  │ full: the overflow policy
//	waiting queue full: spooled → Evict (memory freed); not spooled → spill-append, then Evict
//	tick, room in the queue: Reread ─▶ dispatch          analyzer ACK ─▶ Spool.Ack
//	rejected for good / retries exhausted ─▶ dead letters (then Spool.Ack)

// AckMode says when an agent's packet is acknowledged.
type AckMode uint8

const (
	// AckAnalyzer acknowledges a packet once an analyzer acknowledged it
	// (or, with a spool, once it spilled to the spool and is durable).
	AckAnalyzer AckMode = iota
	// AckSpool acknowledges a packet once it is durable in the spool;
	// logdist then owns its delivery.
	AckSpool
)

// ParseAckMode reads --ack-mode: "analyzer" or "spool".
func ParseAckMode(s string) (AckMode, error) {
	switch s {
	case "analyzer", "":
		return AckAnalyzer, nil
	case "spool":
		return AckSpool, nil
	}
	return 0, fmt.Errorf("ack mode %q: want analyzer or spool", s)
}

func (m AckMode) String() string {
	if m == AckSpool {
		return "spool"
	}
	return "analyzer"
}

// Overflow is what a full spool does with a packet it cannot take.
type Overflow uint8

const (
	// OverflowBlock keeps the packet in memory as if there were no spool:
	// it waits in the queue, and past the queue's bound agents get BUSY,
	// TCP syslog is not read and UDP syslog is dropped (counted).
	OverflowBlock Overflow = iota
	// OverflowDropNewest drops the packet (counted): an agent's is
	// acknowledged all the same, so agents never stall on a full disk.
	OverflowDropNewest
	// OverflowDropOldest drops the spool's oldest segment (its
	// unacknowledged records counted) to make room, then drops the packet
	// itself only if that was not enough.
	OverflowDropOldest
)

var overflowNames = [...]string{"block", "drop-newest", "drop-oldest"}

// ParseOverflow reads --overflow: block, drop-newest or drop-oldest.
func ParseOverflow(s string) (Overflow, error) {
	for i, n := range overflowNames {
		if s == n {
			return Overflow(i), nil
		}
	}
	return 0, fmt.Errorf("overflow policy %q: want block, drop-newest or drop-oldest", s)
}

func (o Overflow) String() string {
	if int(o) < len(overflowNames) {
		return overflowNames[o]
	}
	return "invalid"
}

// SpoolConfig sizes and syncs the spool.
type SpoolConfig struct {
	// Sync is the fsync policy (spool.SyncPolicy): DefaultConfig's is an
	// fsync every 100 ms.
	Sync spool.SyncPolicy
	// MaxBytes caps the spool's segments on disk; 0: the disk's size.
	MaxBytes int64
	// SegmentBytes is a segment's size (0: spool.DefaultSegmentBytes);
	// space is freed a segment at a time.
	SegmentBytes int64
	// KeyFile, if set, is a key file (spool.LoadKeyring: "ID HEX" lines,
	// mode 0600): the spool and the dead letters seal every record with
	// its first key (AES-256-GCM) and open old records with any of them.
	// Read at start; a bad file fails it.
	KeyFile string
}

// maxRetryBackoff caps one retry's delay.
const maxRetryBackoff = 30 * time.Second

func (c *Config) validateDurability() error {
	if c.AckMode > AckSpool {
		return fmt.Errorf("unknown ack mode %d", c.AckMode)
	}
	if c.AckMode == AckSpool && c.DataDir == "" {
		return errors.New("ack mode spool needs a data directory (--data-dir) for the spool")
	}
	if c.Overflow > OverflowDropOldest {
		return fmt.Errorf("unknown overflow policy %d", c.Overflow)
	}
	for _, f := range c.QueueAlert {
		if !(f > 0 && f <= 1) {
			return fmt.Errorf("queue alert %v: want fractions of the bound in (0, 1], such as 0.5,0.8,0.95", f)
		}
	}
	if c.RetryMax < 0 || c.RetryMax > 255 {
		return fmt.Errorf("retry max %d not in [0, 255] (0: no bound)", c.RetryMax)
	}
	if c.RetryBackoff <= 0 || c.RetryBackoff > maxRetryBackoff {
		return fmt.Errorf("retry backoff %v not in (0, %v]", c.RetryBackoff, maxRetryBackoff)
	}
	if c.Spool.KeyFile != "" && c.DataDir == "" {
		return errors.New("a spool key file needs a data directory (--data-dir): there is nothing on disk to encrypt without one")
	}
	if c.DataDir != "" {
		sc := c.Spool.config()
		// The segment being written is never removed: with room for one
		// segment only, the spool would refuse every append once it is
		// full, delivered or not.
		if sc.MaxBytes > 0 && sc.MaxBytes < 2*sc.SegmentBytes {
			return fmt.Errorf("spool max bytes %d: want 0 (the disk's size) or at least two segments (%d bytes): space comes back a whole segment at a time, never the one being written", sc.MaxBytes, 2*sc.SegmentBytes)
		}
		if err := sc.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (sc SpoolConfig) config() spool.Config {
	c := spool.DefaultConfig()
	c.Sync = sc.Sync
	c.MaxBytes = sc.MaxBytes
	if sc.SegmentBytes > 0 {
		c.SegmentBytes = sc.SegmentBytes
	}
	return c
}

// durable is the server's spool and dead letters.
type durable struct {
	s *Server
	// dir is the spool and dead the dead letters: spool.Dir, behind the
	// interface a replicated backend can also implement.
	dir      spool.Spool
	dead     spool.Spool
	mode     AckMode
	maxBytes int64
	// rereading: a Reread job is queued or running on some loop's worker
	// (one at a time: the spool's cursor is one).
	rereading atomic.Bool
	// alert: the QueueAlert level the spool's fill is at.
	alert fillAlert

	appended, appendedBytes   *metrics.Counter
	appendFailed, evicted     *metrics.Counter
	reread                    *metrics.Counter
	droppedNewest, droppedOld *metrics.Counter
	deadRejected, deadRetries *metrics.Counter
	deadFailed                *metrics.Counter
	behind                    *metrics.Counter
	// full is set while the spool refuses appends as full (its cap or
	// the disk), cleared by the next append it takes.
	full             atomic.Bool
	retriesExhausted *metrics.Counter
	damaged          *metrics.Counter
	syncSeconds      *metrics.PrometheusHistogram
}

// openDurable opens the spool and the dead letters under conf.DataDir.
func openDurable(s *Server, conf *settings) (*durable, error) {
	d := &durable{s: s, mode: conf.AckMode, maxBytes: conf.Spool.MaxBytes}
	m := s.mset
	d.appended = m.NewCounter("logdist_spool_appended_total")
	d.appendedBytes = m.NewCounter("logdist_spool_appended_bytes_total")
	d.appendFailed = m.NewCounter("logdist_spool_append_failures_total")
	d.evicted = m.NewCounter("logdist_spool_spilled_total")
	d.reread = m.NewCounter("logdist_spool_replayed_total")
	d.droppedNewest = m.NewCounter(`logdist_spool_dropped_total{policy="drop-newest"}`)
	d.droppedOld = m.NewCounter(`logdist_spool_dropped_total{policy="drop-oldest"}`)
	d.deadRejected = m.NewCounter(`logdist_dead_lettered_total{reason="rejected"}`)
	d.deadRetries = m.NewCounter(`logdist_dead_lettered_total{reason="retries-exhausted"}`)
	d.deadFailed = m.NewCounter("logdist_dead_letter_failures_total")
	d.behind = m.NewCounter("logdist_spool_behind_total")
	d.retriesExhausted = m.NewCounter("logdist_retries_exhausted_total")
	d.damaged = m.NewCounter("logdist_spool_damaged_records_total")
	d.syncSeconds = m.NewPrometheusHistogramExt("logdist_spool_fsync_seconds", fsyncBuckets)

	log := s.log.With("component", "spool")
	sc := conf.Spool.config()
	if conf.Spool.KeyFile != "" {
		keys, err := spool.LoadKeyring(conf.Spool.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: spool encryption: %w", err)
		}
		sc.Keys = keys
		log.Info("spool encrypted at rest", "key_file", conf.Spool.KeyFile, "key", keys.Current(), "keys", len(keys.IDs()))
	}
	// Acknowledgements persisted every 200 ms (the spool's default is a
	// second): what a crash replays twice. Each costs a small file's
	// write, rename and two fsyncs.
	sc.AckInterval = 200 * time.Millisecond
	sc.SyncSeconds = d.syncSeconds
	sc.Log = log
	sc.OnDurable = d.onDurable
	sc.OnDamage = func(dmg spool.Damage) {
		if dmg.Kind == spool.DamageKey {
			log.Error("spool records sealed with a key not in the key file: kept, not replayed until a restart with the key", "damage", dmg.String())
			return
		}
		d.damaged.Add(int(dmg.Records()))
		log.Error("spool damage skipped", "damage", dmg.String())
	}
	for _, sub := range []string{"spool", "dead-letters"} {
		if err := os.MkdirAll(filepath.Join(conf.DataDir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("proxy: data directory: %w", err)
		}
	}
	dir, err := spool.Open(filepath.Join(conf.DataDir, "spool"), sc)
	if err != nil {
		return nil, fmt.Errorf("proxy: cannot open the spool: %w", err)
	}
	d.dir = dir
	dc := spool.DefaultConfig()
	dc.Sync = spool.SyncAlways // rare, and each one is a packet given up on
	dc.SegmentBytes = 4 << 20
	dc.Log = log.With("spool", "dead-letters")
	dc.Keys = sc.Keys
	dc.OnDamage = func(dmg spool.Damage) {
		if dmg.Kind == spool.DamageKey {
			log.Error("dead letters sealed with a key not in the key file: kept until a restart with the key", "damage", dmg.String())
			return
		}
		log.Error("dead-letter damage skipped", "damage", dmg.String())
	}
	dead, err := spool.Open(filepath.Join(conf.DataDir, "dead-letters"), dc)
	if err != nil {
		d.dir.Close()
		return nil, fmt.Errorf("proxy: cannot open the dead letters: %w", err)
	}
	d.dead = dead
	m.RegisterMetricsWriter(d.writeMetrics)
	st := d.dir.Stats()
	log.Info("spool open", "dir", filepath.Join(conf.DataDir, "spool"), "ack_mode", conf.AckMode.String(),
		"sync", sc.Sync.String(), "max_bytes", sc.MaxBytes, "to_replay", st.Evicted, "bytes", st.Bytes, "segments", st.Segments)
	return d, nil
}

// fsyncBuckets: from a page-cache-only "sync" to a saturated disk.
var fsyncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

func (d *durable) close() error {
	err := d.dir.Close()
	if derr := d.dead.Close(); err == nil {
		err = derr
	}
	return err
}

// onDurable runs on the spool's syncing goroutine: the loops with agents
// waiting for durability send their ACKs.
func (d *durable) onDurable(uint64) {
	for _, lp := range d.s.snapshotLoops() {
		if lp.sp.waiting.Load() > 0 && lp.sp.acksQueued.CompareAndSwap(false, true) {
			if err := lp.el.Execute(d.s.ctx, lp.sp.acksFn); err != nil {
				lp.sp.acksQueued.Store(false)
			}
		}
	}
}

// loopSpool is one loop's side of the spool.
type loopSpool struct {
	w *worker // started on first use
	// next collects this wake-up's records to append, submitted at the
	// end of the flush.
	next *appendJob
	// acks are agents' packets waiting for the spool to be durable up to
	// their sequence, in sequence order (one worker appends for a loop).
	acks    pendingAcks
	waiting atomic.Int64 // len(acks), for onDurable
	// acksQueued: acksFn is queued on the loop.
	acksQueued atomic.Bool
	acksFn     gnet.RunnableFunc
	// held counts live records that hold a spool sequence: a drain need
	// not wait for them (they are on disk).
	held int64
	// jobs counts append jobs submitted and not yet done, pendingBytes
	// the bytes of their packets (maxSpoolPending).
	jobs         int
	pendingBytes int
	// freeJobs are append jobs done, for reuse: one a wake-up would
	// otherwise be an allocation (and its slices more).
	freeJobs []*appendJob
	// noSpill is set while a packet the spool refused is dispatched: it
	// must not spill back to the spool.
	noSpill bool
	// nextDead collects this wake-up's dead letters.
	nextDead *deadJob
}

type pendingAck struct {
	a          *agentConn
	aseq, sseq uint64
}

type pendingAcks struct {
	q    []pendingAck
	head int
}

func (p *pendingAcks) push(a pendingAck) { p.q = append(p.q, a) }
func (p *pendingAcks) len() int          { return len(p.q) - p.head }

// spoolSeq returns r's spool sequence, 0 if it has none.
func (r *record) spoolSeq() uint64 {
	if r.agent == nil {
		return r.aseq
	}
	return 0
}

// worker returns the loop's worker, starting it.
func (lp *loop) worker() *worker {
	if lp.sp.w == nil {
		// The results' writes (packets dispatched, ACKs, BUSY) go out at
		// the end of the hand-back, not at the next tick.
		lp.sp.w = newWorker(func(fn func()) error {
			return lp.el.Execute(lp.s.ctx, gnet.RunnableFunc(func(context.Context) error {
				fn()
				lp.flush()
				return nil
			}))
		})
	}
	return lp.sp.w
}

// ingest takes a new packet: to the spool first when it must be
// (syslog, AckSpool), else straight to dispatch.
func (lp *loop) ingest(r *record) {
	if d := lp.s.dur; d != nil && (r.syslog || d.mode == AckSpool) {
		if lp.spoolIn(r, false) {
			return
		}
		// The disk is behind by maxSpoolPending: as if the spool had
		// refused it (block), the packet goes through memory.
		lp.sp.noSpill = true
		lp.dispatch(r)
		lp.sp.noSpill = false
		return
	}
	lp.dispatch(r)
}

// maxSpoolPending bounds the bytes a loop has handed to its worker and
// not yet seen written: a stalled disk must not grow memory without end.
const maxSpoolPending = 64 << 20

// spoolIn queues r for this wake-up's append; spill says it goes to the
// spool because nothing can take it (it is evicted once written). It
// reports false, leaving r as it was, when the worker is maxSpoolPending
// behind.
func (lp *loop) spoolIn(r *record, spill bool) bool {
	if lp.sp.pendingBytes+len(r.buf) > maxSpoolPending {
		lp.s.dur.behind.Inc()
		return false
	}
	lp.sp.pendingBytes += len(r.buf)
	j := lp.sp.next
	if j == nil {
		if n := len(lp.sp.freeJobs); n > 0 {
			j = lp.sp.freeJobs[n-1]
			lp.sp.freeJobs = lp.sp.freeJobs[:n-1]
		} else {
			j = &appendJob{d: lp.s.dur, lp: lp}
		}
		lp.sp.next = j
	}
	r.move(recSpooling)
	if spill {
		j.spill = append(j.spill, r)
	} else {
		j.recs = append(j.recs, r)
	}
	lp.requestFlush()
	return true
}

// submitSpool hands this wake-up's appends to the worker (from flush).
func (lp *loop) submitSpool() {
	j := lp.sp.next
	if j == nil {
		return
	}
	lp.sp.next = nil
	j.policy = lp.conf.Overflow
	if lp.worker().Submit(j) {
		lp.sp.jobs++
		return
	}
	j.err = errWorkerFull
	lp.spooled(j)
	lp.requestFlush() // its answers (BUSY) were made after flush's writes
}

var errWorkerFull = errors.New("the spool's writer has too much queued")

// appendJob writes one wake-up's records to the spool.
type appendJob struct {
	d      *durable
	lp     *loop
	policy Overflow
	recs   []*record // dispatched once written
	spill  []*record // evicted once written
	bodies []spool.Record
	last   uint64
	err    error
	// dropped counts what drop-oldest gave up to make room.
	dropped uint64
	bytes   int
}

func (j *appendJob) Run() {
	j.bodies = j.bodies[:0]
	for _, rs := range [2][]*record{j.recs, j.spill} {
		for _, r := range rs {
			k := spool.KindData
			if r.syslog {
				k = spool.KindSyslog
			}
			j.bodies = append(j.bodies, spool.Record{Kind: k, Body: r.buf})
			j.bytes += len(r.buf)
		}
	}
	for {
		j.last, j.err = j.d.dir.Append(j.bodies)
		if !errors.Is(j.err, spool.ErrFull) || j.policy != OverflowDropOldest {
			break
		}
		n, _, err := j.d.dir.DropOldest()
		if err != nil {
			break // nothing left to drop: the packets themselves go
		}
		j.dropped += n
	}
	clear(j.bodies)
}

func (j *appendJob) Done() { j.lp.spooled(j) }

// spooled takes an append's result back on the loop.
func (lp *loop) spooled(j *appendJob) {
	d := j.d
	if j.err != errWorkerFull {
		lp.sp.jobs--
	}
	defer lp.recycle(j)
	if j.dropped > 0 {
		d.droppedOld.Add(int(j.dropped))
		lp.s.log.Warn("spool full: dropped its oldest segment (--overflow drop-oldest)", "records", j.dropped)
	}
	for _, rs := range [2][]*record{j.recs, j.spill} {
		for _, r := range rs {
			lp.sp.pendingBytes -= len(r.buf)
		}
	}
	if j.err == nil {
		d.full.Store(false)
	} else if errors.Is(j.err, spool.ErrFull) {
		d.full.Store(true)
	}
	if lp.s.stopping.Load() {
		// The loop is gone: what was written is replayed at the next start.
		for _, rs := range [2][]*record{j.recs, j.spill} {
			for _, r := range rs {
				r.move(recNew)
				lp.freeRecord(r)
			}
		}
		return
	}
	if j.err != nil {
		d.appendFailed.Inc()
		lp.logSpoolRefusal(j)
		for _, r := range j.recs {
			lp.refusedBySpool(r, j.policy, true)
		}
		for _, r := range j.spill {
			lp.refusedBySpool(r, j.policy, false)
		}
		return
	}
	d.appended.Add(len(j.recs) + len(j.spill))
	d.appendedBytes.Add(j.bytes)
	seq := j.last - uint64(len(j.recs)+len(j.spill)) + 1
	for _, r := range j.recs {
		lp.own(r, seq)
		seq++
		r.move(recNew)
		lp.dispatch(r)
	}
	for _, r := range j.spill {
		lp.own(r, seq)
		d.dir.Evict(seq)
		d.evicted.Inc()
		seq++
		r.move(recNew)
		lp.freeRecord(r)
	}
	lp.ackDurable()
}

// maxFreeJobs bounds a loop's free append jobs.
const maxFreeJobs = 64

// recycle keeps j for a later wake-up.
func (lp *loop) recycle(j *appendJob) {
	clear(j.recs)
	clear(j.spill)
	j.recs, j.spill = j.recs[:0], j.spill[:0]
	j.last, j.err, j.dropped, j.bytes = 0, nil, 0, 0
	if len(lp.sp.freeJobs) < maxFreeJobs && cap(j.recs) <= 4096 && cap(j.spill) <= 4096 {
		lp.sp.freeJobs = append(lp.sp.freeJobs, j)
	}
}

// own makes r logdist's: its agent, if any, is acknowledged once seq is
// durable, and r carries seq from now on.
func (lp *loop) own(r *record, seq uint64) {
	if a := r.agent; a != nil {
		lp.sp.acks.push(pendingAck{a: a, aseq: r.aseq, sseq: seq})
		lp.sp.waiting.Add(1)
	}
	r.agent, r.aseq = nil, seq
	lp.sp.held++
}

// ackDurable acknowledges the agents' packets the spool made durable.
func (lp *loop) ackDurable() {
	p := &lp.sp.acks
	if p.len() == 0 {
		return
	}
	durable := lp.s.dur.dir.Durable()
	n := 0
	for p.len() > 0 && p.q[p.head].sseq <= durable {
		pa := p.q[p.head]
		p.q[p.head] = pendingAck{}
		p.head++
		n++
		if !pa.a.closed {
			pa.a.accept(pa.aseq)
		}
	}
	switch {
	case p.head == len(p.q):
		p.q, p.head = p.q[:0], 0
	case p.head >= 1024 && 2*p.head >= len(p.q):
		// Never empty under a steady stream: compact, or it grows.
		n := copy(p.q, p.q[p.head:])
		clear(p.q[n:])
		p.q, p.head = p.q[:n], 0
	}
	lp.sp.waiting.Add(-int64(n))
}

// refusedBySpool applies the overflow policy to r, which the spool could
// not take; fresh says r came to be spooled first (not spilled).
func (lp *loop) refusedBySpool(r *record, policy Overflow, fresh bool) {
	r.move(recNew)
	if !fresh {
		// A spilled packet's agent still holds it (ack-mode analyzer):
		// BUSY, whatever the policy, and it comes back.
		lp.busy(r)
		return
	}
	if policy == OverflowBlock || !errors.Is(lp.lastSpoolErr, spool.ErrFull) {
		// As if there were no spool: it waits in memory, and past the
		// queue's bound its agent gets BUSY (its syslog sender loses it).
		lp.sp.noSpill = true
		lp.dispatch(r)
		lp.sp.noSpill = false
		return
	}
	// drop-newest (or drop-oldest with nothing older to drop)
	lp.s.dur.droppedNewest.Inc()
	if a := r.agent; a != nil {
		a.accept(r.aseq) // the operator chose loss over stalling agents
	}
	lp.freeRecord(r)
}

// logSpoolRefusal says why the spool refused a batch (throttled by the
// packet log), and remembers the error for refusedBySpool.
func (lp *loop) logSpoolRefusal(j *appendJob) {
	lp.lastSpoolErr = j.err
	if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"spool refused packets", 0}); ok {
		lp.s.log.Warn("spool refused packets", "err", j.err, "policy", j.policy.String(),
			"packets", len(j.recs)+len(j.spill), "suppressed", suppressed)
	}
}

// spillToSpool frees the memory of a packet no analyzer can take while the
// waiting queue is full: one already in the spool is evicted (read back
// later), another is written first. It reports false when there is no
// spool, or it must not be used: the caller answers BUSY.
func (lp *loop) spillToSpool(r *record) bool {
	d := lp.s.dur
	if d == nil || lp.sp.noSpill {
		return false
	}
	if seq := r.spoolSeq(); seq != 0 {
		d.dir.Evict(seq)
		d.evicted.Inc()
		lp.freeRecord(r)
		return true
	}
	return lp.spoolIn(r, true)
}

// rereadBatch bounds one Reread: records and bytes.
const (
	rereadBatch = 1024
	rereadBytes = 8 << 20
)

// maybeReread reads spilled (or, after a restart, unacknowledged)
// packets back from the spool when this loop has room and an analyzer is
// there to take them.
func (lp *loop) maybeReread() {
	d := lp.s.dur
	if d == nil || lp.s.draining.Load() || d.dir.Evicted() == 0 {
		return
	}
	// Read back no more than half the queue's room, in packets and in
	// bytes: what an analyzer cannot take at once waits there, and the
	// rest stays on disk. Reading more would only spill it back.
	room := min(rereadBatch, max(lp.conf.QueueMaxPackets/2, 64)-int(lp.s.queuedPackets.Load()))
	roomBytes := min(rereadBytes, lp.conf.QueueMaxBytes/2-lp.s.queuedBytes.Load())
	if room <= 0 || roomBytes <= 0 {
		return
	}
	// Only when one of this loop's analyzer connections takes packets
	// now: read back for one that is full, they would only spill back.
	taking := false
	for _, u := range lp.ups {
		if u != nil && u.accepting() {
			taking = true
			break
		}
	}
	if !taking {
		return
	}
	if !d.rereading.CompareAndSwap(false, true) {
		return
	}
	j := &rereadJob{d: d, lp: lp, max: room, maxBytes: roomBytes}
	if !lp.worker().Submit(j) {
		d.rereading.Store(false)
	}
}

// rereadJob reads packets back from the spool.
type rereadJob struct {
	d        *durable
	lp       *loop
	max      int
	maxBytes int64
	buf      []byte
	recs     []rereadRec
	err      error
}

type rereadRec struct {
	seq    uint64
	kind   spool.Kind
	off, n int
}

func (j *rereadJob) Run() {
	_, j.err = j.d.dir.Reread(j.max, j.maxBytes, func(r spool.Record) {
		j.recs = append(j.recs, rereadRec{seq: r.Seq, kind: r.Kind, off: len(j.buf), n: len(r.Body)})
		j.buf = append(j.buf, r.Body...)
	})
}

func (j *rereadJob) Done() {
	lp, d := j.lp, j.d
	if j.err != nil {
		if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"cannot read packets back from the spool", 0}); ok {
			lp.s.log.Error("cannot read packets back from the spool; retrying at the next tick", "err", j.err, "suppressed", suppressed)
		}
	}
	stopping := lp.s.stopping.Load()
	for _, rr := range j.recs {
		body := j.buf[rr.off : rr.off+rr.n]
		if stopping {
			continue // still in the spool: replayed at the next start
		}
		r := lp.newRecord(body, nil, 0, frame.Header(body[:frame.HeaderSize]).Count())
		r.aseq = rr.seq
		r.syslog = rr.kind == spool.KindSyslog
		lp.sp.held++
		lp.dispatch(r)
	}
	d.reread.Add(len(j.recs))
	d.rereading.Store(false)
	if !stopping && len(j.recs) > 0 && lp.led.waiting.len() == 0 {
		lp.maybeReread() // the analyzers took them all: more now, not at the next tick
	}
}

// retry counts a failed delivery attempt of r (its connection failed or
// timed out with r in flight) and hands it to re-dispatch, or gives up
// on it past Config.RetryMax.
func (lp *loop) retry(r *record) {
	if r.tries < 255 {
		r.tries++
	}
	if max := lp.conf.RetryMax; max > 0 && int(r.tries) > max && !r.hedged && !r.orphan() {
		lp.giveUp(r, spool.ReasonRetries, 0, "", fmt.Sprintf("not acknowledged after %d attempts", r.tries))
		return
	}
	lp.toRedo(r)
}

// retryDelay is the backoff before r's next attempt: none for the first
// retry (another analyzer takes it at once), then RetryBackoff doubled
// per attempt, ±50% jitter, at most maxRetryBackoff.
func (lp *loop) retryDelay(r *record) int64 {
	if r.tries <= 1 {
		return 0
	}
	d := lp.conf.RetryBackoff << min(r.tries-2, 20)
	d = min(d, maxRetryBackoff)
	return min(int64(d/2)+rand.Int64N(int64(d)+1), int64(maxRetryBackoff))
}

// giveUp ends r's delivery: to the dead letters with a spool, else its
// agent gets ERROR (a syslog batch is dropped, counted).
func (lp *loop) giveUp(r *record, reason spool.Reason, code frame.Code, analyzer, why string) {
	d := lp.s.dur
	if reason == spool.ReasonRetries && d != nil {
		d.retriesExhausted.Inc()
	}
	if d == nil {
		if a := r.agent; a != nil {
			a.resolveError(r.aseq, frame.CodeInternal, why)
		} else if r.syslog {
			lp.m.syslogDropped.Inc()
		}
		lp.freeRecord(r)
		return
	}
	lp.s.log.Debug("giving up on a packet", "reason", reason.String(), "analyzer", analyzer, "why", why, "spool_seq", r.spoolSeq())
	j := lp.sp.nextDead
	if j == nil {
		j = &deadJob{d: d, lp: lp}
		lp.sp.nextDead = j
	}
	it := deadItem{reason: reason, origin: r.spoolSeq(), why: why, syslog: r.syslog}
	if a := r.agent; a != nil {
		it.agent, it.aseq = a, r.aseq
	}
	it.body = spool.AppendDeadLetter(nil, &spool.DeadLetter{
		Reason: reason, Code: code, Time: time.Unix(0, lp.wallNow()), Origin: it.origin,
		Analyzer: []byte(analyzer), Error: []byte(why), Frame: r.buf,
	})
	j.items = append(j.items, it)
	lp.freeRecord(r)
	lp.requestFlush()
}

// submitDead hands this wake-up's dead letters to the worker (from
// flush): one append and one fsync for all of them.
func (lp *loop) submitDead() {
	j := lp.sp.nextDead
	lp.sp.nextDead = nil
	if !lp.worker().Submit(j) {
		j.err = errWorkerFull
		j.Done()
		lp.requestFlush()
	}
}

// deadJob writes one wake-up's dead letters.
type deadJob struct {
	d     *durable
	lp    *loop
	items []deadItem
	err   error
}

// deadItem is one packet given up on. Its agent, if one still waits, is
// answered once the dead letter is written: ERROR then (it is kept
// here), BUSY if it could not be (the agent sends it again).
type deadItem struct {
	reason spool.Reason
	origin uint64 // spool sequence, 0 if not in the spool
	agent  *agentConn
	aseq   uint64
	syslog bool
	why    string
	body   []byte
}

func (j *deadJob) Run() {
	recs := make([]spool.Record, len(j.items))
	for i := range j.items {
		recs[i] = spool.Record{Kind: spool.KindDeadLetter, Body: j.items[i].body}
	}
	_, j.err = j.d.dead.Append(recs)
}

func (j *deadJob) Done() {
	d, lp := j.d, j.lp
	if j.err != nil {
		d.deadFailed.Add(len(j.items))
		if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"cannot write dead letters", 0}); ok {
			lp.s.log.Error("cannot write dead letters; packets in the spool are tried again, agents told BUSY", "err", j.err,
				"packets", len(j.items), "suppressed", suppressed)
		}
		for _, it := range j.items {
			switch {
			case it.origin != 0:
				d.dir.Evict(it.origin) // still in the spool: read back and tried again
			case it.agent != nil:
				if !it.agent.closed {
					it.agent.resolveBusy(it.aseq, lp.conf.busyRetryMs)
				}
			case it.syslog:
				lp.m.syslogDropped.Inc() // a syslog batch the spool had refused: lost
			}
		}
		return
	}
	for _, it := range j.items {
		if it.reason == spool.ReasonRejected {
			d.deadRejected.Inc()
		} else {
			d.deadRetries.Inc()
		}
		if it.origin != 0 {
			_ = d.dir.Ack(it.origin)
		}
		if it.agent != nil && !it.agent.closed {
			// Its agent would resend it for ever: it is told no, and
			// where the packet is.
			it.agent.resolveError(it.aseq, frame.CodeRejected, it.why+"; kept in logdist's dead letters")
		}
	}
	if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"packets put in the dead letters", 0}); ok {
		lp.s.log.Warn("packets put in the dead letters (logdist ctl dead-letters lists and replays them)", "packets", len(j.items),
			"reason", j.items[0].reason.String(), "why", j.items[0].why, "suppressed", suppressed)
	}
}

// writeMetrics writes the spool's gauges at scrape time (Stats may wait
// for an append's write: never on a loop).
func (d *durable) writeMetrics(w io.Writer) {
	st := d.dir.Stats()
	metrics.WriteGaugeUint64(w, "logdist_spool_bytes", uint64(st.Bytes))
	metrics.WriteGaugeUint64(w, "logdist_spool_segments", uint64(st.Segments))
	metrics.WriteGaugeUint64(w, "logdist_spool_records", st.Records)
	metrics.WriteGaugeUint64(w, "logdist_spool_spilled_records", st.Evicted)
	metrics.WriteGaugeFloat64(w, "logdist_spool_oldest_age_seconds", st.OldestAge.Seconds())
	metrics.WriteGaugeUint64(w, "logdist_spool_max_bytes", uint64(d.maxBytes))
	metrics.WriteCounterUint64(w, "logdist_spool_syncs_total", st.Syncs)
	metrics.WriteCounterUint64(w, "logdist_spool_lost_records_total", st.Lost)
	metrics.WriteGaugeUint64(w, "logdist_spool_records_need_key", st.NeedKey)
	dl := d.dead.Stats()
	metrics.WriteGaugeUint64(w, "logdist_dead_letters", dl.Records)
	metrics.WriteGaugeUint64(w, "logdist_dead_letters_bytes", uint64(dl.Bytes))
}

// checkAlert logs when the spool's fill crosses a QueueAlert level (from
// the server's ticker: Stats may wait for an append's write).
func (d *durable) checkAlert() {
	if d.maxBytes > 0 {
		bytes := d.dir.Stats().Bytes
		d.alert.check(d.s, "spool", float64(bytes)/float64(d.maxBytes), "bytes", bytes, "max_bytes", d.maxBytes)
	}
}

// fillAlert remembers which Config.QueueAlert level a fill is at, to log
// each crossing once, up and down.
type fillAlert struct{ level atomic.Int32 }

func (fa *fillAlert) check(s *Server, what string, fill float64, attrs ...any) {
	conf := s.conf.Load()
	level := int32(0)
	for i, f := range conf.QueueAlert {
		if fill >= f {
			level = int32(i + 1)
		}
	}
	old := fa.level.Swap(level)
	if old == level {
		return
	}
	attrs = append(attrs, "fill", fmt.Sprintf("%.1f%%", 100*fill), "overflow", conf.Overflow.String())
	if level > old {
		s.log.Warn(what+" filling up: crossed --queue-alert "+fmt.Sprintf("%g", conf.QueueAlert[level-1]), attrs...)
	} else {
		s.log.Info(what+" draining: back under a --queue-alert level", attrs...)
	}
}
