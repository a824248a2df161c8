package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
)

// maxPingsOut bounds the PINGs awaiting a PONG on one connection.
const maxPingsOut = 16

// iovMax is Linux's IOV_MAX: the most buffers one writev(2) takes.
const iovMax = 1024

type upState uint8

const (
	upIdle      upState = iota // not connected; redial at redialAt
	upDialing                  // a goroutine is dialling
	upHandshake                // connected, HELLO sent, waiting for WELCOME
	upReady                    // forwarding
)

// upstream is one loop's connection to one analyzer.
type upstream struct {
	lp   *loop
	id   int
	name string
	addr string

	c     gnet.Conn
	state upState
	// ackedSeq is the analyzer's cumulative ACK; inflight holds sequences
	// ackedSeq+1 … ackedSeq+inflight.len(), a nil slot being a packet
	// already settled by BUSY or ERROR.
	ackedSeq uint64
	nextSeq  uint64
	// writtenSeq is the last sequence handed to the socket (or to gnet's
	// buffer for it): an analyzer cannot answer beyond it. Records after
	// it are still in iov, and settling one would free memory the next
	// flush writes.
	writtenSeq uint64
	inflight   recordQueue
	backlog    recordQueue // assigned here, waiting for the window
	window     int
	goaway     bool
	// everReady is set once the connection has been ready; see
	// loop.stillWarming.
	everReady bool

	// acct adds up the packets picked for this analyzer until the loop
	// publishes them to the balancer.
	acct upstreamAcct

	iov    [][]byte     // this flush's writes
	iovecs []unix.Iovec // writevDirect's iovec array
	ctrl   []byte       // control frames for this flush (HELLO, PING, PONG)
	dirty  bool

	openedAt int64
	// Heartbeats: a PING goes out every HeartbeatInterval whether or not
	// the last was answered, so a hung analyzer is down after
	// (Fall-1)×interval + timeout. pingSent is the last nonce sent,
	// pingDone the last answered or counted as missed; pingTimes holds
	// the send times of the nonces in between.
	pingSent  uint64
	pingDone  uint64
	pingLast  int64
	pingTimes [maxPingsOut]int64
	misses    int
	// lastRx is the coarse time of the last frame from the analyzer. A
	// PING whose PONG is late is not counted as missed if other frames
	// (ACKs) arrived after it: the analyzer is busy, not dead — an
	// analyzer answers PINGs in order, behind the DATA it is processing.
	lastRx    int64
	redialAt  int64
	backoff   time.Duration
	lastError string
}

func newUpstream(lp *loop, id int, name, addr string) *upstream {
	return &upstream{lp: lp, id: id, name: name, addr: addr}
}

// accepting reports whether new packets may be assigned here: the
// connection is ready and its window plus an equal backlog is not full. A
// slow analyzer's overflow goes to the other analyzers, then to the loop's
// bounded queue, then to BUSY — never to an unbounded backlog.
func (u *upstream) accepting() bool {
	return u.state == upReady && !u.goaway && u.inflight.len()+u.backlog.len() < 2*u.window
}

type upstreamAcct struct{ packets, messages, bytes int }

// account counts r as picked for this analyzer (published by loop.publish).
func (u *upstream) account(r *record) {
	if u.acct.packets == 0 {
		u.lp.acctUps = append(u.lp.acctUps, u)
	}
	u.acct.packets++
	u.acct.messages += int(r.msgs)
	u.acct.bytes += len(r.buf)
}

func (u *upstream) enqueue(r *record) {
	if u.state == upReady && u.inflight.len() < u.window && u.backlog.len() == 0 {
		u.send(r)
		return
	}
	u.backlog.push(r)
}

func (u *upstream) send(r *record) {
	u.nextSeq++
	r.useq = u.nextSeq
	frame.Header(r.buf[:frame.HeaderSize]).SetSeq(r.useq)
	r.sentAt = u.lp.now
	r.stamp = 0
	if u.lp.m.sampleNow() {
		r.stamp = u.lp.preciseNow()
	}
	u.inflight.push(r)
	u.iov = append(u.iov, r.buf)
	u.lp.markUp(u)
}

