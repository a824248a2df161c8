package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/logdist/logdist/frame"
)

// Histogram range: 1 µs to 5 minutes, 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(5 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// connStats are one connection's counters; the progress line and the
// result sum them over connections, so no counter is shared between cores.
type connStats struct {
	sent, acked, bytes, errors, busy, reconnects atomic.Uint64
	lastAck                                      atomic.Int64 // ns since start of the latest ACK

	mu       sync.Mutex
	hist     *hdrhistogram.Histogram // whole run
	interval *hdrhistogram.Histogram // since the last progress line
	lastErr  error
}

func (s *connStats) fail(err error) {
	s.errors.Add(1)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// resend is a packet to send again: BUSY, or left unresolved by a
// connection that failed. due is when it was first due, so its latency
// counts the whole detour.
type resend struct {
	idx       int32
	due       int64
	notBefore int64
}

// agentConn is one sending connection: its pool, its share of the
// schedule, and the packets it owes (resends). It outlives reconnects.
type agentConn struct {
	r     *runner
	id    int
	pool  *pool
	quota int64 // distinct packets to send; -1: until the schedule or duration ends
	k     int64 // packets of the schedule taken so far
	st    connStats

	mu      sync.Mutex
	resends []resend
}

func (c *agentConn) pushResend(x resend) {
	c.mu.Lock()
	c.resends = append(c.resends, x)
	c.mu.Unlock()
}

// takeResend returns a resend due at now, or the earliest time one will be.
func (c *agentConn) takeResend(now int64) (x resend, ok bool, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next = -1
	for i, r := range c.resends {
		if r.notBefore <= now {
			c.resends = append(c.resends[:i], c.resends[i+1:]...)
			return r, true, 0
		}
		if next < 0 || r.notBefore < next {
			next = r.notBefore
		}
	}
	return x, false, next
}

func (c *agentConn) pendingResends() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.resends)
}

// nextNew returns the next scheduled packet if it is due at now, else the
// time it will be (-1: no more new packets).
func (c *agentConn) nextNew(now int64) (idx int32, due int64, ok bool, next int64) {
	r := c.r
	if r.stopped() || (c.quota >= 0 && c.k >= c.quota) {
		return 0, 0, false, -1
	}
	if r.sched == nil { // as fast as the window allows, until the end
		if r.end > 0 && now >= r.end {
			return 0, 0, false, -1
		}
		idx = int32(c.k % int64(len(c.pool.frames)))
		c.k++
		return idx, now, true, 0
	}
	t, more := r.sched.TimeOf(float64(c.k*int64(len(r.conns)) + int64(c.id)))
	if !more {
		return 0, 0, false, -1
	}
	if int64(t) > now {
		return 0, 0, false, int64(t)
	}
	idx = int32(c.k % int64(len(c.pool.frames)))
	c.k++
	return idx, int64(t), true, 0
}

// moreNew reports whether the schedule or quota still has packets.
func (c *agentConn) moreNew() bool {
	_, _, ok, next := c.peekNew()
	return ok || next >= 0
}

func (c *agentConn) peekNew() (int32, int64, bool, int64) {
	k := c.k
	idx, due, ok, next := c.nextNew(c.r.now())
	c.k = k
	return idx, due, ok, next
}

