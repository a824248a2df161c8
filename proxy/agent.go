package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/ratelimit"
	"github.com/logdist/logdist/internal/redact"
)

// agentConn is logdist's side of one agent connection, owned by its loop.
// The protocol — handshake, sequence and window rules, the order of the
// answers, SACK — is the session's (frame/session); the agent connection
// moves bytes between gnet and the session, turns each DATA into a record
// for the ledger, and resolves it when the ledger does.
type agentConn struct {
	lp     *loop
	c      gnet.Conn
	remote string
	ip     netip.Addr
	sess   session.Server

	// queued counts this agent's packets in the loop's wait queue; when
	// the connection closes they become orphans (ledger.orphansQueued).
	queued int
	// held is what this connection has buffered of a frame it has not
	// finished sending, charged to Server.partial since partialSince.
	held         int64
	partialSince int64

	// lingerUntil is set once the connection ended with an ERROR and is
	// draining what the agent still sends (linger).
	lingerUntil int64

	// lim is the rate limiter of the agent's identity (Config.AgentLimits),
	// from the handshake on.
	lim    *ratelimit.Limiter
	limSrc AgentLimits // where lim came from, to release it

	dirty      bool
	sackQueued bool // on the loop's SACK list
	closed     bool
	counted    bool // holds a place in the connection limits
	opened     int64
	// ageJitter spreads --max-conn-age over ±10% (in thousandths,
	// -100..100), drawn when the connection opens.
	ageJitter int16
	lastIn    int64
}

// openAgent sets up an agent connection from peer (for one bridged in
// from the transport listener, the peer of the wrapped connection, not
// the bridge's socket, and the identity of its verified certificate).
func (lp *loop) openAgent(c gnet.Conn, peer session.Peer) (out []byte, action gnet.Action) {
	now := lp.clock()
	a := &agentConn{lp: lp, c: c, opened: now, lastIn: now, ageJitter: int16(rand.IntN(201) - 100)}
	if remote := peer.Addr; remote != nil {
		a.remote = remote.String()
		a.ip = addrOf(remote)
	}
	a.sess.Reset(&lp.conf.agents, peer)
	c.SetContext(a)
	lp.agents[a] = struct{}{}
	lp.m.agentConns.Add(1)
	switch {
	case !lp.conf.allows(a.ip) && !lp.s.ownDial(peer.Addr):
		// Not on --allow: closed without a word, as HAProxy's
		// "tcp-request connection reject" does.
		lp.s.allowRefused.agent.Inc()
		lp.s.log.Debug("agent connection refused: address not in --allow", "remote", a.remote)
		a.closed = true
		return nil, gnet.Close
	case lp.s.draining.Load():
		a.sess.Fatal(frame.CodeShutdown, "logdist is shutting down; connect to another instance")
	case !lp.s.admitConn(a.ip, lp.conf):
		lp.m.protocolError(frame.CodeOverloaded)
		a.sess.Fatal(frame.CodeOverloaded, "too many agent connections (--max-conns, --max-conns-per-ip); retry later or elsewhere")
	default:
		a.counted = true
		return nil, gnet.None
	}
	a.closed = true
	return append([]byte(nil), a.sess.Flush(now)...), gnet.Close
}

func (a *agentConn) onClose(err error) {
	lp := a.lp
	a.closed = true
	delete(lp.agents, a)
	lp.led.orphansQueued += a.queued
	lp.m.agentConns.Add(-1)
	if a.held != 0 {
		lp.s.partial.Add(-a.held)
		a.held = 0
	}
	if a.counted {
		lp.s.releaseConn(a.ip)
	}
	if a.lim != nil {
		a.limSrc.Release(a.sess.Identity())
		a.lim, a.limSrc = nil, nil
	}
	if err != nil && !errors.Is(err, errClosedByUs) {
		lp.s.log.Debug("agent connection closed", "remote", a.remote, "agent", string(a.sess.AgentID()), "err", err)
	}
}

var errClosedByUs = errors.New("closed by logdist")