// fill moves backlog packets into the window.
func (u *upstream) fill() {
	for u.state == upReady && !u.goaway && u.backlog.len() > 0 && u.inflight.len() < u.window {
		u.send(u.backlog.pop())
	}
}

func (u *upstream) flush() {
	if u.c == nil {
		u.iov, u.ctrl = u.iov[:0], u.ctrl[:0]
		return
	}
	if len(u.ctrl) > 0 {
		u.iov = append(u.iov, nil)
		copy(u.iov[1:], u.iov)
		u.iov[0] = u.ctrl
	}
	if len(u.iov) == 0 {
		return
	}
	iov := u.iov
	// Clear before writing: a failed write closes the connection from
	// inside Writev, and onClose must find an empty batch.
	u.iov = u.iov[:0]
	u.ctrl = u.ctrl[:0]
	// writev(2) takes at most IOV_MAX (1024) buffers: write in chunks.
	// Each goes straight to the socket while gnet holds nothing for it
	// (writevDirect); what the socket does not take, and any error, goes
	// to gnet, which buffers the rest (and the later chunks behind it) or
	// closes the connection.
	for rest := iov; len(rest) > 0 && u.c != nil; {
		n := min(len(rest), iovMax)
		chunk := rest[:n]
		rest = rest[n:]
		if fd := u.c.Fd(); fd >= 0 && u.c.OutboundBuffered() == 0 {
			if chunk = advance(chunk, writevDirect(fd, chunk, &u.iovecs)); len(chunk) == 0 {
				continue
			}
		}
		var err error
		if len(chunk) == 1 {
			_, err = u.c.Write(chunk[0])
		} else {
			_, err = u.c.Writev(chunk)
		}
		if err != nil {
			u.lastError = err.Error() // gnet has closed the connection
			break
		}
	}
	if u.c != nil {
		u.writtenSeq = u.nextSeq
	}
	clear(iov)
}

// dial connects to the analyzer from a goroutine and enrolls the socket on
// this loop; the loop learns the outcome in onOpen or dialFailed.
func (u *upstream) dial() {
	if u.state != upIdle {
		return
	}
	u.state = upDialing
	s, lp := u.lp.s, u.lp
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		d := net.Dialer{Timeout: s.cfg.DialTimeout}
		conn, err := d.DialContext(s.ctx, "tcp", u.addr)
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			ch, err = lp.el.Enroll(gnet.NewContext(s.ctx, u), conn)
			if err == nil {
				// A loop that is shutting down never answers: do not wait
				// for it past the server's own shutdown.
				select {
				case res := <-ch:
					err = res.Err
				case <-s.ctx.Done():
					err = s.ctx.Err()
				}
			} else {
				_ = conn.Close()
			}
		}
		if err != nil {
			lp.exec(func(context.Context) error { u.dialFailed(err); return nil })
		}
	}()
}

func (u *upstream) dialFailed(err error) {
	lp := u.lp
	lp.clock()
	u.state = upIdle
	u.lastError = err.Error()
	lp.m.dialFailures.Inc()
	lp.s.set.Report(u.id, balancer.ConnectFailed)
	u.scheduleRedial()
	lp.s.log.Debug("cannot connect to analyzer", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "err", err, "retry_in", time.Duration(u.redialAt-lp.now).Round(time.Millisecond))
}

func (u *upstream) scheduleRedial() {
	cfg := &u.lp.s.cfg
	if u.backoff == 0 {
		u.backoff = cfg.RedialMin
	} else {
		u.backoff *= 2
		if u.backoff > cfg.RedialMax {
			u.backoff = cfg.RedialMax
		}
	}
	// Full jitter over the upper half: loops and instances do not redial
	// in lock step.
	d := u.backoff/2 + rand.N(u.backoff/2+1)
	u.redialAt = u.lp.now + int64(d)
}

