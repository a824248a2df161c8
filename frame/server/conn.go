package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/tlsconf"
)

// lingerTimeout bounds how long a connection closed after an ERROR keeps
// reading (and discarding) what the peer still sends, so that the peer
// reads the ERROR instead of a reset.
const lingerTimeout = 500 * time.Millisecond

// conn is one client connection. Its goroutine (serve) does all reading
// and decoding, and with Concurrency 1 the handler calls; with more, the
// handler calls run on worker goroutines (work), one per packet in flight.
// The protocol's rules are the session's (frame/session). mu guards the
// session and the writer, because Close's GOAWAY and the workers' answers
// come from other goroutines.
type conn struct {
	s      *Server
	nc     net.Conn
	remote net.Addr
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	rd     *frame.Reader
	start  time.Time

	mu   sync.Mutex
	sess *session.Server
	bw   *bufio.Writer
	werr error // first write error, under mu
	acks uint64
	// pend (under mu) counts what happened since the last flush; every
	// flush adds it to the server's metrics before it writes, so that a
	// client holding an ACK finds its packets counted, and the per-packet
	// path touches no shared counter.
	pend pending

	// Read-loop state, owned by serve's goroutine. With Concurrency > 1,
	// md holds the connection's part of every slot's Meta.
	dec *frame.Decoder
	pkt frame.Packet
	md  Meta

	// Concurrent handling (Config.Concurrency > 1; free is nil with 1).
	free      chan *slot     // slots whose handler returned
	slots     []*slot        // slots made so far (serve's goroutine)
	workers   sync.WaitGroup // handlers in flight
	idlers    sync.WaitGroup // the slots' goroutines (stopWorkers ends them)
	finishing atomic.Int32   // workers whose handler returned, not yet resolved
	// readerIdle (under mu) is set when serve's goroutine may block (on
	// the socket or on a free slot) after flushing: a worker resolving a
	// packet then writes the answer itself. Otherwise serve flushes soon.
	readerIdle bool
	// workerFatal (under mu): a handler's connection-code error ended the
	// session; its ERROR is written, the connection is to be closed.
	workerFatal bool
}

// pending are a connection's counts not yet added to the server's
// metrics.
type pending struct {
	frames          [frame.MaxType + 1]int
	bytes           int
	acked, messages int
}

// publishLocked adds the pending counts to the server's metrics. Under mu.
func (c *conn) publishLocked() {
	p, m := &c.pend, c.s.m
	for t, n := range p.frames {
		if n > 0 && m.frames[t] != nil {
			m.frames[t].Add(n)
		}
	}
	if p.bytes > 0 {
		m.bytes.Add(p.bytes)
	}
	if p.acked > 0 {
		m.acked.Add(p.acked)
		m.messages.Add(p.messages)
	}
	*p = pending{}
}

// slot is one packet handed to a worker: the decoder its packet aliases,
// the packet and its Meta, and the frame's payload when the packet
// aliases it (uncompressed). Not reused until its handler returned.
type slot struct {
	dec *frame.Decoder
	pkt frame.Packet
	md  Meta
	buf []byte
	// run wakes the slot's goroutine (worker) to handle pkt: one
	// goroutine per slot for the connection's life, rather than one per
	// packet, whose start costs an allocation.
	run chan struct{}
}

func newConn(s *Server, nc net.Conn, listenAddr string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		s:      s,
		nc:     nc,
		remote: nc.RemoteAddr(),
		log:    s.log.With("addr", listenAddr, "remote", nc.RemoteAddr().String()),
		ctx:    ctx,
		cancel: cancel,
		rd:     frame.NewReader(nc, &s.cfg.Limits),
		start:  time.Now(),
		sess:   session.NewServer(&s.sess, session.Peer{Addr: nc.RemoteAddr()}),
		bw:     bufio.NewWriterSize(nc, 16<<10),
		dec:    s.cfg.newDecoder(),
	}
	if n := s.cfg.concurrency(); n > 1 {
		c.free = make(chan *slot, n)
	}
	// Before the handshake only a HELLO's header is admitted: a peer cannot
	// make the server buffer what a DATA header announces.
	c.rd.SetAdmit(c.admit)
	return c
}