// onTraffic consumes every complete frame gnet has buffered.
func (a *agentConn) onTraffic(c gnet.Conn) gnet.Action {
	lp := a.lp
	if a.lingerUntil != 0 { // ended: what it still sends is read and dropped
		_, _ = c.Discard(c.InboundBuffered())
		return gnet.None
	}
	a.lastIn = lp.now // the loop's coarse clock: idle timeouts need no better
	action := gnet.None
	// About one record per KiB buffered: agents' packets are rarely smaller.
	lp.warmFree(min(c.InboundBuffered()>>10+1, 256))
	for action == gnet.None {
		hb, _ := c.Peek(frame.HeaderSize)
		if len(hb) < frame.HeaderSize {
			break
		}
		// The session checks the header against the limits and the state
		// before the payload is buffered: before HELLO, anything but a
		// HELLO of at most 4 KiB is refused right here.
		h, err := a.sess.Admit(hb)
		if err != nil {
			action = a.ended(err)
			break
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
			a.sess.Fatal(frame.CodeBadChecksum, err.Error())
			action = a.ended(&session.Violation{Code: frame.CodeBadChecksum, Reason: err.Error()})
			break
		}
		ev, err := a.sess.Handle(h, payload)
		if err != nil {
			action = a.ended(err)
		} else {
			a.event(ev, h, fb, payload)
		}
		_, _ = c.Discard(n)
	}
	if action == gnet.None && !a.holdPartial(c.InboundBuffered()) {
		lp.m.protocolError(frame.CodeOverloaded)
		lp.s.log.Warn("closing agent connection: partial frames across agents exceed --max-partial-bytes", "remote", a.remote, "agent", string(a.sess.AgentID()), "held", a.held)
		a.sess.Fatal(frame.CodeOverloaded, "logdist holds too many half-sent frames; retry later")
		action = a.ended(nil)
	}
	lp.requestFlush()
	return action
}

// holdPartial charges the bytes of an unfinished frame this connection
// leaves in gnet's buffer to the server's partial-frame budget, and
// reports whether the budget has room.
func (a *agentConn) holdPartial(n int) bool {
	d := int64(n) - a.held
	if d == 0 {
		return true
	}
	s := a.lp.s
	total := s.partial.Add(d)
	if a.held == 0 {
		a.partialSince = a.lp.now
	}
	a.held = int64(n)
	lim := a.lp.conf.MaxPartialBytes
	return d < 0 || lim == 0 || total <= lim
}

// event acts on what the session made of a frame.
func (a *agentConn) event(ev session.Event, h frame.Header, fb, payload []byte) {
	lp := a.lp
	switch ev {
	case session.EvData:
		if a.lim != nil { // before the ingest counters: a resend is not new data
			if wait := a.lim.Take(lp.wall0+lp.preciseNow(), len(fb)); wait > 0 {
				lp.m.rateLimited.Inc()
				a.resolveBusy(h.Seq(), uint32(min((wait+time.Millisecond-1)/time.Millisecond, maxRetryAfter)))
				return
			}
		}
		lp.pend.frames++
		lp.pend.messages += int(h.Count())
		lp.pend.bytes += len(fb)
		if len(lp.conf.Dicts) > 0 && !lp.admitDict(a, h, fb) {
			return
		}
		if lp.conf.Inspect == InspectFull || lp.conf.Redactor != nil {
			if err := lp.dec.Decode(h, payload, &lp.pkt); err != nil {
				lp.logPacket("packet rejected", frame.CodeOf(err), err.Error(), a, h.Seq(), fb, nil)
				a.resolveError(h.Seq(), frame.CodeOf(err), err.Error())
				return
			}
			if rd := lp.conf.Redactor; rd != nil {
				var err error
				if fb, err = lp.redact(rd, h, fb); err != nil {
					lp.logPacket("packet rejected: too large once redacted", frame.CodeRawTooLarge, err.Error(), a, h.Seq(), nil, &lp.pkt)
					a.resolveError(h.Seq(), frame.CodeRawTooLarge, err.Error())
					return
				}
			}
		}
		var pt *packetTrace
		if lp.conf.Tracer != nil {
			fb, pt = lp.traceIn(a, h, fb)
		}
		r := lp.newRecord(fb, a, h.Seq(), h.Count())
		if pt != nil {
			r.traced, r.tr = true, pt
		}
		lp.ingest(r)
	case session.EvHello:
		lp.m.handshakes.Inc()
		if al := lp.conf.AgentLimits; al != nil {
			a.lim, a.limSrc = al.Acquire(a.sess.Identity()), al
		}
		if lp.s.draining.Load() {
			a.goAway()
		}
		lp.markAgent(a)
	case session.EvRejected:
		code := a.sess.RejectCode()
		lp.logPacket("packet rejected by its header", code, "", a, h.Seq(), fb, nil)
		lp.m.protocolError(code)
		lp.m.rejected.Inc()
		lp.markAgent(a)
	case session.EvBusy: // DATA after GOAWAY
		lp.pend.frames++
		lp.pend.messages += int(h.Count())
		lp.pend.bytes += len(fb)
		lp.m.busy.Inc()
		lp.markAgent(a)
	case session.EvPing:
		lp.markAgent(a)
	case session.EvPeerError:
		code, reason := a.sess.PeerError()
		if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"agent reported an error", code}); ok {
			lp.s.log.Debug("agent reported an error", "remote", a.remote, "agent", string(a.sess.AgentID()), "seq", h.Seq(),
				"code", code.String(), "reason", string(reason), "suppressed", suppressed)
		}
	}
}

