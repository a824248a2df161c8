package proxy

import (
	"errors"
	"log/slog"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
)

type agentState uint8

const (
	agentHandshake agentState = iota
	agentReady
	agentClosing
)

// agentConn is logdist's side of one agent connection. Owned by its loop.
type agentConn struct {
	lp     *loop
	c      gnet.Conn
	remote string
	state  agentState

	agentID []byte
	window  uint64
	lastSeq uint64 // last DATA sequence received
	acked   uint64 // every DATA ≤ acked is resolved
	ackSent uint64 // the last ACK written
	// unresolved counts DATA received and not yet resolved: the window
	// limits it, not lastSeq-acked, because BUSY and packet ERRORs resolve
	// single packets out of order.
	unresolved uint64
	// resolved holds the states of the sequences after acked, which are
	// resolved out of order, until acked passes them.
	resolved seqRing
	// sack is set if the agent took selective ACKs (CapSack). Then the
	// unreported accepted sequences after acked (there are unreported, the
	// lowest no lower than unreportedMin) go out in SACK ranges at the next
	// flush: a packet an analyzer acknowledged is not held back by an
	// earlier one still at a slower analyzer.
	sack          bool
	unreported    int
	unreportedMin uint64
	sackQueued    bool // on the loop's sackLater list
	// unreportedSince is when the oldest of the unreported packets was
	// accepted; 0 when there are none.
	unreportedSince int64

	// queued counts this agent's packets in the loop's wait queue; when
	// the connection closes they become orphans (loop.orphansQueued).
	queued int

	out    []byte // frames waiting for the next flush (BUSY, ERROR, PONG, GOAWAY)
	dirty  bool
	goaway bool
	closed bool
	opened int64
	lastIn int64
}

func (lp *loop) openAgent(c gnet.Conn) (out []byte, action gnet.Action) {
	now := lp.clock()
	a := &agentConn{lp: lp, c: c, opened: now, lastIn: now, unreportedMin: ^uint64(0)}
	if ra := c.RemoteAddr(); ra != nil {
		a.remote = ra.String()
	}
	c.SetContext(a)
	lp.agents[a] = struct{}{}
	lp.m.agentConns.Add(1)
	if lp.s.draining.Load() {
		a.closed = true
		return frame.AppendGoAway(nil, frame.CodeShutdown, "logdist is shutting down; connect to another instance"), gnet.Close
	}
	return nil, gnet.None
}

func (a *agentConn) onClose(err error) {
	lp := a.lp
	a.closed = true
	a.state = agentClosing
	delete(lp.agents, a)
	lp.orphansQueued += a.queued
	lp.m.agentConns.Add(-1)
	if err != nil && !errors.Is(err, errClosedByUs) {
		lp.s.log.Debug("agent connection closed", "remote", a.remote, "agent", string(a.agentID), "err", err)
	}
}

var errClosedByUs = errors.New("closed by logdist")

// onTraffic consumes every complete frame gnet has buffered.
func (a *agentConn) onTraffic(c gnet.Conn) gnet.Action {
	lp := a.lp
	a.lastIn = lp.now // the loop's coarse clock: idle timeouts need no better
	action := gnet.None
	lim := &lp.s.cfg.Limits
	// About one record per KiB buffered: agents' packets are rarely smaller.
	lp.warmFree(min(c.InboundBuffered()>>10+1, 256))
	for action == gnet.None {
		hb, _ := c.Peek(frame.HeaderSize)
		if len(hb) < frame.HeaderSize {
			break
		}
		h, err := frame.ParseHeader(hb, lim)
		var reject error // a DATA header fine for framing whose packet breaks a limit
		if err != nil {
			if frame.CodeOf(err).Fatal() {
				action = a.fatal(0, err)
				break
			}
			reject, h = err, frame.Header(hb[:frame.HeaderSize])
		}
		n := h.FrameLen()
		if c.InboundBuffered() < n {
			break
		}
		fb, err := c.Peek(n)
		if err != nil {
			panic("BUG: proxy: gnet buffered a frame it cannot peek: " + err.Error())
		}
		h = frame.Header(fb[:frame.HeaderSize])
		payload := fb[frame.HeaderSize:]
		if err := h.Check(payload); err != nil {
			action = a.fatal(0, err)
			break
		}
		if reject != nil {
			action = a.rejectData(h, reject)
		} else {
			action = a.handle(h, fb, payload)
		}
		_, _ = c.Discard(n)
	}
	lp.requestFlush()
	if action == gnet.Close {
		a.closed = true
	}
	return action
}