// startTLS runs the TLS handshake (within HandshakeTimeout) and moves the
// connection onto it. A plaintext client is told so in its own protocol:
// an ERROR bad_handshake frame, in the clear.
func (c *conn) startTLS(cfg *tls.Config) bool {
	ra := &readAhead{Conn: c.nc}
	tc := tls.Server(ra, cfg)
	ctx, cancel := context.WithDeadline(c.ctx, c.start.Add(c.s.cfg.HandshakeTimeout))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.s.m.tlsFailures.Inc()
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil {
			c.log.Info("plaintext client on the TLS port", "err", err)
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.nc.Write(frame.AppendError(nil, 0, frame.CodeBadHandshake, "this port speaks TLS: connect with TLS"))
			c.lingerClose()
			return false
		}
		c.log.Info("TLS handshake failed", "err", err)
		c.nc.Close()
		return false
	}
	cs := tc.ConnectionState()
	c.nc = tc
	c.rd = frame.NewReader(&tlsSource{tc: tc, ra: ra}, &c.s.cfg.Limits)
	c.rd.SetAdmit(c.admit)
	c.bw = bufio.NewWriterSize(tc, 16<<10)
	c.sess.Reset(&c.s.sess, session.Peer{Addr: c.remote, Identity: tlsconf.Identity(&cs)})
	return true
}

func (c *conn) admit(h frame.Header) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.CheckHeader(h)
}

// answerEvery bounds how long answers wait while frames stay buffered. A
// client counts a heartbeat missed only when nothing at all came back
// after its PING (session.Client.Missed), so ACKs flowing this often keep
// a slow but alive server up; with a 5 ms handler and a full buffer the
// server used to say nothing for seconds and was marked down.
const answerEvery = 10 * time.Millisecond

// serve runs the connection until it ends.
func (c *conn) serve() {
	defer c.s.untrack(c)
	defer c.stopWorkers()
	defer c.cancel()
	defer func() { // what the last flush did not count (a lost connection has none)
		c.mu.Lock()
		c.publishLocked()
		c.mu.Unlock()
	}()
	if cfg := c.s.cfg.TLS; cfg != nil && !c.startTLS(cfg) {
		return
	}
	if limit := c.s.cfg.MaxConns; limit > 0 && int(c.s.m.active.Load()) > limit {
		c.fatal(frame.CodeOverloaded, fmt.Sprintf("more than %d connections; retry later or elsewhere", limit))
		return
	}
	lastFlush := time.Now()
	ready := false // the handshake is done (under mu, serve's copy)
	for {
		// Answer what we have before a read that may block, and at least
		// every answerEvery while a backlog keeps frames buffered: a slow
		// handler behind a full buffer must still send ACKs (and the PONGs
		// queued behind the DATA), or the client takes silence for death.
		buffered := c.rd.Ready()
		if !buffered || time.Since(lastFlush) >= answerEvery {
			c.mu.Lock()
			// With workers: about to block on the socket, so a worker
			// finishing meanwhile writes its answer itself.
			c.readerIdle = !buffered
			err := c.flushLocked()
			c.mu.Unlock()
			if err != nil {
				c.log.Debug("connection closed: cannot write", "err", err)
				c.waitWorkers()
				c.nc.Close()
				return
			}
			lastFlush = time.Now()
		}
		// The read deadline is armed only before a read from the socket:
		// a buffered frame needs none (Next does not read), and arming a
		// deadline costs more than reading a frame from the buffer. It is
		// still a deadline per frame: each socket read gets a whole
		// IdleTimeout from the last answer, just written. With workers,
		// one may have ended the session meanwhile (workerFatal).
		if !buffered || c.free != nil {
			c.mu.Lock()
			ready = c.sess.Ready()
			if c.workerFatal {
				c.mu.Unlock()
				c.endAfterWorkers()
				return
			}
			// Under mu: a worker ending the session sets a past deadline
			// to wake this read, which must not be overwritten.
			switch {
			case buffered:
			case ready:
				c.nc.SetReadDeadline(lastFlush.Add(c.s.cfg.IdleTimeout))
			default:
				c.nc.SetReadDeadline(c.start.Add(c.s.cfg.HandshakeTimeout))
			}
			c.mu.Unlock()
		}
		h, payload, err := c.rd.Next()
		if err != nil && h == nil {
			c.readFailed(err, !ready)
			return
		}
		// err != nil with a header: a DATA header over a per-packet limit
		// (PROTOCOL.md 3.1 rules 8-10), its payload skipped and its
		// checksum verified; the session rejects that packet only.
		c.mu.Lock()
		c.readerIdle = false
		c.pend.frames[h.Type()]++
		c.pend.bytes += h.FrameLen()
		ev, err := c.sess.Handle(h, payload)
		c.mu.Unlock()
		if err != nil {
			c.ended(err)
			return
		}
		switch ev {
		case session.EvHello:
			ready = true
			c.md.Remote = c.remote
			c.md.AgentID = string(c.sess.AgentID())
			c.md.Identity = c.sess.Identity()
			c.log = c.log.With("agent", c.md.AgentID)
			c.log.Debug("client connected", "window", c.sess.Window(), "caps", uint32(c.sess.Granted()))
		case session.EvData:
			if c.free != nil {
				if !c.dispatch(h, payload) {
					return
				}
			} else if !c.onData(h, payload) {
				return
			}
		case session.EvRejected:
			code := c.sess.RejectCode()
			c.s.m.rejected(code)
			// Its payload was skipped unread: no ids to name it by.
			c.logPacket("packet rejected by its header", code, nil, "seq", h.Seq(), "code", code.String())
		case session.EvBusy:
			c.s.m.busy.Inc()
		case session.EvPeerError:
			code, reason := c.sess.PeerError()
			c.logPacket("peer sent a packet ERROR", code, nil, "seq", h.Seq(), "code", code.String(), "reason", string(reason))
		}
	}
}