// ended writes what the session has to say after an error (the ERROR of a
// violation or a refusal) and closes the connection.
func (a *agentConn) ended(err error) gnet.Action {
	lp := a.lp
	var v *session.Violation
	var r *session.Refused
	var re *frame.RemoteError
	switch {
	case errors.As(err, &v):
		lp.m.protocolError(v.Code)
		lp.s.log.Debug("closing agent connection on protocol error", "remote", a.remote, "agent", string(a.sess.AgentID()), "code", v.Code.String(), "err", v.Reason)
	case errors.As(err, &r):
		lp.m.protocolError(r.Code)
		lp.s.log.Debug("refused agent handshake", "remote", a.remote, "agent", string(a.sess.AgentID()), "code", r.Code.String(), "reason", r.Reason)
	case errors.As(err, &re):
		lp.s.log.Info("agent closed the connection with ERROR", "remote", a.remote, "agent", string(a.sess.AgentID()), "code", re.Code.String(), "reason", re.Reason)
	}
	a.write(a.sess.Flush(lp.now))
	a.closed = true
	return a.linger()
}

// maxRetryAfter caps the retry-after of a rate-limit BUSY: an agent is
// told to come back within a minute, whatever one packet's debt.
const maxRetryAfter = 60_000 // ms

// lingerTimeout is how long a connection ended by an ERROR keeps reading
// (and discarding) what the agent still sends.
const lingerTimeout = 500 * time.Millisecond

// linger half-closes the connection after its ERROR and lets it drain for
// lingerTimeout before the close: closing a socket with unread input makes
// the kernel send a reset, which can destroy the ERROR before the agent
// reads it (a DATA refused at its header leaves its payload unread). If
// gnet still holds output for the socket, it is closed at once.
func (a *agentConn) linger() gnet.Action {
	fd := a.c.Fd()
	if fd < 0 || a.c.OutboundBuffered() > 0 || unix.Shutdown(fd, unix.SHUT_WR) != nil {
		return gnet.Close
	}
	a.lingerUntil = a.lp.now + int64(lingerTimeout)
	return gnet.None
}

// accept resolves the agent's DATA seq as accepted by an analyzer.
func (a *agentConn) accept(seq uint64) {
	if a.sess.Accept(seq) {
		a.lp.pend.agentAcks++
		a.lp.markAgent(a)
	}
}

func (a *agentConn) resolveBusy(seq uint64, retryMs uint32) {
	if a.sess.Busy(seq, retryMs) {
		a.lp.markAgent(a)
	}
}

func (a *agentConn) resolveError(seq uint64, code frame.Code, reason string) {
	if a.sess.Reject(seq, code, reason) {
		a.lp.m.rejected.Inc()
		a.lp.markAgent(a)
	}
}

func (a *agentConn) goAway() {
	if a.closed || a.sess.Draining() {
		return
	}
	a.sess.GoAway(frame.CodeShutdown, "logdist is draining; send new packets to another instance")
	a.lp.markAgent(a)
}

// flush writes the session's answers: BUSY and ERROR frames, then the
// SACK or cumulative ACK that covers them. Accepted packets whose SACK is
// not due yet are reconsidered within the SACK delay.
func (a *agentConn) flush() {
	if a.closed {
		return
	}
	// The SACK delay is a millisecond: it wants the system clock, which
	// costs a read. Only agents with accepted packets awaiting a SACK pay
	// it; the cumulative ACK needs no time at all.
	now := a.lp.now
	if a.sess.SackPending() {
		now = a.lp.preciseNow()
	}
	a.write(a.sess.Flush(now))
	if a.sess.SackPending() {
		a.lp.sacks.add(a)
	}
}

func (a *agentConn) write(out []byte) {
	if len(out) == 0 || a.closed {
		return
	}
	if _, err := a.c.Write(out); err != nil {
		a.lp.s.log.Debug("cannot write to agent", "remote", a.remote, "err", err)
		return
	}
	if a.c.OutboundBuffered() > maxAgentOutbound {
		// It does not read what we answer (gnet's outbound buffer has no
		// bound of its own): an agent that streams PINGs, or packets that
		// are rejected one by one, would grow it for ever.
		a.lp.m.protocolError(frame.CodeOverloaded)
		a.lp.s.log.Warn("closing agent connection: it does not read its answers", "remote", a.remote, "agent", string(a.sess.AgentID()), "unread_bytes", a.c.OutboundBuffered())
		a.closed = true
		_ = a.c.Close()
	}
}

// maxAgentOutbound bounds the answers (ACK, SACK, BUSY, ERROR, PONG) an
// agent may leave unread. One that reads them holds a few KiB at most.
const maxAgentOutbound = 1 << 20

