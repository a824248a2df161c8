package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/tlsconf"
)

// connEvent tells the connection manager (run) what became of the active
// connection.
type connEvent struct {
	goaway  bool // the server is draining: connect elsewhere now
	healthy bool // the connection was useful: reset the backoff
}

// conn is one connection to a server. Two goroutines serve it: readLoop
// (answers, and the teardown when the connection ends) and writeLoop (DATA
// and PING). The protocol's rules are the session's (frame/session): it
// numbers the DATA, keeps each unresolved packet by sequence and checks
// every answer. While draining after GOAWAY the connection sends no DATA
// but keeps reading until every packet it carries is resolved, then
// closes.
type conn struct {
	c         *Client
	addr      string
	nc        net.Conn
	rd        *frame.Reader
	maxFrame  int
	zstd      bool
	dict      *frame.Dict // the dictionary payloads are compressed with here (nil: none)
	trace     bool        // the server granted CapTrace
	pingEvery time.Duration
	started   time.Time

	wake       chan struct{} // capacity 1: something changed for the writer
	done       chan struct{} // closed by teardown: the writer stops
	writerDone chan struct{}
	wmu        sync.Mutex // serializes writes: DATA/PING from the writer, PONG from the reader
	closeOnce  sync.Once
	closeErr   error // why close was called; nil when we closed it on purpose

	// Guarded by c.mu.
	sess       *session.Client[*packet]
	pauseUntil time.Time // BUSY: no new DATA before
	gotAck     bool
	results    []resolved // what the session resolved during one Handle
}

// The session hands resolved packets to the conn, under c.mu.

func (cn *conn) Acked(p *packet) {
	cn.gotAck = true
	cn.results = append(cn.results, cn.c.resolveLocked(p, nil))
}

func (cn *conn) Busy(p *packet, retry time.Duration) {
	c := cn.c
	until := time.Now().Add(retry)
	p.notBefore = until.UnixNano()
	if until.After(cn.pauseUntil) {
		cn.pauseUntil = until
	}
	c.qpushFront(p)
	c.stats.Busy++
	cn.gotAck = true
}

func (cn *conn) Rejected(p *packet, code frame.Code, reason []byte) {
	cn.results = append(cn.results, cn.c.resolveLocked(p, &RejectError{
		PacketID: p.id, Messages: p.msgs, Addr: cn.addr, Code: code, Reason: string(reason),
	}))
}

func (cn *conn) wakeUp() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// close closes the socket; the reader then tears the connection down. err
// is the reason (nil: on purpose, not worth reporting).
func (cn *conn) close(err error) {
	cn.closeOnce.Do(func() {
		cn.closeErr = err
		cn.nc.Close()
	})
}

// run is the connection manager: it keeps one active connection, dialing
// the addresses round-robin with exponential backoff and jitter.
func (c *Client) run() {
	defer c.wg.Done()
	attempt, next, first := 0, 0, true
	for {
		addr := c.cfg.Addrs[next%len(c.cfg.Addrs)]
		next++
		cn, err := c.dial(addr)
		if err != nil {
			var he *HandshakeError
			if errors.As(err, &he) {
				c.log.Error("giving up: the server refused the handshake", "addr", addr, "err", err)
				c.mu.Lock()
				c.fatal = err
				c.stats.LastError = err
				c.broadcastLocked()
				c.mu.Unlock()
				return
			}
			if c.ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.stats.LastError = err
			c.mu.Unlock()
			d := c.backoff(attempt)
			if attempt == 0 {
				c.log.Warn("cannot connect", "addr", addr, "err", err, "retry_in", d)
			} else {
				c.log.Debug("cannot connect", "addr", addr, "err", err, "retry_in", d, "attempt", attempt+1)
			}
			attempt++
			if !c.sleep(d) {
				return
			}
			continue
		}

		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			cn.nc.Close()
			return
		}
		c.active = cn
		c.conns[cn] = struct{}{}
		c.stats.Addr = addr
		if !first {
			c.stats.Reconnects++
		}
		first = false
		c.maxFrame.Store(int64(cn.maxFrame))
		c.compress.Store(cn.zstd)
		c.dict.Store(cn.dict)
		c.mu.Unlock()
		c.log.Info("connected", "addr", addr, "window", cn.sess.Window(), "max_frame", cn.maxFrame, "zstd", cn.zstd, "dict", dictID(cn.dict))
		c.wg.Add(2)
		go cn.readLoop()
		go cn.writeLoop()

		select {
		case <-c.closing:
			return
		case ev := <-c.events:
			if ev.goaway && len(c.cfg.Addrs) > 1 {
				attempt = 0
				continue // to the next address at once
			}
			// With a single address, give a draining server the backoff.
			if ev.healthy || ev.goaway {
				attempt = 0
			}
			d := c.backoff(attempt)
			attempt++
			if !c.sleep(d) {
				return
			}
		}
	}
}