// onData decodes a DATA frame the session admitted into the window, hands
// it to the Handler and resolves it as the Handler said; false ends the
// connection.
func (c *conn) onData(h frame.Header, payload []byte) bool {
	seq := h.Seq()
	if err := c.dec.Decode(h, payload, &c.pkt); err != nil {
		code := frame.CodeOf(err)
		if code.Fatal() {
			// Not expected from the packet decoder, but a connection code
			// means what it says.
			c.fatal(code, err.Error())
			return false
		}
		c.reject(seq, code, err.Error(), undecoded{h, payload, c.dec})
		return true
	}
	c.md.Seq = seq
	c.md.PayloadBytes = len(payload)
	c.md.RawBytes = int(h.RawLen())
	c.md.Compressed = h.Compressed()
	c.md.Traced = false
	if h.Traced() {
		copy(c.md.Trace[:], payload)
		c.md.Traced = c.md.Trace.Valid()
	}
	v := classify(c.s.handler.HandlePacket(c.ctx, &c.md, &c.pkt), c.s.cfg.BusyRetryAfter)
	switch v.kind {
	case verdictAck:
		c.mu.Lock()
		c.sess.Accept(seq)
		c.pend.acked++
		c.pend.messages += len(c.pkt.Messages)
		c.mu.Unlock()
	case verdictBusy:
		if v.reason != "" {
			c.logPacket("handler failed; packet answered BUSY", 0, decoded{&c.pkt}, "seq", seq, "err", v.reason)
		}
		c.s.m.busy.Inc()
		c.mu.Lock()
		c.sess.Busy(seq, v.retryAfter)
		c.mu.Unlock()
	case verdictReject:
		c.reject(seq, v.code, v.reason, decoded{&c.pkt})
	case verdictFatal:
		c.fatal(v.code, v.reason)
		return false
	}
	return true
}

