package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/frame"
)

// lingerTimeout bounds how long a connection closed after an ERROR keeps
// reading (and discarding) what the peer still sends, so that the peer
// reads the ERROR instead of a reset.
const lingerTimeout = 500 * time.Millisecond

// conn is one client connection. Its goroutine (serve) does all reading,
// decoding and handler calls; writes go through wmu because Close's GOAWAY
// comes from another goroutine.
type conn struct {
	s      *Server
	nc     net.Conn
	remote net.Addr
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	rd     *frame.Reader

	wmu      sync.Mutex
	bw       *bufio.Writer
	wbuf     []byte // scratch for encoding frames, under wmu
	welcomed bool   // WELCOME sent, under wmu
	werr     error  // first write error, under wmu

	// draining is set (under wmu) once GOAWAY is decided: DATA read after
	// it gets BUSY retry-after 0.
	draining atomic.Bool

	// Read-loop state, owned by serve's goroutine.
	agentID  string
	window   uint64
	lastSeq  uint64 // last DATA sequence received
	resolved uint64 // every DATA ≤ resolved was answered and flushed
	answered uint64 // highest DATA sequence accepted, BUSY'd or rejected: what the next ACK says
	acked    uint64 // sequence of the last ACK written
	dec      *frame.Decoder
	pkt      frame.Packet
	md       Meta
}

func newConn(s *Server, nc net.Conn, listenAddr string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		s:      s,
		nc:     nc,
		remote: nc.RemoteAddr(),
		log:    s.log.With("addr", listenAddr, "remote", nc.RemoteAddr().String()),
		ctx:    ctx,
		cancel: cancel,
		rd:     frame.NewReader(nc, &s.cfg.Limits),
		bw:     bufio.NewWriterSize(nc, 16<<10),
		dec:    frame.NewDecoder(s.cfg.Limits),
	}
}