// backoff returns the delay before reconnect attempt n (from 0): BackoffMin
// doubled n times, capped at BackoffMax, with the upper half jittered.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.BackoffMax
	if n < 32 {
		if e := c.cfg.BackoffMin << n; e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closing:
		return false
	}
}

// dial connects to addr and does the handshake. A refused token or HELLO
// comes back as *HandshakeError.
func (c *Client) dial(addr string) (*conn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	nc, err := d.DialContext(c.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Close interrupts a handshake in progress.
	stop := context.AfterFunc(c.ctx, func() { nc.SetDeadline(time.Now()) })
	if cfg := c.cfg.TLS; cfg != nil {
		nc.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
		tc, err := tlsconf.Handshake(c.ctx, nc, cfg, addr)
		if err != nil {
			stop()
			nc.Close()
			return nil, fmt.Errorf("client: %w", err)
		}
		nc = tc
	}
	cn, err := c.handshake(nc, addr)
	if !stop() && err == nil {
		err = c.ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return cn, nil
}

func (c *Client) handshake(nc net.Conn, addr string) (*conn, error) {
	nc.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
	cn := &conn{
		c:          c,
		addr:       addr,
		nc:         nc,
		pingEvery:  c.cfg.PingInterval,
		started:    time.Now(),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	cn.sess = session.NewClient[*packet](&c.sessCfg, cn)
	if _, err := nc.Write(cn.sess.AppendHello(nil)); err != nil {
		return nil, fmt.Errorf("client: cannot send HELLO to %s: %w", addr, err)
	}
	lim := c.cfg.Limits
	cn.rd = frame.NewReader(nc, &lim)
	// A server's frame that its state does not allow (DATA, say) is
	// refused at its header, before its payload is read. The reader runs
	// on one goroutine at a time (this one, then readLoop).
	cn.rd.SetAdmit(func(h frame.Header) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		return cn.sess.CheckHeader(h)
	})
	h, payload, err := cn.rd.Next()
	if err != nil {
		cn.sayFatal(err)
		return nil, fmt.Errorf("client: no WELCOME from %s: %w", addr, err)
	}
	c.mu.Lock()
	_, err = cn.sess.Handle(h, payload, time.Now().UnixNano())
	out := cn.sess.Output()
	c.mu.Unlock()
	if err != nil {
		var r *session.Refused
		if errors.As(err, &r) {
			re := &frame.RemoteError{Code: r.Code, Reason: r.Reason}
			if r.Permanent() {
				return nil, &HandshakeError{Addr: addr, AgentID: c.cfg.AgentID, Remote: re}
			}
			return nil, fmt.Errorf("client: server %s refused the connection: %w", addr, re)
		}
		nc.Write(out) // the violation's ERROR
		return nil, fmt.Errorf("client: bad answer to HELLO from %s: %w", addr, err)
	}
	nc.SetDeadline(time.Time{})
	cn.maxFrame = int(min(cn.sess.MaxFrame(), c.cfg.Limits.MaxFrame))
	cn.zstd = c.cfg.Compress && cn.sess.Granted()&frame.CapZstd != 0
	if cn.zstd {
		cn.dict = c.cfg.Dicts.Find(cn.sess.Dict()) // nil when the server lists none of ours
	}
	cn.trace = cn.sess.Granted()&frame.CapTrace != 0
	if idle := cn.sess.IdleTimeout(); idle > 0 {
		cn.pingEvery = max(idle/3, time.Millisecond)
	}
	return cn, nil
}

// sayFatal writes the ERROR a violation found by the reader's admit hook
// queued in the session.
func (cn *conn) sayFatal(err error) {
	var v *session.Violation
	if !errors.As(err, &v) {
		return
	}
	cn.c.mu.Lock()
	out := append([]byte(nil), cn.sess.Output()...)
	cn.c.mu.Unlock()
	if len(out) > 0 {
		cn.write(out)
	}
}

// linger half-closes the connection and discards what the server still
// sends for a moment: closing a socket with unread input makes the kernel
// send a reset, which can destroy the ERROR just written before the
// server reads it (a DATA refused at its header leaves its payload
// unread). Called by the reader, which owns reading.
func (cn *conn) linger() {
	if cw, ok := cn.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		cn.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, cn.nc, 1<<20)
	}
}

