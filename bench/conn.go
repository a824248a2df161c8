package bench

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
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
	item
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
// time it will be (-1: no more new packets). The packet's id is its place
// in the run's schedule, over all connections, from the run's id base.
func (c *agentConn) nextNew(now int64) (it item, ok bool, next int64) {
	r := c.r
	if r.stopped() || (c.quota >= 0 && c.k >= c.quota) {
		return it, false, -1
	}
	n := c.k*int64(len(r.conns)) + int64(c.id)
	due := now
	if r.sched != nil {
		t, more := r.sched.TimeOf(float64(n))
		if !more {
			return it, false, -1
		}
		if int64(t) > now {
			return it, false, int64(t)
		}
		due = int64(t)
	} else if r.end > 0 && now >= r.end { // as fast as the window allows, until the end
		return it, false, -1
	}
	it = item{idx: int32(c.k % int64(len(c.pool.frames))), due: due, id: r.idBase + uint64(n)}
	c.k++
	return it, true, 0
}

// moreNew reports whether the schedule or quota still has packets.
func (c *agentConn) moreNew() bool {
	_, ok, next := c.peekNew()
	return ok || next >= 0
}

func (c *agentConn) peekNew() (item, bool, int64) {
	k := c.k
	it, ok, next := c.nextNew(c.r.now())
	c.k = k
	return it, ok, next
}

