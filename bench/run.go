package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/proxy/status"
)

// runner is the state shared by the connections of one run.
type runner struct {
	cfg   Config
	ctx   context.Context
	start time.Time
	sched *Schedule // nil: as fast as the window allows
	end   int64     // ns since start after which rate-0 sending stops; 0: none
	conns []*agentConn
	// idBase is the packet id of the schedule's first packet.
	idBase uint64
	// sess is every connection's HELLO.
	sess session.ClientConfig

	stopNew  chan struct{} // closed: send no new packets (resends and drain go on)
	hardStop chan struct{} // closed: stop everything now
	stopOnce sync.Once
	hardOnce sync.Once
	errMu    sync.Mutex
	err      error // why the run was aborted
}

func (r *runner) now() int64 { return int64(time.Since(r.start)) }

func (r *runner) stopped() bool {
	select {
	case <-r.stopNew:
		return true
	default:
		return false
	}
}

func (r *runner) hardStopped() bool {
	select {
	case <-r.hardStop:
		return true
	default:
		return false
	}
}

func (r *runner) stopSending() { r.stopOnce.Do(func() { close(r.stopNew) }) }

func (r *runner) stopAll() {
	r.stopSending()
	r.hardOnce.Do(func() { close(r.hardStop) })
}

// abort ends the run with err (a permanent failure such as auth).
func (r *runner) abort(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.stopAll()
}

// checkWelcome refuses a server the pools cannot be sent to as they are.
func (r *runner) checkWelcome(sess *session.Client[item]) error {
	if r.cfg.TraceSample > 0 && sess.Granted()&frame.CapTrace == 0 {
		return fmt.Errorf("%w: %s did not grant the trace capability: run without --trace-sample", errPermanent, r.cfg.Target)
	}
	if r.cfg.Compress && sess.Granted()&frame.CapZstd == 0 {
		return fmt.Errorf("%w: %s did not grant zstd: run with --compress none", errPermanent, r.cfg.Target)
	}
	if d := r.cfg.Dict; d != nil && !sess.AcceptsDict(d.ID()) {
		return fmt.Errorf("%w: %s does not hold dictionary %d (it lists %v): give it the same --dict, or run without", errPermanent, r.cfg.Target, d.ID(), sess.Dicts())
	}
	for _, c := range r.conns {
		for _, f := range c.pool.frames {
			if uint32(len(f)-frame.HeaderSize) > sess.MaxFrame() {
				return fmt.Errorf("%w: %s accepts DATA of at most %d bytes, packets are up to %d: send fewer or smaller messages", errPermanent, r.cfg.Target, sess.MaxFrame(), len(f)-frame.HeaderSize)
			}
		}
	}
	return nil
}

// poolSize is the number of pre-built packet bodies per connection: up to
// 2,048 (about 64 Ki over all connections), fewer if the connection sends
// fewer packets. Each is sent again and again, with a new packet id every
// time (pool.stamp).
func poolSize(want, conns int, quota int64) int {
	n := want
	if n == 0 {
		n = min(2048, max(64, 65536/max(conns, 1)))
	}
	if quota > 0 && quota < int64(n) {
		n = int(quota)
	}
	return n
}