func (a *agentConn) handle(h frame.Header, fb, payload []byte) gnet.Action {
	lp := a.lp
	switch a.state {
	case agentHandshake:
		if h.Type() != frame.TypeHello {
			return a.fatal(frame.CodeBadHandshake, errors.New("first frame is "+h.Type().String()+", not HELLO"))
		}
		var hello frame.Hello
		if err := frame.DecodeHello(payload, &hello); err != nil {
			return a.fatal(0, err)
		}
		a.agentID = append([]byte(nil), hello.AgentID...)
		w := uint64(hello.Window)
		if w > uint64(lp.s.cfg.Window) {
			w = uint64(lp.s.cfg.Window)
		}
		a.window = w
		a.sack = hello.Caps&frame.CapSack != 0
		a.state = agentReady
		a.out = frame.AppendWelcome(a.out, &frame.Welcome{
			Caps:          hello.Caps & (frame.CapZstd | frame.CapSack),
			Window:        uint32(w),
			MaxFrame:      lp.s.cfg.Limits.MaxFrame,
			IdleTimeoutMs: uint32(lp.s.cfg.IdleTimeout.Milliseconds()),
			ServerID:      []byte(lp.s.cfg.ServerID),
		})
		if lp.s.draining.Load() {
			a.goAway()
		}
		lp.markAgent(a)
		lp.m.handshakes.Inc()
		return gnet.None
	case agentClosing:
		return gnet.Close
	}
	switch h.Type() {
	case frame.TypeData:
		seq := h.Seq()
		if action := a.takeSeq(seq); action != gnet.None {
			return action
		}
		lp.pend.frames++
		lp.pend.messages += int(h.Count())
		lp.pend.bytes += len(fb)
		if a.goaway {
			a.resolveBusy(seq, 0)
			lp.m.busy.Inc()
			return gnet.None
		}
		if lp.s.cfg.Inspect == InspectFull {
			if err := lp.dec.Decode(h, payload, &lp.pkt); err != nil {
				a.resolveError(seq, frame.CodeOf(err), err.Error())
				return gnet.None
			}
		}
		lp.dispatch(lp.newRecord(fb, a, seq, h.Count()))
	case frame.TypePing:
		a.out = frame.AppendPong(a.out, h.Seq())
		lp.markAgent(a)
	case frame.TypePong:
	case frame.TypeError:
		code, reason, _ := frame.DecodeReason(payload)
		lp.s.log.Info("agent sent ERROR", "remote", a.remote, "agent", string(a.agentID), "code", code.String(), "reason", string(reason))
		return gnet.Close
	default:
		return a.fatal(frame.CodeProtocol, errors.New(h.Type().String()+" is not a frame an agent may send"))
	}
	return gnet.None
}

// takeSeq checks a DATA sequence against the order and the window and
// makes it the last one received.
func (a *agentConn) takeSeq(seq uint64) gnet.Action {
	if seq != a.lastSeq+1 {
		return a.fatal(frame.CodeBadSequence, errors.New("DATA sequence out of order"))
	}
	if a.unresolved >= a.window {
		return a.fatal(frame.CodeWindowExceeded, errors.New("more DATA unacknowledged than the granted window"))
	}
	if seq-a.acked > maxSeqGap*a.window {
		return a.fatal(frame.CodeWindowExceeded, errors.New("newest DATA too far ahead of the oldest unresolved one"))
	}
	a.lastSeq = seq
	a.unresolved++
	return gnet.None
}

// rejectData answers a DATA frame whose header breaks a per-packet limit
// (too many messages, raw size too large) with a packet ERROR: the framing
// is intact, so the connection stays.
func (a *agentConn) rejectData(h frame.Header, err error) gnet.Action {
	if a.state != agentReady {
		return a.fatal(frame.CodeBadHandshake, errors.New("first frame is DATA, not HELLO"))
	}
	if action := a.takeSeq(h.Seq()); action != gnet.None {
		return action
	}
	a.lp.m.protocolError(frame.CodeOf(err))
	a.resolveError(h.Seq(), frame.CodeOf(err), err.Error())
	return gnet.None
}

// fatal writes ERROR seq=0 with the error's code and asks gnet to close.
// code 0 takes the code from err.
func (a *agentConn) fatal(code frame.Code, err error) gnet.Action {
	lp := a.lp
	if code == 0 {
		code = frame.CodeOf(err)
	}
	lp.m.protocolError(code)
	lp.s.log.Debug("closing agent connection on protocol error", "remote", a.remote, "agent", string(a.agentID), "code", code.String(), "err", err)
	a.out = frame.AppendError(a.out, 0, code, err.Error())
	a.state = agentClosing
	a.flushNow()
	return gnet.Close
}