// serve runs the connection until it ends.
func (c *conn) serve() {
	defer c.s.untrack(c)
	defer c.cancel()
	if limit := c.s.cfg.MaxConns; limit > 0 && int(c.s.m.active.Load()) > limit {
		c.fatal(frame.CodeOverloaded, fmt.Sprintf("more than %d connections; retry later or elsewhere", limit))
		return
	}
	if !c.handshake() {
		return
	}
	for {
		if !c.rd.Ready() {
			// The next read may block: answer what we have first.
			if err := c.flush(); err != nil {
				c.log.Debug("connection closed: cannot write", "err", err)
				c.nc.Close()
				return
			}
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		h, payload, err := c.rd.Next()
		if err != nil && h == nil {
			c.readFailed(err, false)
			return
		}
		c.s.m.frames[h.Type()].Inc()
		c.s.m.bytes.Add(h.FrameLen())
		if err != nil {
			// A DATA header over a per-packet limit (MaxRaw, MaxMessages,
			// a count its length cannot hold): PROTOCOL.md 3.1 rules 8-10
			// reject that packet only. Its payload was skipped and its
			// checksum verified.
			if !c.onRejectedData(h, err) {
				return
			}
			continue
		}
		if !c.onFrame(h, payload) {
			return
		}
	}
}

// handshake reads the HELLO and answers WELCOME, or ERROR and closes.
func (c *conn) handshake() bool {
	c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	h, payload, err := c.rd.Next()
	if err != nil && h == nil {
		c.readFailed(err, true)
		return false
	}
	c.s.m.frames[h.Type()].Inc()
	c.s.m.bytes.Add(h.FrameLen())
	if h.Type() != frame.TypeHello {
		c.fatal(frame.CodeBadHandshake, fmt.Sprintf("the first frame must be HELLO, got %s", h.Type()))
		return false
	}
	var hello frame.Hello
	if err := frame.DecodeHello(payload, &hello); err != nil { // its sequence is ignored (PROTOCOL.md 4)
		c.fatal(frame.CodeBadHandshake, "malformed HELLO (it needs an agent id and a window ≥ 1)")
		return false
	}
	if auth := c.s.cfg.Auth; auth != nil {
		if err := auth(hello.AgentID, hello.Token, c.remote); err != nil {
			c.fatal(frame.CodeAuth, err.Error())
			return false
		}
	}
	c.agentID = string(hello.AgentID)
	c.log = c.log.With("agent", c.agentID)
	c.window = uint64(min(hello.Window, c.s.cfg.Window))
	c.md.Remote = c.remote
	c.md.AgentID = c.agentID

	c.wmu.Lock()
	if c.draining.Load() {
		c.wmu.Unlock()
		c.fatal(frame.CodeShutdown, "server shutting down; connect elsewhere")
		return false
	}
	c.wbuf = frame.AppendWelcome(c.wbuf[:0], &frame.Welcome{
		Caps:          hello.Caps & frame.CapZstd,
		Window:        uint32(c.window),
		MaxFrame:      c.s.cfg.Limits.MaxFrame,
		IdleTimeoutMs: millis(c.s.cfg.IdleTimeout),
		ServerID:      []byte(c.s.cfg.ServerID),
	})
	c.writeLocked(c.wbuf)
	c.flushLocked()
	c.welcomed = true
	err = c.werr
	c.wmu.Unlock()
	if err != nil {
		c.log.Debug("connection closed: cannot write WELCOME", "err", err)
		c.nc.Close()
		return false
	}
	c.log.Debug("client connected", "window", c.window, "caps", uint32(hello.Caps), "software", string(hello.Software))
	return true
}

// onFrame handles one frame after the handshake; false ends the connection.
func (c *conn) onFrame(h frame.Header, payload []byte) bool {
	switch h.Type() {
	case frame.TypeData:
		return c.onData(h, payload)
	case frame.TypePing:
		c.send(func(b []byte) []byte { return frame.AppendPong(b, h.Seq()) })
		return true
	case frame.TypePong:
		return true // we never PING, but a PONG is harmless
	case frame.TypeError:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			c.fatal(frame.CodeProtocol, "malformed ERROR payload")
			return false
		}
		if h.Seq() != 0 && !code.Fatal() {
			c.logThrottled("peer sent a packet ERROR", "seq", h.Seq(), "code", code.String(), "reason", string(reason))
			return true
		}
		c.log.Info("connection closed by peer ERROR", "code", code.String(), "reason", string(reason))
		c.flush()
		c.nc.Close()
		return false
	default:
		c.fatal(frame.CodeProtocol, fmt.Sprintf("a client does not send %s after the handshake", h.Type()))
		return false
	}
}

// takeSeq applies the sequence and window rules to a DATA frame; false
// ends the connection.
func (c *conn) takeSeq(seq uint64) bool {
	if seq != c.lastSeq+1 {
		c.fatal(frame.CodeBadSequence, fmt.Sprintf("DATA sequence %d, expected %d", seq, c.lastSeq+1))
		return false
	}
	if seq-c.resolved > c.window {
		c.fatal(frame.CodeWindowExceeded, fmt.Sprintf("more than %d DATA frames unresolved (granted window)", c.window))
		return false
	}
	c.lastSeq = seq
	return true
}

// onRejectedData answers a DATA frame whose header broke a per-packet
// limit (err) with a packet ERROR; false ends the connection.
func (c *conn) onRejectedData(h frame.Header, err error) bool {
	if !c.takeSeq(h.Seq()) {
		return false
	}
	c.reject(h.Seq(), frame.CodeOf(err), err.Error())
	return true
}

func (c *conn) onData(h frame.Header, payload []byte) bool {
	seq := h.Seq()
	if !c.takeSeq(seq) {
		return false
	}
	if c.draining.Load() {
		c.busy(seq, 0)
		return true
	}
	if err := c.dec.Decode(h, payload, &c.pkt); err != nil {
		code := frame.CodeOf(err)
		if code.Fatal() {
			// Not expected from the packet decoder, but a connection
			// code means what it says.
			c.fatal(code, err.Error())
			return false
		}
		c.reject(seq, code, err.Error())
		return true
	}
	c.md.Seq = seq
	c.md.PayloadBytes = len(payload)
	c.md.RawBytes = int(h.RawLen())
	c.md.Compressed = h.Compressed()
	v := classify(c.s.handler.HandlePacket(c.ctx, &c.md, &c.pkt), c.s.cfg.BusyRetryAfter)
	switch v.kind {
	case verdictAck:
		c.answered = seq
		c.s.m.acked.Inc()
		c.s.m.messages.Add(len(c.pkt.Messages))
	case verdictBusy:
		if v.reason != "" {
			c.logThrottled("handler failed; packet answered BUSY", "seq", seq, "err", v.reason)
		}
		c.busy(seq, v.retryAfter)
	case verdictReject:
		c.reject(seq, v.code, v.reason)
	case verdictFatal:
		c.fatal(v.code, v.reason)
		return false
	}
	return true
}