func (u *upstream) onOpen(c gnet.Conn) []byte {
	lp := u.lp
	lp.clock()
	u.c = c
	u.state = upHandshake
	u.openedAt = lp.now
	u.ackedSeq, u.nextSeq, u.writtenSeq, u.goaway, u.misses = 0, 0, 0, false, 0
	u.pingDone, u.pingLast = u.pingSent, lp.now
	return frame.AppendHello(nil, &frame.Hello{
		Caps:     frame.CapZstd,
		Window:   lp.s.cfg.UpstreamWindow,
		MaxFrame: 1 << 16,
		AgentID:  []byte(fmt.Sprintf("%s/loop%d", lp.s.cfg.ServerID, lp.idx)),
		Software: []byte("logdist"),
	})
}

var upstreamLimits = func() frame.Limits {
	l := frame.DefaultLimits()
	return l
}()

func (u *upstream) onTraffic(c gnet.Conn) gnet.Action {
	lp := u.lp
	u.lastRx = lp.now
	action := gnet.None
	for action == gnet.None {
		hb, _ := c.Peek(frame.HeaderSize)
		if len(hb) < frame.HeaderSize {
			break
		}
		h, err := frame.ParseHeader(hb, &upstreamLimits)
		if err != nil {
			action = u.fail(fmt.Errorf("analyzer sent a bad frame: %w", err))
			break
		}
		n := h.FrameLen()
		if c.InboundBuffered() < n {
			break
		}
		fb, _ := c.Peek(n)
		h = frame.Header(fb[:frame.HeaderSize])
		payload := fb[frame.HeaderSize:]
		if err := h.Check(payload); err != nil {
			action = u.fail(fmt.Errorf("analyzer sent a bad frame: %w", err))
			break
		}
		action = u.handle(h, payload)
		_, _ = c.Discard(n)
	}
	u.fill()
	lp.requestFlush()
	return action
}

func (u *upstream) handle(h frame.Header, payload []byte) gnet.Action {
	lp := u.lp
	switch h.Type() {
	case frame.TypeWelcome:
		if u.state != upHandshake {
			return u.fail(errors.New("analyzer sent WELCOME twice"))
		}
		var w frame.Welcome
		if err := frame.DecodeWelcome(payload, &w); err != nil {
			return u.fail(fmt.Errorf("analyzer sent a bad WELCOME: %w", err))
		}
		if w.Caps&frame.CapZstd == 0 {
			return u.fail(errors.New("analyzer does not accept zstd payloads; logdist forwards them as they came"))
		}
		if w.MaxFrame < lp.s.cfg.Limits.MaxFrame {
			// Forwarding a frame it cannot take would make it close the
			// connection, and the packet would take down every analyzer
			// in turn: refuse the analyzer, loudly, instead.
			return u.fail(fmt.Errorf("analyzer accepts frames up to %d bytes, below logdist's --max-frame %d; raise its max frame or lower logdist's", w.MaxFrame, lp.s.cfg.Limits.MaxFrame))
		}
		u.window = int(min(w.Window, lp.s.cfg.UpstreamWindow))
		u.state = upReady
		u.everReady = true
		lp.s.readyConns[u.id].Add(1)
		u.backoff = 0
		u.lastError = ""
		lp.s.set.Report(u.id, balancer.Connected)
		lp.s.log.Debug("connected to analyzer", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "window", u.window)
		u.fill()
		lp.drainWaiting()
	case frame.TypeAck:
		if h.Seq() > u.writtenSeq {
			return u.fail(fmt.Errorf("analyzer acknowledged sequence %d, beyond the %d sent", h.Seq(), u.writtenSeq))
		}
		u.ack(h.Seq())
		if u.skipSettled() {
			return gnet.Close // drained after GOAWAY (see skipSettled)
		}
	case frame.TypePong:
		if n := h.Seq(); n > u.pingDone && n <= u.pingSent {
			lp.m.heartbeatRTT.Update(float64(lp.clock()-u.pingTimes[n%maxPingsOut]) / 1e9)
			u.pingDone = n
			u.misses = 0
			lp.s.set.Report(u.id, balancer.HeartbeatOK)
		}
	case frame.TypePing:
		u.ctrl = frame.AppendPong(u.ctrl, h.Seq())
		lp.markUp(u)
	case frame.TypeBusy:
		if h.Seq() > u.writtenSeq {
			return u.fail(fmt.Errorf("analyzer answered BUSY to sequence %d, beyond the %d sent", h.Seq(), u.writtenSeq))
		}
		ms, _ := frame.DecodeBusy(payload)
		if r := u.settle(h.Seq()); r != nil {
			lp.m.upstreamBusy.Inc()
			// The delayed queue is FIFO: one long retry-after must not hold
			// the others back for more than the ack timeout.
			r.notBefore = lp.now + min(int64(ms)*int64(time.Millisecond), int64(lp.s.cfg.AckTimeout))
			lp.delayed.push(r)
		}
		if u.skipSettled() {
			return gnet.Close
		}
	case frame.TypeError:
		code, reason, _ := frame.DecodeReason(payload)
		if h.Seq() == 0 || code.Fatal() {
			// A connection code is fatal whatever the sequence (PROTOCOL.md
			// 9): what was in flight is re-dispatched, not rejected.
			return u.fail(fmt.Errorf("analyzer closed the connection: %s: %s", code, reason))
		}
		if h.Seq() > u.writtenSeq {
			return u.fail(fmt.Errorf("analyzer rejected sequence %d, beyond the %d sent", h.Seq(), u.writtenSeq))
		}
		if r := u.settle(h.Seq()); r != nil {
			lp.m.upstreamRejected.Inc()
			if a := r.agent; a != nil {
				a.resolveError(r.aseq, code, "analyzer "+u.name+" rejected the packet: "+string(reason))
			}
			lp.freeRecord(r)
		}
		if u.skipSettled() {
			return gnet.Close
		}
	case frame.TypeGoAway:
		u.goaway = true
		lp.s.log.Info("analyzer is draining (GOAWAY)", "analyzer", u.name, "addr", u.addr, "loop", lp.idx)
		for u.backlog.len() > 0 {
			lp.redo = append(lp.redo, u.backlog.pop())
		}
		if u.skipSettled() {
			return gnet.Close
		}
	default:
		return u.fail(fmt.Errorf("analyzer sent %s, which only agents send", h.Type()))
	}
	return gnet.None
}

