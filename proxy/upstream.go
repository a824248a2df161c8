package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/iov"
	"github.com/logdist/logdist/internal/spool"
)

// iovMax is Linux's IOV_MAX: the most buffers one writev(2) takes.
const iovMax = 1024

type upState uint8

const (
	upIdle      upState = iota // not connected; redial at redialAt
	upDialing                  // a goroutine is dialling
	upHandshake                // connected, HELLO sent, waiting for WELCOME
	upReady                    // forwarding
)

// noEvent is closeNow's "report nothing to the balancer".
const noEvent balancer.Event = 255

// upstream is one loop's connection to one analyzer. The protocol is the
// session's (frame/session): it numbers the DATA, keeps each record until
// the analyzer answers, checks every answer and hands the record back
// through the Resolver methods below.
type upstream struct {
	lp   *loop
	st   *analyzerState
	id   int
	gen  uint64
	name string
	addr string

	c     gnet.Conn
	state upState
	sess  session.Client[*record]
	// traceOK: the analyzer granted the trace capability; frames it gets
	// keep their trace context.
	traceOK bool
	// backlog holds packets assigned here while the window is full
	// (recAssigned); accepting bounds it to one more window.
	backlog recordQueue
	window  int
	// everReady is set once the connection has been ready; see
	// loop.stillWarming.
	everReady bool
	// retiring is set once the analyzer left the registry (reconcile.go).
	retiring bool
	retireBy int64

	// acct adds up the packets picked for this analyzer until the loop
	// publishes them to the balancer.
	acct upstreamAcct
	// inflight is what this upstream last added to st.inflight.
	inflight int64

	iov    [][]byte     // this flush's writes
	iovecs []unix.Iovec // iov.Writev's array
	dirty  bool

	openedAt int64
	// closing is why logdist closed the connection (closeNow, ended),
	// already logged; "" when it did not.
	closing string
	misses  int // heartbeats missed in a row
	// late is set while this analyzer's oldest packet has waited far
	// longer than its recent latency (checkLate): it gets no new packets,
	// and its late ones are copied to the others.
	late bool
	// latency is an average of this connection's sampled ack latencies
	// (ns), the yardstick of lateness.
	latency  int64
	redialAt int64
	backoff  time.Duration
}

func newUpstream(lp *loop, st *analyzerState) *upstream {
	return &upstream{lp: lp, st: st, id: st.id, gen: st.gen, name: st.cfg.Name, addr: st.cfg.Addr}
}

// accepting reports whether new packets may be assigned here: the
// connection is ready and its window plus an equal backlog is not full. A
// slow analyzer's overflow goes to the other analyzers, then to the loop's
// bounded queue, then to BUSY — never to an unbounded backlog.
func (u *upstream) accepting() bool {
	return u.state == upReady && !u.retiring && !u.late && !u.sess.Draining() && u.sess.Unresolved()+u.backlog.len() < 2*u.window
}

type upstreamAcct struct{ packets, messages, bytes int }

// take assigns r to this analyzer: it goes out at once if the window has
// room, else waits in the backlog.
func (u *upstream) take(r *record) {
	if u.acct.packets == 0 {
		u.lp.acctUps = append(u.lp.acctUps, u)
	}
	u.acct.packets++
	u.acct.messages += int(r.msgs)
	u.acct.bytes += len(r.buf)
	if u.backlog.len() == 0 && u.sess.CanSend() {
		u.send(r)
		return
	}
	r.move(recAssigned)
	u.backlog.push(r)
}

func (u *upstream) send(r *record) {
	lp := u.lp
	r.move(recInFlight)
	if frame.Flags(r.buf[4])&frame.FlagTrace != 0 && !u.traceOK {
		r.buf = frame.StripTrace(r.buf) // the analyzer cannot read it
	}
	if r.traced {
		lp.traceDispatch(r, u)
	}
	u.sess.Send(r, r.buf)
	r.sentAt = lp.now
	if r.stamp != 0 {
		r.dispatched = lp.preciseNow()
	}
	u.iov = append(u.iov, r.buf)
	lp.markUp(u)
}

// fill moves backlog packets into the window.
func (u *upstream) fill() {
	for u.backlog.len() > 0 && u.state == upReady && u.sess.CanSend() {
		u.send(u.backlog.pop())
	}
}