// busy answers DATA seq with BUSY. The next ACK covers it too: BUSY and
// ERROR resolve a DATA frame as an ACK does, and are written before it.
func (c *conn) busy(seq uint64, retryAfterMs uint32) {
	c.s.m.busy.Inc()
	c.send(func(b []byte) []byte { return frame.AppendBusy(b, seq, retryAfterMs) })
	c.answered = seq
}

// reject answers DATA seq with a packet ERROR.
func (c *conn) reject(seq uint64, code frame.Code, reason string) {
	c.s.m.rejected(code)
	c.logThrottled("packet rejected", "seq", seq, "code", code.String(), "reason", reason)
	c.send(func(b []byte) []byte { return frame.AppendError(b, seq, code, reason) })
	c.answered = seq
}

func (c *conn) logThrottled(msg string, args ...any) {
	if ok, suppressed := c.s.rejectLog.allow(); ok {
		c.log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

// readFailed ends the connection after a failed read: with ERROR for a
// protocol violation or a timeout, quietly for a peer that went away.
func (c *conn) readFailed(err error, inHandshake bool) {
	var fe *frame.Error
	var ne net.Error
	switch {
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

// send appends one answer frame to the write buffer; flush sends it.
func (c *conn) send(appendFrame func([]byte) []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = appendFrame(c.wbuf[:0])
	c.writeLocked(c.wbuf)
}

// flush writes the cumulative ACK (after the BUSY and ERROR frames already
// buffered, which it covers) and sends everything buffered. Every DATA
// frame read so far is then resolved on the wire.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ackLocked()
	c.flushLocked()
	if c.werr == nil {
		c.resolved = c.lastSeq
	}
	return c.werr
}

func (c *conn) ackLocked() {
	if c.answered > c.acked {
		c.acked = c.answered
		c.s.m.acks.Inc()
		c.wbuf = frame.AppendAck(c.wbuf[:0], c.acked)
		c.writeLocked(c.wbuf)
	}
}

func (c *conn) writeLocked(b []byte) {
	if c.werr != nil {
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_, c.werr = c.bw.Write(b)
}

func (c *conn) flushLocked() {
	if c.werr != nil || c.bw.Buffered() == 0 {
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	c.werr = c.bw.Flush()
}

// fatal acknowledges what was accepted, sends ERROR seq=0 with code and
// closes the connection.
func (c *conn) fatal(code frame.Code, reason string) {
	c.s.m.connError(code)
	c.log.Info("closing connection with ERROR", "code", code.String(), "reason", reason)
	c.wmu.Lock()
	c.ackLocked()
	c.wbuf = frame.AppendError(c.wbuf[:0], 0, code, reason)
	c.writeLocked(c.wbuf)
	c.flushLocked()
	c.wmu.Unlock()
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

// goAway starts draining the connection: it sends GOAWAY (or, before the
// handshake completed, marks the connection so that its HELLO is refused).
// Called from Close's goroutine.
func (c *conn) goAway() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.draining.Swap(true) || !c.welcomed {
		return
	}
	c.wbuf = frame.AppendGoAway(c.wbuf[:0], frame.CodeShutdown, "server shutting down; reconnect elsewhere")
	c.writeLocked(c.wbuf)
	c.flushLocked()
}

// kill closes the connection now and cancels its handler's context; the
// connection's goroutine then ends.
func (c *conn) kill() {
	c.cancel()
	c.nc.Close()
}