// run sends this connection's share, reconnecting after failures, until
// there is nothing left to send and resolve, or the run is cut short.
func (c *agentConn) run() {
	backoff := 50 * time.Millisecond
	targets := strings.Split(c.r.cfg.Target, ",")
	for dials := c.id; ; dials++ {
		if !c.moreNew() && c.pendingResends() == 0 {
			return
		}
		if c.r.hardStopped() {
			return
		}
		l := &link{c: c}
		target := strings.TrimSpace(targets[dials%len(targets)])
		nc, sess, err := dialHandshake(c.r.ctx, target, c.r.cfg.TLS, &c.r.sess, l, c.r.cfg.DialTimeout)
		if err == nil {
			err = c.r.checkWelcome(sess)
			if err != nil {
				nc.Close()
			}
		}
		if err != nil {
			if errors.Is(err, errPermanent) {
				c.r.abort(err)
				return
			}
			if errors.Is(err, errGoingAway) {
				// A draining instance: not a failure, the next target
				// at once (several) or after the backoff (one).
				if len(targets) > 1 {
					continue
				}
			} else {
				c.st.fail(err)
			}
			select {
			case <-time.After(backoff):
			case <-c.r.hardStop:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if l.run(nc, sess) {
			return
		}
		c.st.reconnects.Add(1)
	}
}

// link is one connection's life: a writer (the connection's goroutine)
// and a reader, sharing the protocol session (frame/session) under mu.
// The session numbers the DATA, keeps each one's packet index and due
// time until it is resolved, and checks every answer.
type link struct {
	c    *agentConn
	nc   net.Conn
	idle time.Duration // PING when nothing was written for this long

	mu   sync.Mutex
	sess *session.Client[item]
	// What the session resolved during one Handle, for the reader.
	now  int64
	lats []int64

	closing atomic.Bool
	wake    chan struct{} // reader → writer: something was resolved or needs an answer
	failed  chan struct{} // closed by the reader when the connection broke
	readEnd chan struct{}
}

// The session hands resolved packets to the link, under mu.

func (l *link) Acked(it item) { l.lats = append(l.lats, l.now-it.due) }

func (l *link) Busy(it item, retry time.Duration) {
	l.c.pushResend(resend{item: it, notBefore: l.now + int64(retry)})
	l.c.st.busy.Add(1)
}

func (l *link) Rejected(_ item, code frame.Code, reason []byte) {
	l.c.st.fail(fmt.Errorf("%s rejected a packet: %s: %s", l.c.r.cfg.Target, code, reason))
}

// run serves one connection; it reports whether this connection's work is
// complete (false: reconnect and go on).
func (l *link) run(nc net.Conn, sess *session.Client[item]) bool {
	c := l.c
	l.nc, l.sess = nc, sess
	l.wake = make(chan struct{}, 1)
	l.failed = make(chan struct{})
	l.readEnd = make(chan struct{})
	if idle := sess.IdleTimeout(); idle > 0 {
		l.idle = idle / 3
	}
	go l.readLoop()
	done := l.writeLoop()
	l.closing.Store(true)
	nc.Close()
	<-l.readEnd
	// Whatever the connection left unresolved is sent again on the next
	// one (at-least-once), counted from when it was first due.
	now := c.r.now()
	l.mu.Lock()
	l.sess.TakeUnresolved(func(it item) { c.pushResend(resend{item: it, notBefore: now}) })
	l.sess.Close()
	l.mu.Unlock()
	return done
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes DATA as the schedule, the session's window and the
// resends allow, many frames per system call. It returns true when all of
// the connection's work is sent and resolved.
func (l *link) writeLoop() bool {
	c, r := l.c, l.c.r
	buf := make([]byte, 0, 64<<10)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastWrite := r.now()
	for {
		now := r.now()
		next := int64(-1) // when a packet becomes due (-1: none scheduled)
		l.mu.Lock()
		for l.sess.CanSend() && len(buf) < 64<<10 {
			var (
				it item
				ok bool
			)
			if x, got, rn := c.takeResend(now); got {
				it, ok = x.item, true // a resend keeps its packet id
			} else {
				var nn int64
				it, ok, nn = c.nextNew(now)
				next = rn
				if nn >= 0 && (next < 0 || nn < next) {
					next = nn
				}
			}
			if !ok {
				break
			}
			start := len(buf)
			buf = append(buf, c.pool.frames[it.idx]...)
			f := buf[start:]
			c.pool.stamp(f, it.idx, it.id)
			l.sess.Send(it, f)
			c.st.sent.Add(1)
			c.st.bytes.Add(uint64(len(f)))
		}
		l.sess.MarkWritten()
		if l.idle > 0 && len(buf) == 0 && now-lastWrite >= int64(l.idle) && l.sess.PingsOut() == 0 {
			l.sess.AppendPing(now)
		}
		buf = append(buf, l.sess.Output()...) // PONGs, a PING
		canSend, unresolved, goaway := l.sess.CanSend(), l.sess.Unresolved(), l.sess.Draining()
		l.mu.Unlock()
		if len(buf) > 0 {
			if _, err := l.nc.Write(buf); err != nil {
				if !l.closing.Load() {
					c.st.fail(fmt.Errorf("cannot write to %s: %w", r.cfg.Target, err))
				}
				return false
			}
			buf = buf[:0]
			lastWrite = r.now()
			continue
		}
		if unresolved == 0 {
			if goaway {
				return false // reconnect for the rest
			}
			if !c.moreNew() && c.pendingResends() == 0 {
				return true
			}
		}
		if !canSend {
			next = -1 // the window is full: the reader wakes us
		}
		if l.idle > 0 {
			if ka := lastWrite + int64(l.idle); next < 0 || ka < next {
				next = ka
			}
		}
		var tc <-chan time.Time
		if next >= 0 {
			timer.Reset(time.Duration(next - r.now()))
			tc = timer.C
		}
		select {
		case <-l.wake:
		case <-tc:
		case <-l.failed:
			return false
		case <-r.hardStop:
			return false
		}
	}
}

// readLoop hands the server's frames to the session, which resolves the
// DATA they answer, and records the latency of every packet accepted.
func (l *link) readLoop() {
	defer close(l.readEnd)
	c, r := l.c, l.c.r
	fr := frame.NewReader(l.nc, &r.cfg.Limits)
	fr.SetAdmit(func(h frame.Header) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sess.CheckHeader(h)
	})
	fail := func(err error) {
		l.mu.Lock()
		away := l.sess.Draining() // the server said it goes: its close is no failure
		l.mu.Unlock()
		if !l.closing.Load() && !away {
			c.st.fail(err)
		}
		// A violation's ERROR, if the session queued one.
		l.mu.Lock()
		out := append([]byte(nil), l.sess.Output()...)
		l.mu.Unlock()
		if len(out) > 0 {
			l.nc.Write(out)
		}
		close(l.failed)
	}
	for {
		h, payload, err := fr.Next()
		if err != nil {
			fail(fmt.Errorf("connection to %s: %w", r.cfg.Target, err))
			return
		}
		l.mu.Lock()
		l.now = r.now()
		l.lats = l.lats[:0]
		ev, err := l.sess.Handle(h, payload, l.now)
		now, lats, hasOut := l.now, l.lats, l.sess.HasOutput()
		l.mu.Unlock()
		if err != nil {
			fail(fmt.Errorf("%s: %w", r.cfg.Target, err))
			return
		}
		// lats is the reader's own: only Handle, on this goroutine, adds to it.
		if len(lats) > 0 {
			c.st.mu.Lock()
			for _, lat := range lats {
				us := max(lat/1000, histMin)
				_ = c.st.hist.RecordValue(us)
				_ = c.st.interval.RecordValue(us)
			}
			c.st.mu.Unlock()
			c.st.acked.Add(uint64(len(lats)))
			c.st.lastAck.Store(now)
		}
		if ev == session.EvResolved || ev == session.EvGoAway || hasOut {
			l.signal()
		}
	}
}