// dispatch is onData with Concurrency > 1: it decodes a DATA frame into a
// free slot — waiting for one while all are busy, reading nothing
// meanwhile — and starts a worker to call the Handler; false ends the
// connection.
func (c *conn) dispatch(h frame.Header, payload []byte) bool {
	sl := c.slot()
	if sl == nil {
		c.endAfterWorkers()
		return false
	}
	seq := h.Seq()
	src := payload
	if !h.Compressed() {
		// The packet would alias the reader's buffer, which the next
		// frame overwrites.
		sl.buf = append(sl.buf[:0], payload...)
		src = sl.buf
	}
	if err := sl.dec.Decode(h, src, &sl.pkt); err != nil {
		c.free <- sl
		code := frame.CodeOf(err)
		if code.Fatal() {
			c.waitWorkers()
			c.fatal(code, err.Error())
			return false
		}
		c.reject(seq, code, err.Error(), undecoded{h, payload, sl.dec})
		return true
	}
	md := &sl.md
	*md = Meta{Remote: c.md.Remote, AgentID: c.md.AgentID, Identity: c.md.Identity}
	md.Seq = seq
	md.PayloadBytes = len(payload)
	md.RawBytes = int(h.RawLen())
	md.Compressed = h.Compressed()
	if h.Traced() {
		copy(md.Trace[:], payload)
		md.Traced = md.Trace.Valid()
	}
	c.workers.Add(1)
	sl.run <- struct{}{} // buffered; its goroutine is idle: the slot was free
	return true
}

// slot returns a free slot, making one while fewer than Concurrency
// exist, else waiting for a handler to return (after writing what is
// resolved: workers answer for themselves while serve waits). nil means
// the connection ended meanwhile (a handler's fatal error, or kill).
func (c *conn) slot() *slot {
	select {
	case sl := <-c.free:
		return sl
	default:
	}
	if len(c.slots) < c.s.cfg.concurrency() {
		sl := &slot{dec: c.s.cfg.newDecoder(), run: make(chan struct{}, 1)}
		c.slots = append(c.slots, sl)
		c.idlers.Add(1)
		go c.worker(sl)
		return sl
	}
	c.mu.Lock()
	c.readerIdle = true
	c.flushLocked() // an error ends the connection at the next flush
	c.mu.Unlock()
	sl := <-c.free
	c.mu.Lock()
	c.readerIdle = false
	ended := c.workerFatal || c.werr != nil
	c.mu.Unlock()
	if ended || c.ctx.Err() != nil {
		c.free <- sl
		return nil
	}
	return sl
}

// worker is the goroutine of slot sl: it handles the slot's packet each
// time dispatch hands it one, until stopWorkers.
func (c *conn) worker(sl *slot) {
	defer c.idlers.Done()
	for range sl.run {
		c.work(sl)
	}
}

// stopWorkers ends the slots' goroutines, once the connection is over and
// no handler runs (or one ignores its cancelled context: its goroutine
// then ends when it returns).
func (c *conn) stopWorkers() {
	for _, sl := range c.slots {
		close(sl.run)
	}
	c.idlers.Wait()
}

// work calls the Handler for the packet in sl and resolves it as onData
// does, then frees sl. The answer is written now if serve may be blocked
// (readerIdle) and no other worker is about to resolve (finishing): of
// workers finishing together, the last writes for all; while serve is
// busy reading buffered frames, it writes them with its own.
func (c *conn) work(sl *slot) {
	defer c.workers.Done()
	seq := sl.md.Seq
	v := classify(c.s.handler.HandlePacket(c.ctx, &sl.md, &sl.pkt), c.s.cfg.BusyRetryAfter)
	switch v.kind {
	case verdictBusy:
		if v.reason != "" {
			c.logPacket("handler failed; packet answered BUSY", 0, decoded{&sl.pkt}, "seq", seq, "err", v.reason)
		}
		c.s.m.busy.Inc()
	case verdictReject:
		c.s.m.rejected(v.code)
		c.logPacket("packet rejected", v.code, decoded{&sl.pkt}, "seq", seq, "code", v.code.String(), "reason", v.reason)
	case verdictFatal:
		c.s.m.connError(v.code)
		c.log.Info("closing connection with ERROR", "code", v.code.String(), "reason", v.reason)
	}
	c.finishing.Add(1)
	c.mu.Lock()
	switch v.kind {
	case verdictAck:
		c.sess.Accept(seq)
		c.pend.acked++
		c.pend.messages += len(sl.pkt.Messages)
	case verdictBusy:
		c.sess.Busy(seq, v.retryAfter)
	case verdictReject:
		c.sess.Reject(seq, v.code, v.reason)
	}
	last := c.finishing.Add(-1) == 0
	switch {
	case v.kind == verdictFatal:
		if !c.sess.Closed() {
			c.sess.Fatal(v.code, v.reason)
			c.workerFatal = true
			c.flushLocked()
			// Wake serve's read; it ends the connection once every
			// worker returned.
			c.nc.SetReadDeadline(time.Now())
		}
	case last && c.readerIdle:
		if c.flushLocked() != nil {
			c.nc.SetReadDeadline(time.Now())
		}
	}
	c.mu.Unlock()
	c.free <- sl
}