// ack settles every in-flight packet up to seq and acks them to agents.
func (u *upstream) ack(seq uint64) {
	lp := u.lp
	// The records were last touched when they were sent, milliseconds ago,
	// and other processes have run on the core since: they are out of its
	// caches. A tight first pass of independent loads lets the CPU wait for
	// all their first cache lines (record's layout) at once, instead of one
	// at a time, each behind the bookkeeping of the one before.
	n := min(seq-u.ackedSeq, uint64(u.inflight.len()))
	var touch uint64
	for i := 0; i < int(n); i++ {
		if r := u.inflight.at(i); r != nil && r.agent != nil {
			touch++
		}
	}
	lp.touch += touch
	for u.ackedSeq < seq && u.inflight.len() > 0 {
		r := u.inflight.pop()
		u.ackedSeq++
		if r == nil {
			continue
		}
		if a := r.agent; a != nil {
			a.accept(r.aseq)
		}
		lp.pend.forwarded++
		if r.syslog {
			lp.pend.syslogForwarded += int(r.msgs)
		}
		if r.stamp != 0 {
			lp.m.ackLatency.Update(float64(lp.preciseNow()-r.stamp) / 1e9)
		}
		lp.freeRecord(r)
	}
}

// skipSettled moves the window past settled (nil) slots at its head — an
// analyzer need not ACK a sequence it answered with BUSY or ERROR — and
// reports whether a draining connection has nothing left in flight.
func (u *upstream) skipSettled() bool {
	for u.inflight.len() > 0 && u.inflight.peek() == nil {
		u.inflight.pop()
		u.ackedSeq++
	}
	return u.goaway && u.inflight.len() == 0
}

// settle takes the in-flight packet with sequence seq out of the window
// (BUSY or packet ERROR) and returns it, or nil if there is none.
func (u *upstream) settle(seq uint64) *record {
	if seq <= u.ackedSeq {
		return nil
	}
	i := int(seq - u.ackedSeq - 1)
	if i >= u.inflight.len() {
		return nil
	}
	r := u.inflight.at(i)
	u.inflight.set(i, nil)
	return r
}