// expireAgents closes connections past the handshake or idle timeout, and
// those that have left a frame unfinished for the idle timeout (a peer
// trickling a byte now and then keeps no half-sent frame for ever).
func (lp *loop) expireAgents(now int64) {
	hs, idle, maxAge := int64(lp.conf.HandshakeTimeout), int64(lp.conf.IdleTimeout), int64(lp.conf.MaxConnAge)
	for a := range lp.agents {
		var code frame.Code
		var why string
		switch {
		case a.lingerUntil != 0 && now >= a.lingerUntil:
			_ = a.c.Close()
			continue
		case a.closed:
			continue
		case !a.sess.Ready() && now-a.opened > hs:
			code, why = frame.CodeHandshakeTimeout, fmt.Sprintf("no HELLO within %s", lp.conf.HandshakeTimeout)
		case a.sess.Ready() && now-a.lastIn > idle:
			code, why = frame.CodeIdleTimeout, fmt.Sprintf("nothing received for %s; PING to keep the connection", lp.conf.IdleTimeout)
		case a.held > 0 && now-a.partialSince > idle:
			code, why = frame.CodeIdleTimeout, fmt.Sprintf("frame not complete within %s", lp.conf.IdleTimeout)
		case maxAge > 0 && a.sess.Ready() && !a.sess.Draining() && now-a.opened > maxAge+maxAge*int64(a.ageJitter)/1000:
			a.sess.GoAway(frame.CodeShutdown, "connection older than --max-conn-age: reconnect, to any instance")
			lp.m.agedOut.Inc()
			lp.markAgent(a)
			continue
		default:
			continue
		}
		lp.m.protocolError(code)
		lp.s.log.LogAttrs(lp.s.ctx, slog.LevelDebug, "closing agent connection", slog.String("remote", a.remote), slog.String("reason", code.String()))
		a.sess.Fatal(code, why)
		a.write(a.sess.Flush(now))
		a.closed = true
		_ = a.c.Close()
	}
}

// redact applies rd to the packet just decoded into lp.pkt and returns
// the frame to forward: fb itself when nothing was redacted, else the
// packet encoded again (compressed if it came compressed), valid until
// the next call. Replacements are mostly longer than what they replace: a
// packet that grows past --max-frame or --max-raw is refused (an analyzer
// would close its connection on it), with a reason that says why.
func (lp *loop) redact(rd *redact.Redactor, h frame.Header, fb []byte) ([]byte, error) {
	lp.red.buf = lp.red.buf[:0]
	n := rd.Packet(&lp.pkt, &lp.red.buf, &lp.conf.Limits)
	if n == 0 {
		return fb, nil
	}
	lp.m.redactedMessages.Add(n)
	lp.m.redactedPackets.Inc()
	lp.red.enc.FastDecode = lp.conf.FastDecode || frame.FastDecoded(h, fb[frame.HeaderSize:])
	lp.red.frame = lp.red.enc.AppendData(lp.red.frame[:0], h.Seq(), &lp.pkt, h.Compressed())
	if tc, ok := frame.TraceOf(fb); ok { // keep the agent's trace context
		lp.red.traced = frame.AppendWithTrace(lp.red.traced[:0], lp.red.frame, &tc)
		lp.red.frame, lp.red.traced = lp.red.traced, lp.red.frame
	}
	nh := frame.Header(lp.red.frame)
	if lim := &lp.conf.Limits; nh.PayloadLen() > lim.MaxFrame || nh.RawLen() > lim.MaxRaw {
		return nil, fmt.Errorf("redacted, the packet is %d bytes (%d raw), beyond --max-frame %d or --max-raw %d; send smaller packets",
			nh.PayloadLen(), nh.RawLen(), lim.MaxFrame, lim.MaxRaw)
	}
	return lp.red.frame, nil
}

// Revoke ends the connections of agents acting as any of identities (their
// credentials were revoked, by a reload of the auth file): each gets
// GOAWAY auth, so that what it has in flight is still answered, and its
// next HELLO is refused. It returns at once; the loops do the work.
func (s *Server) Revoke(identities []string) {
	if len(identities) == 0 {
		return
	}
	set := make(map[string]bool, len(identities))
	for _, id := range identities {
		set[id] = true
	}
	for _, lp := range s.snapshotLoops() {
		lp.exec(func(context.Context) error {
			n := 0
			for a := range lp.agents {
				if !a.closed && a.sess.Ready() && !a.sess.Draining() && set[a.sess.Identity()] {
					a.sess.GoAway(frame.CodeAuth, "credentials revoked (the auth file no longer lists this token); reconnecting will be refused")
					lp.markAgent(a)
					n++
				}
			}
			if n > 0 {
				lp.m.revoked.Add(n)
				lp.s.log.Info("agent connections told their credentials were revoked", "loop", lp.idx, "connections", n)
				lp.flush()
			}
			return nil
		})
	}
}