// waitWorkers waits for the handlers in flight (none with Concurrency 1);
// their answers are in the session, for the caller's last flush.
func (c *conn) waitWorkers() {
	if c.free != nil {
		c.workers.Wait()
	}
}

// endAfterWorkers ends a connection whose session a worker closed, or
// that was killed or could not be written: it waits for the handlers in
// flight, then closes (after writing their answers, when it can).
func (c *conn) endAfterWorkers() {
	c.waitWorkers()
	c.mu.Lock()
	fatal := c.workerFatal
	if !fatal && c.werr == nil && c.ctx.Err() == nil {
		c.flushLocked()
	}
	c.mu.Unlock()
	if fatal {
		c.lingerClose()
		return
	}
	c.nc.Close()
}

// reject answers DATA seq with a packet ERROR.
func (c *conn) reject(seq uint64, code frame.Code, reason string, pkt packetRef) {
	c.s.m.rejected(code)
	c.logPacket("packet rejected", code, pkt, "seq", seq, "code", code.String(), "reason", reason)
	c.mu.Lock()
	c.sess.Reject(seq, code, reason)
	c.mu.Unlock()
}

// logKey is what the per-packet log lines are throttled by: a flood of
// one message and code does not hide the first of another.
type logKey struct {
	msg  string
	code frame.Code
}

// logPacket logs msg about one packet at most once a second per message
// and code, with how many it held back ("suppressed"), naming the packet
// by its agent id and packet id when pkt can say (pkt may be nil).
// Nothing is built for a record held back.
func (c *conn) logPacket(msg string, code frame.Code, pkt packetRef, args ...any) {
	ok, suppressed := c.s.rejectLog.Allow(logKey{msg, code})
	if !ok {
		return
	}
	if pkt != nil {
		if id, agent, known := pkt.ids(c); known {
			if len(agent) == 0 { // the packet's agent is the connection's (analyzerd dedups so)
				agent = []byte(c.md.AgentID)
			}
			args = append(args, "agent_id", string(agent), "packet_id", id)
		}
	}
	c.log.Warn(msg, append(args, "suppressed", suppressed)...)
}

// packetRef is a packet a log line is about: one decoded (*frame.Packet),
// or the DATA frame of one that failed to decode (undecoded).
type packetRef interface {
	ids(c *conn) (id uint64, agentID []byte, ok bool)
}

// decoded is a packet the Handler was given.
type decoded struct{ p *frame.Packet }

func (d decoded) ids(*conn) (uint64, []byte, bool) { return d.p.ID, d.p.AgentID, true }

// undecoded is the DATA frame of a packet that did not decode.
type undecoded struct {
	h       frame.Header
	payload []byte
	dec     *frame.Decoder
}

// ids reads them from the payload, decompressing it again if need be: a
// packet that failed to decode may still start well. Only for a log line.
func (u undecoded) ids(c *conn) (uint64, []byte, bool) {
	raw, err := u.dec.Raw(u.h, u.payload)
	if err != nil {
		return 0, nil, false
	}
	return frame.PacketIDs(raw, c.s.cfg.Limits.MaxField)
}

// ended closes the connection after the session refused a frame: a
// violation or a refused handshake (its ERROR is in the output), or the
// peer's fatal ERROR.
func (c *conn) ended(err error) {
	c.waitWorkers()
	var v *session.Violation
	var r *session.Refused
	var re *frame.RemoteError
	switch {
	case errors.As(err, &v):
		c.s.m.connError(v.Code)
		c.log.Info("closing connection with ERROR", "code", v.Code.String(), "reason", v.Reason)
	case errors.As(err, &r):
		c.s.m.connError(r.Code)
		c.log.Info("refused the handshake", "code", r.Code.String(), "reason", r.Reason)
	case errors.As(err, &re):
		c.log.Info("connection closed by peer ERROR", "code", re.Code.String(), "reason", re.Reason)
		c.flush()
		c.nc.Close()
		return
	}
	c.flush()
	c.lingerClose()
}