// fail logs why the connection is being closed and closes it.
func (u *upstream) fail(err error) gnet.Action {
	u.lastError = err.Error()
	u.lp.s.log.Warn("closing analyzer connection", "analyzer", u.name, "addr", u.addr, "loop", u.lp.idx, "err", err)
	return gnet.Close
}

// onClose hands every packet the connection held to re-dispatch and
// schedules a redial.
func (u *upstream) onClose(err error) {
	lp := u.lp
	lp.clock()
	wasReady := u.state == upReady
	u.c = nil
	u.state = upIdle
	u.iov, u.ctrl = u.iov[:0], u.ctrl[:0]
	for u.inflight.len() > 0 {
		if r := u.inflight.pop(); r != nil {
			lp.redo = append(lp.redo, r)
		}
	}
	for u.backlog.len() > 0 {
		lp.redo = append(lp.redo, u.backlog.pop())
	}
	if err != nil {
		u.lastError = err.Error()
	}
	if wasReady {
		lp.s.readyConns[u.id].Add(-1)
		lp.m.upstreamLost.Inc()
		lvl := slog.LevelWarn
		if lp.s.ctx.Err() != nil {
			lvl = slog.LevelDebug // shutting down: expected
		}
		lp.s.log.Log(lp.s.ctx, lvl, "lost analyzer connection", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "err", err, "redispatching", len(lp.redo))
	}
	if (!lp.s.draining.Load() && !u.goaway) || len(lp.redo) > 0 {
		lp.s.set.Report(u.id, balancer.WriteError)
	}
	u.scheduleRedial()
	// Re-dispatch now, not at the next tick: packets should not wait.
	lp.flush()
}

// tick runs heartbeats, ack timeouts and redials.
func (u *upstream) tick(now int64) {
	lp := u.lp
	cfg := &lp.s.cfg
	switch u.state {
	case upIdle:
		if now >= u.redialAt && lp.s.ctx.Err() == nil && lp.s.set.AllowProbe(u.id) {
			u.dial()
		}
	case upHandshake:
		if now-u.openedAt > int64(cfg.DialTimeout+cfg.HeartbeatTimeout) {
			u.closeNow(balancer.ConnectFailed, "no WELCOME from analyzer in time")
		}
	case upReady:
		for u.pingDone < u.pingSent && now-u.pingTimes[(u.pingDone+1)%maxPingsOut] > int64(cfg.HeartbeatTimeout) {
			u.pingDone++
			if u.lastRx >= u.pingTimes[u.pingDone%maxPingsOut] {
				continue // late behind data, but the analyzer is talking
			}
			u.misses++
			lp.m.heartbeatMissed.Inc()
			lp.s.set.Report(u.id, balancer.HeartbeatMissed)
			if u.misses >= cfg.Balancer.Fall {
				u.closeNow(balancer.HeartbeatMissed, fmt.Sprintf("%d heartbeats missed in a row", u.misses))
				return
			}
		}
		if now-u.pingLast >= int64(cfg.HeartbeatInterval) && u.pingSent-u.pingDone < maxPingsOut {
			u.pingSent++
			u.pingTimes[u.pingSent%maxPingsOut] = now
			u.pingLast = now
			u.ctrl = frame.AppendPing(u.ctrl, u.pingSent)
			lp.markUp(u)
		}
		if u.inflight.len() > 0 {
			// The oldest unsettled packet is the first non-nil slot.
			for i := 0; i < u.inflight.len(); i++ {
				if r := u.inflight.at(i); r != nil {
					if now-r.sentAt > int64(cfg.AckTimeout) {
						lp.m.ackTimeouts.Inc()
						u.closeNow(balancer.AckTimeout, "packet not acknowledged within the ack timeout")
					}
					break
				}
			}
		}
	}
}

func (u *upstream) closeNow(ev balancer.Event, why string) {
	u.lp.s.set.Report(u.id, ev)
	u.lastError = why
	u.lp.s.log.Warn("closing analyzer connection", "analyzer", u.name, "addr", u.addr, "loop", u.lp.idx, "reason", why)
	if u.c != nil {
		_ = u.lp.el.Close(u.c)
	}
}