// lingerTimeout bounds linger.
const lingerTimeout = 500 * time.Millisecond

// writeLoop sends queued packets while the window and BUSY allow, and
// PINGs when it has sent nothing for pingEvery.
func (cn *conn) writeLoop() {
	c := cn.c
	defer c.wg.Done()
	defer close(cn.writerDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastSend := time.Now()
	var buf []byte
	var results []resolved
	for {
		now := time.Now()
		wait := cn.pingEvery - now.Sub(lastSend)
		buf = buf[:0]
		results = results[:0]
		c.mu.Lock()
		if cn.sess.PingsOut() > 0 {
			if cn.sess.Missed(now.UnixNano(), int64(c.cfg.PongTimeout)) > 0 {
				c.mu.Unlock()
				cn.close(fmt.Errorf("client: no PONG (nor any other frame) from %s within %v of a PING", cn.addr, c.cfg.PongTimeout))
				return
			}
			// The next PING waits for this one's PONG, or its judgement:
			// from the PING, or from the last frame if one came since.
			since := max(cn.sess.LastPing(), cn.sess.LastRx())
			wait = max(c.cfg.PongTimeout-time.Duration(now.UnixNano()-since), time.Millisecond)
		}
		if c.active == cn {
			if now.Before(cn.pauseUntil) {
				wait = min(wait, cn.pauseUntil.Sub(now))
			} else {
				results = cn.fillLocked(now, &buf, &wait, results)
			}
		}
		if len(buf) == 0 && cn.sess.PingsOut() == 0 && now.Sub(lastSend) >= cn.pingEvery && cn.sess.AppendPing(now.UnixNano()) {
			wait = c.cfg.PongTimeout
		}
		buf = append(buf, cn.sess.Output()...)
		c.mu.Unlock()
		c.report(results)
		if len(buf) > 0 {
			if err := cn.write(buf); err != nil {
				cn.close(fmt.Errorf("client: cannot write to %s: %w", cn.addr, err))
				return
			}
			lastSend = now
			continue
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-cn.wake:
		case <-timer.C:
		case <-cn.done:
			return
		}
	}
}

// fillLocked moves queued packets into buf as DATA frames while the
// session allows (window, sequence gap, no GOAWAY), and lowers *wait to
// the next time one becomes sendable.
func (cn *conn) fillLocked(now time.Time, buf *[]byte, wait *time.Duration, results []resolved) []resolved {
	c := cn.c
	for cn.sess.CanSend() && c.qlen() > 0 && len(*buf) < 1<<20 {
		p := c.queue[c.qh]
		if nb := p.notBefore - now.UnixNano(); nb > 0 {
			*wait = min(*wait, time.Duration(nb))
			break
		}
		c.qpop()
		if frame.Header(p.frame).Traced() && !cn.trace {
			// A server that cannot read the context gets the packet without
			// it (from now on: the bytes are shared with sends in flight).
			p.frame = frame.AppendWithoutTrace(nil, p.frame)
		}
		if p.payloadLen() > cn.maxFrame || (p.compressed() && !cn.zstd) || (p.dict != 0 && !cn.sess.AcceptsDict(p.dict)) {
			ps := c.adapt(p, cn.zstd, cn.dict, cn.maxFrame)
			p.rec.open += len(ps) - 1
			var keep []*packet
			for _, q := range ps {
				if q.frame == nil {
					err := &RejectError{PacketID: q.id, Messages: q.msgs, Code: frame.CodeFrameTooLarge,
						Reason: fmt.Sprintf("message does not fit in the max frame of %d bytes of %s", cn.maxFrame, cn.addr)}
					results = append(results, c.resolveLocked(q, err))
					continue
				}
				keep = append(keep, q)
			}
			c.qpushFront(keep...)
			continue
		}
		start := len(*buf)
		*buf = append(*buf, p.frame...)
		cn.sess.Send(p, (*buf)[start:])
		p.sends++
		c.stats.PacketsSent++
		if p.sends > 1 {
			c.stats.PacketsResent++
		}
	}
	// The frames are written before the lock is taken again: an answer to
	// them can only follow.
	cn.sess.MarkWritten()
	return results
}

func (cn *conn) write(b []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.nc.SetWriteDeadline(time.Now().Add(cn.c.cfg.PongTimeout))
	_, err := cn.nc.Write(b)
	return err
}

// readLoop handles the server's frames until the connection ends, then
// tears it down: unresolved packets go back to the front of the queue.
func (cn *conn) readLoop() {
	c := cn.c
	defer c.wg.Done()
	if err := cn.readFrames(); err != nil {
		var v *session.Violation
		if errors.As(err, &v) {
			// The server broke the protocol: the session queued the ERROR
			// the detecting side must send before closing.
			cn.sayFatal(err)
			c.log.Error("server broke the protocol", "addr", cn.addr, "err", err)
			cn.linger()
		}
		cn.close(err)
	}
	close(cn.done)
	<-cn.writerDone

	c.mu.Lock()
	var back []*packet
	cn.sess.TakeUnresolved(func(p *packet) { back = append(back, p) })
	cn.sess.Close()
	c.qpushFront(back...)
	wasActive := c.active == cn
	if wasActive {
		c.active = nil
		c.stats.Addr = ""
	}
	delete(c.conns, cn)
	reason := cn.closeErr
	if reason != nil {
		c.stats.LastError = reason
	}
	healthy := cn.gotAck || time.Since(cn.started) > c.cfg.BackoffMax
	c.wakeActiveLocked()
	c.broadcastLocked()
	c.mu.Unlock()

	if reason != nil {
		c.log.Warn("connection lost", "addr", cn.addr, "err", reason, "resending", len(back))
	} else {
		c.log.Debug("connection closed", "addr", cn.addr, "resending", len(back))
	}
	if wasActive {
		select {
		case c.events <- connEvent{healthy: healthy}:
		case <-c.closing:
		}
	}
}

// readFrames handles frames until the connection fails. It returns the
// error to close it with (a *session.Violation, whose ERROR the session
// has queued, or the server's fatal ERROR), or nil when the socket is
// already closed (cn.closeErr says why).
func (cn *conn) readFrames() error {
	c := cn.c
	var out []byte
	for {
		h, payload, err := cn.rd.Next()
		if fe := (*frame.Error)(nil); errors.As(err, &fe) {
			code := fe.Code
			if !code.Fatal() {
				// A DATA header over a packet limit: a server sends no DATA.
				code = frame.CodeProtocol
			}
			c.mu.Lock()
			cn.sess.Fatal(code, fe.Msg)
			c.mu.Unlock()
			return &session.Violation{Code: code, Reason: fmt.Sprintf("bad frame from %s: %v", cn.addr, err)}
		}
		var v *session.Violation
		if errors.As(err, &v) {
			return v
		}
		if err != nil {
			// If the socket was closed on purpose (drained, Close) or by
			// the writer, this records nothing: the first reason wins.
			cn.close(fmt.Errorf("client: connection to %s lost: %w", cn.addr, err))
			return nil
		}
		c.mu.Lock()
		cn.results = cn.results[:0]
		ev, err := cn.sess.Handle(h, payload, time.Now().UnixNano())
		results := cn.results
		// Copied under the lock: the session's buffer is the writer's too.
		out = append(out[:0], cn.sess.Output()...)
		var goaway, wasActive bool
		if ev == session.EvGoAway {
			goaway = true
			wasActive = c.active == cn
			if wasActive {
				c.active = nil
				c.stats.Addr = ""
			}
		}
		done := cn.sess.Done()
		if ev == session.EvResolved || ev == session.EvGoAway || ev == session.EvPong {
			// The writer waits for window room, or for the PONG to ping again.
			cn.wakeUp()
			c.wakeActiveLocked()
		}
		c.mu.Unlock()
		c.report(results)
		if len(out) > 0 { // a PONG, or the ERROR of a violation
			if werr := cn.write(out); werr != nil && err == nil {
				cn.close(fmt.Errorf("client: cannot write to %s: %w", cn.addr, werr))
				return nil
			}
		}
		if err != nil {
			var re *frame.RemoteError
			if errors.As(err, &re) {
				return fmt.Errorf("client: server %s closed the connection: %w", cn.addr, re)
			}
			return err
		}
		if goaway {
			code, reason := cn.sess.GoAway()
			c.log.Info("server is draining (GOAWAY): moving to the next address", "addr", cn.addr, "code", code, "reason", string(reason))
			if wasActive {
				select {
				case c.events <- connEvent{goaway: true}:
				case <-c.closing:
				}
			}
		}
		if done {
			cn.close(nil)
		}
	}
}

// dictID is d's id, 0 for none (for logs).
func dictID(d *frame.Dict) uint32 {
	if d == nil {
		return 0
	}
	return d.ID()
}