// Resolution states of the sequences after an agent's ack point.
const (
	seqOpen     uint8 = iota // not resolved yet
	seqReported              // resolved, and the agent told (BUSY, ERROR or SACK)
	seqAccepted              // accepted by an analyzer; a SACK agent not told yet
)

// accept resolves DATA seq as accepted by an analyzer: it is acknowledged
// at the next flush, by the cumulative ACK or, for an agent that took
// selective ACKs, by a SACK range.
func (a *agentConn) accept(seq uint64) {
	st := seqReported // the cumulative ACK will report it
	if a.sack {
		st = seqAccepted
	}
	if a.resolve(seq, st) {
		a.lp.pend.agentAcks++
	}
}

// resolve marks DATA seq as settled (state seqReported or seqAccepted) and
// advances the cumulative ack over every settled sequence at its head. It
// reports whether seq was open.
func (a *agentConn) resolve(seq uint64, state uint8) bool {
	if a.closed || seq <= a.acked || seq > a.lastSeq {
		return false
	}
	i := int(seq - a.acked - 1)
	if a.resolved.get(i) != seqOpen {
		return false // already resolved
	}
	a.resolved.set(i, state)
	a.unresolved--
	if state == seqAccepted {
		if a.unreported == 0 { // once per batch of unreported packets
			a.unreportedSince = a.lp.preciseNow()
		}
		a.unreported++
		a.unreportedMin = min(a.unreportedMin, seq)
	}
	for a.acked < a.lastSeq {
		st := a.resolved.get(0)
		if st == seqOpen {
			break
		}
		if st == seqAccepted && a.unreported > 0 {
			if a.unreported--; a.unreported == 0 { // the cumulative ACK reports it
				a.unreportedSince = 0
			}
		}
		a.resolved.pop()
		a.acked++
	}
	a.lp.markAgent(a)
	return true
}

// maxSeqGap bounds how far the newest DATA may run ahead of the oldest
// unresolved one, in windows: the resolved-marks ring grows with the gap.
const maxSeqGap = 2 * frame.SeqGapWindows

// seqRing is a growable ring of resolution states for the sequences after
// an agent's ack point: get(i) is the state of sequence acked+1+i.
type seqRing struct {
	buf  []uint8
	head int
}

func (r *seqRing) get(i int) uint8 {
	if i >= len(r.buf) {
		return seqOpen
	}
	return r.buf[(r.head+i)&(len(r.buf)-1)]
}