// Run runs the benchmark cfg describes and returns its result. It stops
// sending when ctx is cancelled and returns what was measured so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AgentID == "" {
		cfg.AgentID = fmt.Sprintf("logbench-%d", os.Getpid())
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	r := &runner{cfg: cfg, ctx: ctx, stopNew: make(chan struct{}), hardStop: make(chan struct{})}
	var caps frame.Capabilities
	if cfg.Compress {
		caps = frame.CapZstd
	}
	if cfg.Sack {
		caps |= frame.CapSack
	}
	if cfg.TraceSample > 0 {
		caps |= frame.CapTrace
	}
	r.sess = session.ClientConfig{AgentID: cfg.AgentID, Software: "logbench", Offer: caps, Window: uint32(cfg.Window)}
	res := &Result{Target: cfg.Target, Profile: cfg.ProfileName, Conns: cfg.Conns, Rate: cfg.Rate,
		MsgsPerPacket: cfg.MsgsPerPacket, MsgSize: cfg.MsgSize, Compress: "none", Window: cfg.Window}
	if cfg.Compress {
		res.Compress = "zstd"
	}
	if d := cfg.Dict; d != nil {
		r.sess.Dicts = []uint32{d.ID()}
		res.Compress = fmt.Sprintf("zstd, dictionary %d", d.ID())
	}
	if cfg.Compress && cfg.FastDecode {
		res.Compress += ", fast decode (literals not entropy-coded)"
	}

	var before []status.Analyzer
	if cfg.Admin != "" {
		var err error
		if before, err = FetchAnalyzers(ctx, cfg.Admin); err != nil {
			return nil, err
		}
	}

	var idle *idleSet
	if cfg.IdleConns > 0 {
		idle = openIdle(ctx, cfg.Target, cfg.TLS, &r.sess, cfg.IdleConns, cfg.DialTimeout)
		res.IdleConns = idle.open()
		if cfg.OnIdleReady != nil {
			cfg.OnIdleReady(res.IdleConns)
		}
		defer idle.close()
		if res.IdleConns < cfg.IdleConns {
			res.Errors += uint64(cfg.IdleConns - res.IdleConns)
		}
	}

	if err := r.buildPools(res); err != nil {
		return nil, err
	}

	// The clock starts now: everything above was preparation.
	switch {
	case cfg.Profile != nil:
		r.sched = cfg.Profile
	case cfg.Rate > 0 && cfg.Packets > 0:
		r.sched = Constant(cfg.Rate, time.Duration(float64(cfg.Packets+int64(cfg.Conns))/cfg.Rate*float64(time.Second))+time.Second)
	case cfg.Rate > 0:
		r.sched = Constant(cfg.Rate, cfg.Duration)
	case cfg.Packets == 0:
		r.end = int64(cfg.Duration)
	}
	var sendFor time.Duration // when new sending ends by itself (0: by quota)
	switch {
	case r.sched != nil && cfg.Packets == 0:
		// Each connection stops by itself at the end of the schedule. A
		// target that fell behind gets DrainTimeout more to take the
		// packets already due (they count from their scheduled time);
		// what is still unsent then is left out of packets_sent.
		sendFor = r.sched.Duration() + cfg.DrainTimeout
	case r.end > 0:
		sendFor = time.Duration(r.end)
	}
	if cfg.Conns == 0 {
		sendFor = cfg.Duration
	}
	switch {
	case cfg.Packets > 0 && r.sched != nil:
		res.PacketsScheduled = uint64(cfg.Packets)
	case r.sched != nil:
		res.PacketsScheduled = uint64(math.Ceil(r.sched.Packets()))
	}
	r.start = time.Now()

	var wg sync.WaitGroup
	for _, c := range r.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run()
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	progDone := make(chan struct{})
	go func() {
		defer close(progDone)
		r.progress(allDone, idle)
	}()

	// Stop sending at the end of the duration or on ctx; then give the
	// outstanding packets DrainTimeout to be resolved.
	var sendEnd <-chan time.Time
	if sendFor > 0 {
		t := time.NewTimer(sendFor)
		defer t.Stop()
		sendEnd = t.C
	}
	var drain <-chan time.Time
	connsDone := allDone
	if cfg.Conns == 0 {
		connsDone = nil // only idle connections: hold them for the duration
	}
	for drain == nil {
		select {
		case <-connsDone:
			drain = make(chan time.Time)
		case <-sendEnd:
		case <-ctx.Done():
		}
		if drain == nil {
			r.stopSending()
			t := time.NewTimer(cfg.DrainTimeout)
			defer t.Stop()
			drain = t.C
		}
	}
	select {
	case <-allDone:
	case <-drain:
		r.stopAll()
		<-allDone
	}
	elapsed := time.Since(r.start)
	r.stopAll()
	<-progDone

	r.fill(res, elapsed)
	if idle != nil {
		res.IdleConnsLost = idle.lost()
	}
	if r.err != nil {
		return res, r.err
	}
	if cfg.Admin != "" {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		after, err := FetchAnalyzers(actx, cfg.Admin)
		if err != nil {
			return res, err
		}
		res.Shares, res.MaxShareError = Shares(before, after)
	}
	return res, nil
}