// run sends this connection's share, reconnecting after failures, until
// there is nothing left to send and resolve, or the run is cut short.
func (c *agentConn) run() {
	backoff := 50 * time.Millisecond
	for {
		if !c.moreNew() && c.pendingResends() == 0 {
			return
		}
		if c.r.hardStopped() {
			return
		}
		nc, w, err := dialHandshake(c.r.ctx, c.r.cfg.Target, c.r.hello, c.r.cfg.DialTimeout)
		if err == nil {
			err = c.r.checkWelcome(&w)
			if err != nil {
				nc.Close()
			}
		}
		if err != nil {
			if errors.Is(err, errPermanent) {
				c.r.abort(err)
				return
			}
			c.st.fail(err)
			select {
			case <-time.After(backoff):
			case <-c.r.hardStop:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if c.session(nc, &w) {
			return
		}
		c.st.reconnects.Add(1)
	}
}

// slot remembers one unresolved DATA of a session: which packet, when it
// was due, and whether a BUSY or ERROR resolved it ahead of the ACK.
type slot struct {
	due      atomic.Int64
	idx      atomic.Int32
	resolved atomic.Bool
}

// ringWindows is how many windows of sequences a session tracks: DATA
// resolved out of order (SACK, BUSY, ERROR) let the newest run ahead of
// the oldest unresolved one; the writer waits when it is this far ahead.
const ringWindows = frame.SeqGapWindows

// session is one connection's life: a writer (this goroutine) and a reader.
type session struct {
	c      *agentConn
	nc     net.Conn
	window int64
	idle   time.Duration // PING when nothing was written for this long
	ring   []slot        // by seq % len(ring); ringWindows × window

	sent     atomic.Int64 // highest sequence written
	ackHigh  atomic.Int64 // highest cumulative ACK
	resolved atomic.Int64 // DATA resolved by ACK, BUSY or ERROR
	goaway   atomic.Bool
	closing  atomic.Bool

	wake    chan struct{} // reader → writer: something was resolved or needs an answer
	failed  chan struct{} // closed by the reader when the connection broke
	pongs   chan uint64
	readEnd chan struct{}
}

// session runs one connection; it reports whether this connection's work
// is complete (false: reconnect and go on).
func (c *agentConn) session(nc net.Conn, w *frame.Welcome) bool {
	win := int64(w.Window)
	s := &session{
		c: c, nc: nc, window: win,
		ring:    make([]slot, ringWindows*win),
		wake:    make(chan struct{}, 1),
		failed:  make(chan struct{}),
		pongs:   make(chan uint64, 16),
		readEnd: make(chan struct{}),
	}
	if w.IdleTimeoutMs > 0 {
		s.idle = time.Duration(w.IdleTimeoutMs) * time.Millisecond / 3
	}
	go s.readLoop()
	done := s.writeLoop()
	s.closing.Store(true)
	nc.Close()
	<-s.readEnd
	// Whatever the connection left unresolved is sent again on the next
	// one (at-least-once), counted from when it was first due.
	now := c.r.now()
	for q := s.ackHigh.Load() + 1; q <= s.sent.Load(); q++ {
		sl := &s.ring[q%int64(len(s.ring))]
		if !sl.resolved.Load() {
			c.pushResend(resend{idx: sl.idx.Load(), due: sl.due.Load(), notBefore: now})
		}
	}
	return done
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes DATA as the schedule, the window and the resends allow,
// many frames per system call. It returns true when all of the
// connection's work is sent and resolved.
func (s *session) writeLoop() bool {
	c, r := s.c, s.c.r
	bw := bufio.NewWriterSize(s.nc, 64<<10)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ringLen := int64(len(s.ring))
	var seq int64
	lastWrite := r.now()
	flush := func() bool {
		if bw.Buffered() == 0 {
			return true
		}
		if err := bw.Flush(); err != nil {
			if !s.closing.Load() {
				c.st.fail(fmt.Errorf("cannot write to %s: %w", r.cfg.Target, err))
			}
			return false
		}
		lastWrite = r.now()
		return true
	}
	// wait blocks until something changes or until (ns since start; -1:
	// no deadline). It returns false when the session or the run ends.
	wait := func(until int64) bool {
		if !flush() {
			return false
		}
		if s.idle > 0 {
			ka := lastWrite + int64(s.idle)
			if until < 0 || ka < until {
				until = ka
			}
		}
		var tc <-chan time.Time
		if until >= 0 {
			timer.Reset(time.Duration(until - r.now()))
			tc = timer.C
		}
		select {
		case <-s.wake:
		case <-tc:
		case <-s.failed:
			return false
		case <-r.hardStop:
			return false
		}
		return true
	}
	for {
		select {
		case nonce := <-s.pongs:
			bw.Write(frame.AppendPong(nil, nonce))
		default:
		}
		now := r.now()
		if s.idle > 0 && now-lastWrite >= int64(s.idle) && bw.Buffered() == 0 {
			bw.Write(frame.AppendPing(nil, uint64(now)))
			if !flush() {
				return false
			}
		}
		if seq-s.resolved.Load() >= s.window || seq+1-s.ackHigh.Load() > ringLen {
			if !wait(-1) {
				return false
			}
			continue
		}
		var (
			idx  int32
			due  int64
			ok   bool
			next int64 = -1
		)
		if x, got, rn := c.takeResend(now); got {
			idx, due, ok = x.idx, x.due, true
		} else if !s.goaway.Load() {
			var nn int64
			idx, due, ok, nn = c.nextNew(now)
			next = rn
			if nn >= 0 && (next < 0 || nn < next) {
				next = nn
			}
		} else {
			next = rn
		}
		if !ok {
			if seq == s.resolved.Load() {
				if s.goaway.Load() {
					flush()
					return false // reconnect for the rest
				}
				if !c.moreNew() && c.pendingResends() == 0 {
					flush()
					return true
				}
			}
			if !wait(next) {
				return false
			}
			continue
		}
		seq++
		f := c.pool.frames[idx]
		frame.Header(f).SetSeq(uint64(seq))
		sl := &s.ring[seq%ringLen]
		sl.due.Store(due)
		sl.idx.Store(idx)
		sl.resolved.Store(false)
		s.sent.Store(seq)
		if _, err := bw.Write(f); err != nil {
			if !s.closing.Load() {
				c.st.fail(fmt.Errorf("cannot write to %s: %w", r.cfg.Target, err))
			}
			return false
		}
		c.st.sent.Add(1)
		c.st.bytes.Add(uint64(len(f)))
	}
}

// readLoop reads ACK, BUSY, ERROR, PING and GOAWAY and resolves DATA.
func (s *session) readLoop() {
	defer close(s.readEnd)
	c, r := s.c, s.c.r
	fr := frame.NewReader(s.nc, &r.cfg.Limits)
	ringLen := int64(len(s.ring))
	lats := make([]int64, 0, 256)
	var ranges []frame.SeqRange
	fail := func(err error) {
		if !s.closing.Load() {
			c.st.fail(err)
		}
		close(s.failed)
	}
	for {
		h, payload, err := fr.Next()
		if err != nil {
			fail(fmt.Errorf("connection to %s: %w", r.cfg.Target, err))
			return
		}
		seq := int64(h.Seq())
		switch h.Type() {
		case frame.TypeAck, frame.TypeSack:
			if h.Seq() > uint64(s.sent.Load()) { // unsigned: a hostile 2^63 is not negative
				fail(fmt.Errorf("%s acknowledged sequence %d, not sent yet", r.cfg.Target, h.Seq()))
				return
			}
			if h.Type() == frame.TypeSack {
				if ranges, err = frame.DecodeSack(payload, uint64(seq), ranges[:0]); err != nil {
					fail(fmt.Errorf("%s sent a bad SACK: %w", r.cfg.Target, err))
					return
				}
			} else {
				ranges = ranges[:0]
			}
			hi := s.ackHigh.Load()
			now := r.now()
			lats = lats[:0]
			for q := hi + 1; q <= seq; q++ {
				if sl := &s.ring[q%ringLen]; !sl.resolved.Load() {
					lats = append(lats, now-sl.due.Load())
				}
			}
			for _, rg := range ranges {
				if rg.Last > uint64(s.sent.Load()) {
					fail(fmt.Errorf("%s acknowledged sequence %d, not sent yet", r.cfg.Target, rg.Last))
					return
				}
				for q := int64(rg.First); q <= int64(rg.Last); q++ {
					if sl := &s.ring[q%ringLen]; q > max(hi, seq) && !sl.resolved.Load() {
						lats = append(lats, now-sl.due.Load())
						sl.resolved.Store(true)
					}
				}
			}
			if len(lats) == 0 && seq <= hi {
				continue
			}
			c.st.mu.Lock()
			for _, l := range lats {
				us := max(l/1000, histMin)
				_ = c.st.hist.RecordValue(us)
				_ = c.st.interval.RecordValue(us)
			}
			c.st.mu.Unlock()
			c.st.acked.Add(uint64(len(lats)))
			c.st.lastAck.Store(now)
			if seq > hi {
				s.ackHigh.Store(seq)
			}
			s.resolved.Add(int64(len(lats)))
			s.signal()
		case frame.TypeBusy, frame.TypeError:
			if seq == 0 && h.Type() == frame.TypeError {
				code, reason, _ := frame.DecodeReason(payload)
				fail(fmt.Errorf("%s closed the connection: %s: %s", r.cfg.Target, code, reason))
				return
			}
			if seq <= s.ackHigh.Load() || seq > s.sent.Load() {
				fail(fmt.Errorf("%s answered %s for sequence %d, not in flight", r.cfg.Target, h.Type(), seq))
				return
			}
			sl := &s.ring[seq%ringLen]
			if h.Type() == frame.TypeBusy {
				ms, _ := frame.DecodeBusy(payload)
				c.pushResend(resend{idx: sl.idx.Load(), due: sl.due.Load(), notBefore: r.now() + int64(ms)*int64(time.Millisecond)})
				c.st.busy.Add(1)
			} else {
				code, reason, _ := frame.DecodeReason(payload)
				if code.Fatal() {
					fail(fmt.Errorf("%s closed the connection: %s: %s", r.cfg.Target, code, reason))
					return
				}
				c.st.fail(fmt.Errorf("%s rejected a packet: %s: %s", r.cfg.Target, code, reason))
			}
			sl.resolved.Store(true)
			s.resolved.Add(1)
			s.signal()
		case frame.TypePing:
			select {
			case s.pongs <- h.Seq():
			default:
			}
			s.signal()
		case frame.TypePong:
		case frame.TypeGoAway:
			s.goaway.Store(true)
			s.signal()
		default:
			fail(fmt.Errorf("%s sent unexpected %s", r.cfg.Target, h.Type()))
			return
		}
	}
}