func (r *seqRing) set(i int, st uint8) {
	if i >= len(r.buf) {
		n := max(16, len(r.buf))
		for n <= i {
			n *= 2
		}
		nb := make([]uint8, n)
		for j := range r.buf {
			nb[j] = r.buf[(r.head+j)&(len(r.buf)-1)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+i)&(len(r.buf)-1)] = st
}

// pop clears the state of the oldest sequence and moves past it.
func (r *seqRing) pop() {
	r.buf[r.head] = seqOpen
	r.head = (r.head + 1) & (len(r.buf) - 1)
}

func (a *agentConn) resolveBusy(seq uint64, retryMs uint32) {
	if a.closed {
		return
	}
	a.out = frame.AppendBusy(a.out, seq, retryMs)
	a.resolve(seq, seqReported)
}

func (a *agentConn) resolveError(seq uint64, code frame.Code, reason string) {
	if a.closed {
		return
	}
	a.lp.m.rejected.Inc()
	a.out = frame.AppendError(a.out, seq, code, reason)
	a.resolve(seq, seqReported)
}

func (a *agentConn) goAway() {
	if a.goaway || a.closed || a.state != agentReady {
		return
	}
	a.goaway = true
	a.out = frame.AppendGoAway(a.out, frame.CodeShutdown, "logdist is draining; send new packets to another instance")
	a.lp.markAgent(a)
}

// flush writes the pending frames: SACKs if accepted packets beyond the
// ack point have waited the SACK delay (each SACK carries the cumulative
// point too), or else a cumulative ACK if the point moved; both after any
// BUSY or ERROR they cover, as the protocol requires.
func (a *agentConn) flush() {
	if a.closed {
		a.out = a.out[:0]
		return
	}
	switch {
	case a.unreported > 0 && a.sackDue():
		a.appendSacks()
		a.ackSent = a.acked
		a.unreportedSince = 0
	case a.acked > a.ackSent:
		a.out = frame.AppendAck(a.out, a.acked)
		a.ackSent = a.acked
		if a.unreported > 0 {
			a.sackLater()
		}
	case a.unreported > 0:
		a.sackLater()
	}
	a.flushNow()
}

// sackDue reports whether the oldest unreported accepted packet has waited
// the SACK delay. Most packets do not: the ack point passes them first,
// and the ACK that says so costs the agent nothing extra. Those it does
// not pass in time are behind a packet held at a slower analyzer; whether
// the point is stuck or still creeping forward, they are reported then,
// at most once per delay per agent, so an agent's acknowledgements are
// never held back more than the delay by another analyzer's packets.
func (a *agentConn) sackDue() bool {
	d := int64(a.lp.s.cfg.SackDelay)
	return d == 0 || a.lp.preciseNow()-a.unreportedSince >= d
}

// sackLater has the next flush reconsider the agent's unreported packets.
func (a *agentConn) sackLater() {
	if !a.sackQueued {
		a.sackQueued = true
		a.lp.sackLater = append(a.lp.sackLater, a)
	}
}

// appendSacks reports every accepted sequence after the ack point in SACK
// frames, each also carrying the cumulative ACK.
func (a *agentConn) appendSacks() {
	ranges := a.lp.sackRanges[:0]
	n := int(a.lastSeq - a.acked)
	i := 0
	if a.unreportedMin > a.acked {
		i = int(a.unreportedMin - a.acked - 1)
	}
	for ; i < n && a.unreported > 0; i++ {
		if a.resolved.get(i) != seqAccepted {
			continue
		}
		a.resolved.set(i, seqReported)
		a.unreported--
		seq := a.acked + 1 + uint64(i)
		if k := len(ranges); k > 0 && ranges[k-1].Last+1 == seq {
			ranges[k-1].Last = seq
			continue
		}
		if len(ranges) == frame.MaxSackRanges {
			a.out = frame.AppendSack(a.out, a.acked, ranges)
			ranges = ranges[:0]
		}
		ranges = append(ranges, frame.SeqRange{First: seq, Last: seq})
	}
	if a.unreported != 0 {
		// A bookkeeping bug; the cumulative ACK still covers the packets
		// later, so say so loudly and carry on rather than stop the loop.
		a.lp.s.log.Error("BUG: proxy: unreported accepted packets not found after the ack point", "agent", string(a.agentID), "missing", a.unreported)
		a.unreported = 0
	}
	a.unreportedMin = ^uint64(0)
	a.out = frame.AppendSack(a.out, a.acked, ranges)
	a.lp.sackRanges = ranges[:0]
}

func (a *agentConn) flushNow() {
	if len(a.out) == 0 || a.closed {
		return
	}
	out := a.out
	a.out = a.out[:0]
	if _, err := a.c.Write(out); err != nil {
		a.lp.s.log.Debug("cannot write to agent", "remote", a.remote, "err", err)
		return
	}
	if a.c.OutboundBuffered() > maxAgentOutbound {
		// It does not read what we answer (gnet's outbound buffer has no
		// bound of its own): an agent that streams PINGs, or packets that
		// are rejected one by one, would grow it for ever.
		a.lp.m.protocolError(frame.CodeOverloaded)
		a.lp.s.log.Warn("closing agent connection: it does not read its answers", "remote", a.remote, "agent", string(a.agentID), "unread_bytes", a.c.OutboundBuffered())
		a.closed = true
		_ = a.c.Close()
	}
}

// maxAgentOutbound bounds the answers (ACK, SACK, BUSY, ERROR, PONG) an
// agent may leave unread. One that reads them holds a few KiB at most.
const maxAgentOutbound = 1 << 20

// expireAgents closes connections past the handshake or idle timeout.
func (lp *loop) expireAgents(now int64) {
	hs, idle := int64(lp.s.cfg.HandshakeTimeout), int64(lp.s.cfg.IdleTimeout)
	for a := range lp.agents {
		var code frame.Code
		switch {
		case a.state == agentHandshake && now-a.opened > hs:
			code = frame.CodeHandshakeTimeout
		case a.state == agentReady && now-a.lastIn > idle:
			code = frame.CodeIdleTimeout
		default:
			continue
		}
		lp.m.protocolError(code)
		lp.s.log.LogAttrs(lp.s.ctx, slog.LevelDebug, "closing agent connection", slog.String("remote", a.remote), slog.String("reason", code.String()))
		a.out = frame.AppendError(a.out, 0, code, "no frame received in time")
		a.flushNow()
		a.closed = true
		_ = a.c.Close()
	}
}