// buildPools makes every connection's packets, in parallel.
func (r *runner) buildPools(res *Result) error {
	cfg := &r.cfg
	// Packet ids: the n-th packet of the run's schedule (connection c's
	// k-th, n = k × conns + c) is idBase + n, the way an agent counts up
	// from the time it started.
	r.idBase = uint64(time.Now().UnixNano())
	r.conns = make([]*agentConn, cfg.Conns)
	errs := make([]error, cfg.Conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range r.conns {
		quota := int64(-1)
		if cfg.Packets > 0 {
			quota = cfg.Packets / int64(cfg.Conns)
			if int64(i) < cfg.Packets%int64(cfg.Conns) {
				quota++
			}
		}
		q := quota
		if q < 0 && cfg.Profile == nil && cfg.Rate > 0 {
			// A fixed rate for a duration sends a known number.
			q = int64(cfg.Rate*cfg.Duration.Seconds())/int64(cfg.Conns) + 1
		}
		n := poolSize(cfg.PoolSize, cfg.Conns, q)
		c := &agentConn{r: r, id: i, quota: quota}
		c.st.hist, c.st.interval = newHist(), newHist()
		r.conns[i] = c
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var zenc *zstd.Encoder
			if cfg.Compress {
				level := defaultLevel
				if cfg.Dict != nil {
					level = dictLevel // as the agent library compresses with one
				}
				if zenc, errs[i] = newZstdEncoder(level, cfg.Dict, cfg.FastDecode); errs[i] != nil {
					return
				}
				defer zenc.Close()
			}
			c.pool, errs[i] = buildPool(newTextGen(cfg.Seed+uint64(i)), zenc, cfg.Dict, []byte(cfg.AgentID), n, cfg.MsgsPerPacket, cfg.MsgSize, &cfg.Limits)
			if errs[i] == nil && cfg.TraceSample > 0 {
				c.pool.trace(rand.New(rand.NewPCG(cfg.Seed+uint64(i), 0x7ace)), cfg.TraceSample)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var raw, wire, frames int64
	res.UniqueIDs = true
	for _, c := range r.conns {
		res.PoolBodies += len(c.pool.frames)
		raw += c.pool.rawBytes
		wire += c.pool.wire
		frames += int64(len(c.pool.frames))
	}
	if frames > 0 {
		res.PacketBytes = float64(wire) / float64(frames)
		res.CompressionRatio = float64(raw) / float64(wire-frames*frame.HeaderSize)
	}
	return nil
}

// totals sums the connections' counters.
type totals struct {
	sent, acked, bytes, errors, busy, reconnects uint64
	lastAck                                      int64
}

func (r *runner) totals() totals {
	var t totals
	for _, c := range r.conns {
		t.sent += c.st.sent.Load()
		t.acked += c.st.acked.Load()
		t.bytes += c.st.bytes.Load()
		t.errors += c.st.errors.Load()
		t.busy += c.st.busy.Load()
		t.reconnects += c.st.reconnects.Load()
		t.lastAck = max(t.lastAck, c.st.lastAck.Load())
	}
	return t
}

// progress writes a line every ProgressInterval until done.
func (r *runner) progress(done <-chan struct{}, idle *idleSet) {
	w := r.cfg.Progress
	if w == nil {
		<-done
		return
	}
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	var prev totals
	prevT := time.Now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		t := r.totals()
		now := time.Now()
		h := newHist()
		for _, c := range r.conns {
			c.st.mu.Lock()
			h.Merge(c.st.interval)
			c.st.interval.Reset()
			c.st.mu.Unlock()
		}
		secs := now.Sub(prevT).Seconds()
		inflight := int64(t.sent) - int64(t.acked) - int64(t.busy) - int64(t.errors)
		line := fmt.Sprintf("logbench %5.0fs  %9.0f pkt/s  acked %10d  in flight %6d  p99 %8.2f ms  errors %d  busy %d",
			time.Since(r.start).Seconds(), float64(t.acked-prev.acked)/secs, t.acked, max(inflight, 0),
			float64(h.ValueAtQuantile(99))/1000, t.errors, t.busy)
		if r.sched != nil {
			line += fmt.Sprintf("  target %.0f pkt/s", r.sched.RateAt(time.Since(r.start)))
		}
		if idle != nil {
			line += fmt.Sprintf("  idle %d", idle.open()-idle.lost())
		}
		fmt.Fprintln(w, line)
		prev, prevT = t, now
	}
}

// fill computes the result from the connections' counters.
func (r *runner) fill(res *Result, elapsed time.Duration) {
	t := r.totals()
	res.PacketsSent = t.sent
	res.PacketsAcked = t.acked
	res.MessagesAcked = t.acked * uint64(r.cfg.MsgsPerPacket)
	res.BytesSent = t.bytes
	res.Errors += t.errors
	res.Busy = t.busy
	res.Reconnects = t.reconnects
	// Throughput is over the time until the last ACK, not the drain wait.
	d := elapsed
	if t.lastAck > 0 && len(r.conns) > 0 {
		d = time.Duration(t.lastAck)
	}
	res.DurationS = d.Seconds()
	if d > 0 {
		res.PacketsPerSec = float64(t.acked) / d.Seconds()
		res.MessagesPerSec = float64(res.MessagesAcked) / d.Seconds()
		res.MBytesPerSec = float64(t.bytes) / d.Seconds() / 1e6
	}
	h := newHist()
	var lastErr error
	var unresolved int64
	for _, c := range r.conns {
		c.st.mu.Lock()
		h.Merge(c.st.hist)
		if c.st.lastErr != nil {
			lastErr = c.st.lastErr
		}
		c.st.mu.Unlock()
		unresolved += int64(c.pendingResends())
	}
	if lastErr != nil {
		res.LastError = lastErr.Error()
	}
	// Packets in flight or waiting for a resend when the run was cut short.
	res.Unresolved = uint64(max(unresolved, 0))
	ms := func(us int64) float64 { return float64(us) / 1000 }
	res.LatencyMs = Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}