// The session hands each record back once the analyzer answered for it.

// Acked: the analyzer has the packet; its agent gets its ACK.
func (u *upstream) Acked(r *record) {
	lp := u.lp
	if a := r.agent; a != nil {
		a.accept(r.aseq)
	}
	lp.pend.forwarded++
	if r.syslog {
		lp.pend.syslogForwarded += int(r.msgs)
	}
	if r.traced {
		r.traceEnd("")
	}
	if r.agent == nil && r.aseq != 0 {
		_ = lp.s.dur.dir.Ack(r.aseq) // in the spool: delivered
	}
	if r.stamp != 0 {
		now := lp.preciseNow()
		d := now - r.dispatched
		if u.latency == 0 {
			u.latency = d
		} else {
			u.latency += (d - u.latency) / 8
		}
		u.st.m.ackLatency.Update(float64(d) / 1e9)
		u.st.ackSamples.Add(1)
		u.st.ackNanos.Add(d)
		if r.agent != nil {
			lp.m.agentAckLatency.Update(float64(now-r.stamp) / 1e9)
		}
	}
	lp.freeRecord(r)
}

// Busy: the analyzer could not take it now; it goes elsewhere after the
// retry-after. The delayed queue is FIFO: one long retry-after must not
// hold the others back for more than the ack timeout.
func (u *upstream) Busy(r *record, retry time.Duration) {
	lp := u.lp
	u.st.m.busy.Inc()
	if r.traced {
		r.traceAttemptFailed("analyzer busy")
	}
	r.notBefore = lp.now + min(int64(retry), int64(lp.conf.AckTimeout))
	r.move(recDelayed)
	lp.led.delayed.push(r)
}

// Rejected: the analyzer refused it for good; so does logdist, to its
// agent, with the analyzer's code.
func (u *upstream) Rejected(r *record, code frame.Code, reason []byte) {
	u.st.m.rejected.Inc()
	u.lp.logPacket("analyzer rejected a packet; so does logdist, to its agent", code, string(reason), r.agent, r.aseq, r.buf, nil,
		slog.String("analyzer", u.name))
	if r.traced {
		r.traceEnd("rejected by analyzer " + u.name + ": " + string(reason))
	}
	if u.lp.s.dur != nil {
		u.lp.giveUp(r, spool.ReasonRejected, code, u.name, string(reason))
		return
	}
	if a := r.agent; a != nil {
		a.resolveError(r.aseq, code, "analyzer "+u.name+" rejected the packet: "+string(reason))
	}
	u.lp.freeRecord(r)
}

func (u *upstream) flush() {
	ctrl := u.sess.Output() // HELLO's successors: PING, PONG, ERROR
	if u.c == nil {
		clear(u.iov)
		u.iov = u.iov[:0]
		return
	}
	if len(ctrl) > 0 {
		u.iov = append(u.iov, nil)
		copy(u.iov[1:], u.iov)
		u.iov[0] = ctrl
	}
	if len(u.iov) > 0 {
		bufs := u.iov
		// Clear before writing: a failed write closes the connection from
		// inside Writev, and onClose must find an empty batch.
		u.iov = u.iov[:0]
		u.write(bufs)
		clear(bufs)
	}
	if u.c != nil {
		// Every DATA sent is now with the socket or gnet's buffer for it:
		// an answer for one is no longer a lie that could free bytes
		// still waiting to be written.
		u.sess.MarkWritten()
	}
}