// readFailed ends the connection after a failed read: with ERROR for a
// protocol violation or a timeout, quietly for a peer that went away.
func (c *conn) readFailed(err error, inHandshake bool) {
	if c.free != nil {
		// Stop reading; let the handlers in flight finish (their answers
		// go out with the last flush below). A read woken by a worker
		// that ended the session, or could not write, ends here.
		c.waitWorkers()
		c.mu.Lock()
		byWorker := c.workerFatal || c.werr != nil
		c.mu.Unlock()
		if byWorker {
			c.endAfterWorkers()
			return
		}
	}
	var v *session.Violation
	var fe *frame.Error
	var ne net.Error
	switch {
	case errors.As(err, &v): // the admit hook refused a header
		c.ended(err)
	case errors.As(err, &fe):
		c.fatal(fe.Code, fe.Msg)
	case errors.As(err, &ne) && ne.Timeout():
		switch {
		case inHandshake:
			c.fatal(frame.CodeHandshakeTimeout, fmt.Sprintf("no HELLO within %s", c.s.cfg.HandshakeTimeout))
		case c.rd.Partial():
			c.fatal(frame.CodeIdleTimeout, fmt.Sprintf("frame not complete within %s", c.s.cfg.IdleTimeout))
		default:
			c.fatal(frame.CodeIdleTimeout, fmt.Sprintf("no frame for %s; PING to keep the connection", c.s.cfg.IdleTimeout))
		}
	case err == io.EOF:
		c.log.Debug("connection closed by peer")
		c.flush()
		c.nc.Close()
	case errors.Is(err, net.ErrClosed):
		// Closed by kill (drain timeout): nothing to say.
		c.nc.Close()
	default:
		c.log.Info("connection lost", "err", err)
		c.nc.Close()
	}
}

// flush writes what the session has to say — the BUSY and ERROR frames
// queued, then the cumulative ACK that covers them — and sends it. Every
// DATA read so far that was resolved is then resolved on the wire.
func (c *conn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *conn) flushLocked() error {
	c.publishLocked()
	out := c.sess.Flush(int64(time.Since(c.start)))
	if n := c.sess.Acks(); n > c.acks {
		c.s.m.acks.Add(int(n - c.acks))
		c.acks = n
	}
	if c.werr == nil && len(out) > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		_, c.werr = c.bw.Write(out)
	}
	if c.werr == nil && c.bw.Buffered() > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		c.werr = c.bw.Flush()
	}
	return c.werr
}

// fatal acknowledges what was accepted, sends ERROR seq=0 with code and
// closes the connection.
func (c *conn) fatal(code frame.Code, reason string) {
	c.s.m.connError(code)
	c.log.Info("closing connection with ERROR", "code", code.String(), "reason", reason)
	c.mu.Lock()
	c.sess.Fatal(code, reason)
	c.flushLocked()
	c.mu.Unlock()
	c.lingerClose()
}

// lingerClose half-closes the connection and discards what the peer still
// sends for a moment before closing it: closing a socket with unread input
// makes the kernel send a reset, which can destroy the ERROR just written
// before the peer reads it.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, c.nc, 1<<20)
	}
	c.nc.Close()
}

// goAway starts draining the connection: GOAWAY goes out now (before the
// handshake, the session marks itself so that the HELLO is refused with
// ERROR shutdown), and DATA read after it is answered BUSY retry-after 0.
// Called from Close's goroutine.
func (c *conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess.Draining() || c.sess.Closed() {
		return
	}
	c.sess.GoAway(frame.CodeShutdown, "server shutting down; reconnect elsewhere")
	c.flushLocked()
}

// kill closes the connection now and cancels its handler's context; the
// connection's goroutine then ends.
func (c *conn) kill() {
	c.cancel()
	c.nc.Close()
}