// write sends bufs: writev(2) takes at most IOV_MAX buffers, so in
// chunks, each straight to the socket while gnet holds nothing for it
// (iov.Writev); what the socket does not take, and any error, goes to
// gnet, which buffers the rest (and the later chunks behind it) or closes
// the connection.
func (u *upstream) write(bufs [][]byte) {
	for rest := bufs; len(rest) > 0 && u.c != nil; {
		n := min(len(rest), iovMax)
		chunk := rest[:n]
		rest = rest[n:]
		if fd := u.c.Fd(); fd >= 0 && u.c.OutboundBuffered() == 0 {
			if chunk = iov.Advance(chunk, iov.Writev(fd, chunk, &u.iovecs)); len(chunk) == 0 {
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
			u.st.setError(err.Error()) // gnet has closed the connection
			return
		}
	}
}

// publishInflight adds this upstream's change in unanswered packets to
// its analyzer's count, at every tick (the status may be a timer interval
// late; an atomic add on a line every loop writes stays off the
// per-packet path).
func (u *upstream) publishInflight() {
	if n := int64(u.sess.Unresolved() + u.backlog.len()); n != u.inflight {
		u.st.inflight.Add(n - u.inflight)
		u.inflight = n
	}
}

// report tells the balancer what happened to the connection, unless the
// analyzer was removed (its ID may be someone else's by now).
func (u *upstream) report(ev balancer.Event) {
	if !u.retiring && ev != noEvent {
		u.lp.s.set.ReportFrom(u.id, u.gen, u.lp.idx, ev)
	}
}

func (u *upstream) onTraffic(c gnet.Conn) gnet.Action {
	lp := u.lp
	action := gnet.None
	for action == gnet.None {
		hb, _ := c.Peek(frame.HeaderSize)
		if len(hb) < frame.HeaderSize {
			break
		}
		h, err := u.sess.Admit(hb)
		if err != nil {
			action = u.ended(c, err)
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
			u.sess.Fatal(frame.CodeBadChecksum, err.Error())
			action = u.ended(c, fmt.Errorf("analyzer sent a bad frame: %w", err))
			break
		}
		if h.Type() == frame.TypeAck {
			u.warm(h.Seq())
		}
		ev, err := u.sess.Handle(h, payload, lp.now)
		_, _ = c.Discard(n)
		if err != nil {
			action = u.ended(c, err)
			break
		}
		action = u.event(ev)
		if action == gnet.None && u.sess.Done() {
			action = gnet.Close // drained after GOAWAY: nothing left in flight
		}
	}
	u.fill()
	lp.requestFlush()
	return action
}

// warm loads the first cache line of every record an ACK up to seq
// settles. They were last touched when they were sent, milliseconds ago,
// and other processes have run on the core since: a tight first pass of
// independent loads lets the CPU wait for all of them at once, instead of
// one at a time behind the bookkeeping of the one before.
func (u *upstream) warm(seq uint64) {
	n := u.sess.Covers(seq)
	var touch uint64
	for i := 0; i < n; i++ {
		if r, live := u.sess.Peek(i); live && r.agent != nil {
			touch++
		}
	}
	u.lp.touch += touch
}

// event acts on what the session made of a frame.
func (u *upstream) event(ev session.Event) gnet.Action {
	lp := u.lp
	switch ev {
	case session.EvWelcome:
		if u.sess.Granted()&frame.CapZstd == 0 {
			return u.refuse("analyzer does not accept zstd payloads; logdist forwards them as they came")
		}
		if u.sess.MaxFrame() < lp.conf.Limits.MaxFrame {
			// Forwarding a frame it cannot take would make it close the
			// connection, and the packet would take down every analyzer
			// in turn: refuse the analyzer, loudly, instead.
			return u.refuse(fmt.Sprintf("analyzer accepts frames up to %d bytes, below logdist's --max-frame %d; raise its max frame or lower logdist's", u.sess.MaxFrame(), lp.conf.Limits.MaxFrame))
		}
		u.window = u.sess.Window()
		u.state = upReady
		u.everReady = true
		u.st.ready.Add(1)
		u.backoff = 0
		u.st.clearError()
		u.traceOK = u.sess.Granted()&frame.CapTrace != 0
		u.report(balancer.Connected)
		lp.s.log.Debug("connected to analyzer", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "window", u.window)
		u.fill()
		lp.drainWaiting()
	case session.EvPong:
		// Pings are queued with the precise clock (upconn.go): the
		// loop's coarse one cannot see a round trip on a LAN.
		u.st.m.heartbeatRTT.Update(float64(lp.preciseNow()-u.sess.PongOf()) / 1e9)
		u.misses = 0
		u.report(balancer.HeartbeatOK)
	case session.EvPing:
		lp.markUp(u) // the PONG
	case session.EvGoAway:
		code, why := u.sess.GoAway()
		lp.s.log.Info("analyzer is draining (GOAWAY)", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "code", code.String(), "reason", string(why))
		for u.backlog.len() > 0 {
			lp.toRedo(u.backlog.pop())
		}
	}
	return gnet.None
}

// refuse ends a handshake with an analyzer logdist cannot use.
func (u *upstream) refuse(why string) gnet.Action {
	u.sess.Fatal(frame.CodeBadHandshake, why)
	return u.ended(u.c, errors.New(why))
}

// ended closes the connection after an error: the session's ERROR, if it
// queued one (the analyzer broke the protocol), goes out first.
func (u *upstream) ended(c gnet.Conn, err error) gnet.Action {
	if out := u.sess.Output(); len(out) > 0 && c != nil {
		_, _ = c.Write(out)
	}
	var refused *session.Refused
	if errors.As(err, &refused) {
		u.report(balancer.ConnectFailed)
	}
	u.st.setError(err.Error())
	u.closing = err.Error()
	u.lp.s.log.Warn("closing analyzer connection", "analyzer", u.name, "addr", u.addr, "loop", u.lp.idx, "err", err)
	return gnet.Close
}

// Lateness: an analyzer that stops answering without closing (hung,
// SIGSTOPped, a black hole) is found down only after the heartbeats fail,
// a second or more; meanwhile every agent's window fills with packets
// waiting on it and acknowledgements stop for everyone. So a connection
// that has said nothing for lateFactor times its recent ack latency (at
// least Config.LateAfter) while packets wait on it is late: it is given no new
// packets, what waits in its backlog goes elsewhere, and each packet in
// flight on it is copied to another analyzer, whose answer resolves the
// agent's packet. Silence, not the age of the oldest packet, is the
// signal: a slow analyzer working through a backlog keeps answering
// (frame/server answers at least every 10 ms), and must keep its share.
// The cost is duplicates: a packet the late analyzer does handle in the
// end reaches two analyzers (each sees it once). The original is never
// dispatched again.
const lateFactor = 10

// lateAfter is how long this connection may stay silent with packets
// waiting before it is late.
func (u *upstream) lateAfter() int64 {
	d := max(lateFactor*u.latency, int64(u.lp.conf.LateAfter))
	return min(d, int64(u.lp.conf.AckTimeout))
}

// checkLate applies the lateness rule at now (from the loop's tick).
func (u *upstream) checkLate(now int64) {
	lp := u.lp
	if lp.conf.LateAfter <= 0 {
		u.late = false
		return
	}
	var oldest *record
	for i, n := 0, u.sess.InFlight(); i < n && oldest == nil; i++ {
		if r, live := u.sess.Peek(i); live {
			oldest = r
		}
	}
	after := u.lateAfter()
	// The session stamps what it receives with the loop's coarse clock,
	// up to a timer tick old: count the silence from a tick later, so that
	// a late connection is one that surely was silent that long.
	if oldest == nil || now-max(u.sess.LastRx(), oldest.sentAt)-int64(lp.conf.timer) < after {
		if u.late {
			lp.s.log.Info("analyzer answering again", "analyzer", u.name, "loop", lp.idx)
		}
		u.late = false
		return
	}
	if !u.late {
		u.late = true // before dispatching copies: picks skip it
		lp.s.log.Warn("analyzer silent with packets waiting: no new packets to it, those in flight copied to the others",
			"analyzer", u.name, "loop", lp.idx, "silent_ms", (now-max(u.sess.LastRx(), oldest.sentAt)-int64(lp.conf.timer))/1e6,
			"late_after_ms", after/1e6, "in_flight", u.sess.Unresolved())
	}
	for i, n := 0, u.sess.InFlight(); i < n; i++ {
		r, live := u.sess.Peek(i)
		if !live || r.hedged || r.agent == nil || r.orphan() || !r.agent.sess.Open(r.aseq) {
			continue
		}
		// Copy only to an analyzer that takes it now: a copy that would
		// wait could only go back here, a duplicate that gains nothing.
		c := lp.newRecord(r.buf, r.agent, r.aseq, r.msgs)
		if !lp.tryDispatch(c) {
			lp.freeRecord(c)
			break // nobody has room: the rest would fare no better
		}
		r.hedged = true
		lp.m.hedged.Inc()
	}
	for u.backlog.len() > 0 { // never sent: they simply go elsewhere
		lp.toRedo(u.backlog.pop())
	}
}
