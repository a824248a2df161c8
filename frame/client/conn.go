package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/frame"
)

// connEvent tells the connection manager (run) what became of the active
// connection.
type connEvent struct {
	goaway  bool // the server is draining: connect elsewhere now
	healthy bool // the connection was useful: reset the backoff
}

// conn is one connection to a server. Two goroutines serve it: readLoop
// (answers, and the teardown when the connection ends) and writeLoop (DATA
// and PING). While draining after GOAWAY it sends no DATA but keeps reading
// until every packet it carries is resolved, then closes.
type conn struct {
	c         *Client
	addr      string
	nc        net.Conn
	rd        *frame.Reader
	window    int
	maxFrame  int
	zstd      bool
	pingEvery time.Duration
	started   time.Time

	wake       chan struct{} // capacity 1: something changed for the writer
	done       chan struct{} // closed by teardown: the writer stops
	writerDone chan struct{}
	wmu        sync.Mutex // serializes writes: DATA/PING from the writer, PONG from the reader
	closeOnce  sync.Once
	closeErr   error // why close was called; nil when we closed it on purpose

	// Guarded by c.mu.
	seq        uint64     // last DATA sequence sent
	inflight   []inflight // sent DATA by sequence, resolved ones nil, from the oldest unacknowledged
	unresolved int
	draining   bool
	pauseUntil time.Time // BUSY: no new DATA before
	gotAck     bool
	pingNonce  uint64
	pingAt     time.Time // when the outstanding PING was sent; zero if none
	// lastRx is when the last frame arrived (Unix ns). Any frame shows the
	// server alive (PROTOCOL.md 11.3): a server answers PONG after the
	// DATA it read before the PING, which can take longer than the PONG
	// timeout when the analyzer behind it is slow, while ACKs keep coming.
	lastRx atomic.Int64
}

type inflight struct {
	seq uint64
	p   *packet // nil once resolved by BUSY or ERROR
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
		c.mu.Unlock()
		c.log.Info("connected", "addr", addr, "window", cn.window, "max_frame", cn.maxFrame, "zstd", cn.zstd)
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
	var caps frame.Capabilities
	if c.cfg.Compress {
		caps |= frame.CapZstd
	}
	caps |= frame.CapSack
	hello := frame.AppendHello(nil, &frame.Hello{
		Caps:     caps,
		Window:   uint32(min(c.cfg.Window, 1<<31)),
		MaxFrame: frame.MaxControlPayload, // the server sends us control frames only
		AgentID:  c.agentID,
		Token:    []byte(c.cfg.Token),
		Software: []byte("logdist-client/" + Version),
	})
	if _, err := nc.Write(hello); err != nil {
		return nil, fmt.Errorf("client: cannot send HELLO to %s: %w", addr, err)
	}
	lim := c.cfg.Limits
	rd := frame.NewReader(nc, &lim)
	h, payload, err := rd.Next()
	if err != nil {
		return nil, fmt.Errorf("client: no WELCOME from %s: %w", addr, err)
	}
	switch h.Type() {
	case frame.TypeWelcome:
	case frame.TypeError:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return nil, fmt.Errorf("client: malformed ERROR from %s in the handshake: %w", addr, err)
		}
		re := &frame.RemoteError{Code: code, Reason: string(reason)}
		if code == frame.CodeAuth || code == frame.CodeBadHandshake {
			return nil, &HandshakeError{Addr: addr, AgentID: c.cfg.AgentID, Remote: re}
		}
		return nil, fmt.Errorf("client: server %s refused the connection: %w", addr, re)
	default:
		nc.Write(frame.AppendError(nil, 0, frame.CodeBadHandshake, "expected WELCOME"))
		return nil, fmt.Errorf("client: server %s answered HELLO with %s instead of WELCOME", addr, h.Type())
	}
	var w frame.Welcome
	if err := frame.DecodeWelcome(payload, &w); err != nil {
		nc.Write(frame.AppendError(nil, 0, frame.CodeBadHandshake, "malformed WELCOME"))
		return nil, fmt.Errorf("client: bad WELCOME from %s: %w", addr, err)
	}
	nc.SetDeadline(time.Time{})
	cn := &conn{
		c:          c,
		addr:       addr,
		nc:         nc,
		rd:         rd,
		window:     min(c.cfg.Window, int(w.Window)),
		maxFrame:   int(min(w.MaxFrame, c.cfg.Limits.MaxFrame)),
		zstd:       c.cfg.Compress && w.Caps&frame.CapZstd != 0,
		pingEvery:  c.cfg.PingInterval,
		started:    time.Now(),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if w.IdleTimeoutMs > 0 {
		cn.pingEvery = max(time.Duration(w.IdleTimeoutMs)*time.Millisecond/3, time.Millisecond)
	}
	return cn, nil
}

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
	var results []Result
	for {
		now := time.Now()
		wait := cn.pingEvery - now.Sub(lastSend)
		buf = buf[:0]
		results = results[:0]
		c.mu.Lock()
		if !cn.pingAt.IsZero() {
			since := cn.pingAt
			if rx := time.Unix(0, cn.lastRx.Load()); rx.After(since) {
				since = rx
			}
			late := c.cfg.PongTimeout - now.Sub(since)
			if late <= 0 {
				c.mu.Unlock()
				cn.close(fmt.Errorf("client: no PONG (nor any other frame) from %s within %v of a PING", cn.addr, c.cfg.PongTimeout))
				return
			}
			wait = late // the next PING waits for this PONG
		}
		if !cn.draining && c.active == cn {
			if now.Before(cn.pauseUntil) {
				wait = min(wait, cn.pauseUntil.Sub(now))
			} else {
				results = cn.fillLocked(now, &buf, &wait, results)
			}
		}
		if len(buf) == 0 && cn.pingAt.IsZero() && now.Sub(lastSend) >= cn.pingEvery {
			cn.pingNonce++
			cn.pingAt = now
			buf = frame.AppendPing(buf, cn.pingNonce)
			wait = c.cfg.PongTimeout
		}
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

// gapFullLocked reports whether the next DATA would run SeqGapWindows
// windows ahead of the oldest unresolved one (packets resolved out of
// order by SACK, BUSY or ERROR free window slots, but a server need not
// track an unbounded gap).
func (cn *conn) gapFullLocked() bool {
	return len(cn.inflight) > 0 && cn.seq+1-cn.inflight[0].seq >= uint64(frame.SeqGapWindows*cn.window)
}

// fillLocked moves queued packets into buf as DATA frames while the window
// allows, and lowers *wait to the next time one becomes sendable.
func (cn *conn) fillLocked(now time.Time, buf *[]byte, wait *time.Duration, results []Result) []Result {
	c := cn.c
	for cn.unresolved < cn.window && c.qlen() > 0 && len(*buf) < 1<<20 && !cn.gapFullLocked() {
		p := c.queue[c.qh]
		if nb := p.notBefore - now.UnixNano(); nb > 0 {
			*wait = min(*wait, time.Duration(nb))
			break
		}
		c.qpop()
		if p.payloadLen() > cn.maxFrame || (p.compressed() && !cn.zstd) {
			ps := c.adapt(p, cn.zstd, cn.maxFrame)
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
		cn.seq++
		start := len(*buf)
		*buf = append(*buf, p.frame...)
		frame.Header((*buf)[start:]).SetSeq(cn.seq)
		cn.inflight = append(cn.inflight, inflight{cn.seq, p})
		cn.unresolved++
		p.sends++
		c.stats.PacketsSent++
		if p.sends > 1 {
			c.stats.PacketsResent++
		}
	}
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
		var pe *protocolError
		if errors.As(err, &pe) {
			// The server broke the protocol: say so before closing, as
			// the detecting side must.
			cn.write(frame.AppendError(nil, 0, pe.code, pe.Error()))
			c.log.Error("server broke the protocol", "addr", cn.addr, "err", err)
		}
		cn.close(err)
	}
	close(cn.done)
	<-cn.writerDone

	c.mu.Lock()
	var back []*packet
	for _, e := range cn.inflight {
		if e.p != nil {
			back = append(back, e.p)
		}
	}
	cn.inflight, cn.unresolved = nil, 0
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

// readFrames handles frames until the connection fails. It returns a
// protocol error to close it with, or nil when the socket is already
// closed (cn.closeErr says why).
func (cn *conn) readFrames() error {
	var pong [frame.HeaderSize]byte
	var results []Result
	var ranges []frame.SeqRange
	for {
		h, payload, err := cn.rd.Next()
		if fe := (*frame.Error)(nil); errors.As(err, &fe) {
			code := fe.Code
			if !code.Fatal() {
				// A DATA header over a packet limit: a server sends no DATA.
				code = frame.CodeProtocol
			}
			return violation(code, "client: bad frame from %s: %v", cn.addr, err)
		}
		if err != nil {
			// If the socket was closed on purpose (drained, Close) or by
			// the writer, this records nothing: the first reason wins.
			cn.close(fmt.Errorf("client: connection to %s lost: %w", cn.addr, err))
			return nil
		}
		cn.lastRx.Store(time.Now().UnixNano())
		results = results[:0]
		switch h.Type() {
		case frame.TypeAck:
			results, err = cn.onAck(h.Seq(), results)
		case frame.TypeSack:
			if ranges, err = frame.DecodeSack(payload, h.Seq(), ranges[:0]); err != nil {
				err = violation(frame.CodeProtocol, "client: malformed SACK from %s: %v", cn.addr, err)
				break
			}
			if results, err = cn.onAck(h.Seq(), results); err == nil {
				results, err = cn.onSack(ranges, results)
			}
		case frame.TypeBusy:
			var ms uint32
			if ms, err = frame.DecodeBusy(payload); err != nil {
				err = violation(frame.CodeProtocol, "client: malformed BUSY from %s: %v", cn.addr, err)
			} else {
				err = cn.onBusy(h.Seq(), time.Duration(ms)*time.Millisecond)
			}
		case frame.TypeError:
			results, err = cn.onError(h.Seq(), payload, results)
		case frame.TypeGoAway:
			err = cn.onGoAway(payload)
		case frame.TypePing:
			err = cn.write(frame.AppendPong(pong[:0], h.Seq()))
		case frame.TypePong:
			c := cn.c
			c.mu.Lock()
			if h.Seq() == cn.pingNonce {
				cn.pingAt = time.Time{}
			}
			c.mu.Unlock()
			cn.wakeUp() // the writer's timer was set for the PONG timeout
		default:
			err = violation(frame.CodeProtocol, "client: unexpected %s frame from %s", h.Type(), cn.addr)
		}
		cn.c.report(results)
		if err != nil {
			return err
		}
	}
}

// entryLocked returns the inflight entry of DATA seq, or nil.
func (cn *conn) entryLocked(seq uint64) *inflight {
	if len(cn.inflight) == 0 || seq < cn.inflight[0].seq || seq > cn.seq {
		return nil
	}
	e := &cn.inflight[seq-cn.inflight[0].seq]
	if e.seq != seq {
		panic("BUG: client: inflight sequences not contiguous")
	}
	return e
}

func (cn *conn) onAck(seq uint64, results []Result) ([]Result, error) {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq > cn.seq {
		return results, violation(frame.CodeProtocol, "client: %s acknowledged sequence %d, only %d were sent", cn.addr, seq, cn.seq)
	}
	n := 0
	for n < len(cn.inflight) && cn.inflight[n].seq <= seq {
		if p := cn.inflight[n].p; p != nil {
			cn.unresolved--
			results = append(results, c.resolveLocked(p, nil))
		}
		n++
	}
	clear(cn.inflight[:n]) // the backing array must not keep acknowledged frames
	cn.inflight = cn.inflight[n:]
	cn.gotAck = true
	cn.afterResolveLocked()
	return results, nil
}

// onSack accepts the DATA in ranges (after onAck took the SACK's
// cumulative part).
func (cn *conn) onSack(ranges []frame.SeqRange, results []Result) ([]Result, error) {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range ranges {
		if r.Last > cn.seq {
			return results, violation(frame.CodeProtocol, "client: %s acknowledged sequence %d, only %d were sent", cn.addr, r.Last, cn.seq)
		}
		if len(cn.inflight) == 0 {
			continue // everything sent is resolved already
		}
		// Below the oldest in flight everything is resolved already, and
		// nothing was sent after the newest: a range is walked only where
		// packets are (a hostile server's SACK for 1..2^40 costs nothing).
		first := max(r.First, cn.inflight[0].seq)
		last := min(r.Last, cn.inflight[len(cn.inflight)-1].seq)
		for seq := first; seq <= last; seq++ {
			// Sequences below the oldest in flight were acknowledged
			// already; one resolved by BUSY or ERROR is not covered (a
			// server bug, ignored: the packet is already settled).
			if e := cn.entryLocked(seq); e != nil && e.p != nil {
				results = append(results, c.resolveLocked(e.p, nil))
				e.p = nil
				cn.unresolved--
			}
		}
	}
	cn.gotAck = true
	cn.afterResolveLocked()
	return results, nil
}

func (cn *conn) onBusy(seq uint64, retry time.Duration) error {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e := cn.entryLocked(seq)
	if e == nil || e.p == nil {
		return violation(frame.CodeProtocol, "client: %s sent BUSY for sequence %d, which is not in flight", cn.addr, seq)
	}
	p := e.p
	e.p = nil
	cn.unresolved--
	until := time.Now().Add(retry)
	p.notBefore = until.UnixNano()
	if until.After(cn.pauseUntil) {
		cn.pauseUntil = until
	}
	c.qpushFront(p)
	c.stats.Busy++
	cn.gotAck = true
	cn.afterResolveLocked()
	return nil
}

func (cn *conn) onError(seq uint64, payload []byte, results []Result) ([]Result, error) {
	code, reason, err := frame.DecodeReason(payload)
	if err != nil {
		return results, violation(frame.CodeProtocol, "client: malformed ERROR from %s: %v", cn.addr, err)
	}
	re := &frame.RemoteError{Seq: seq, Code: code, Reason: string(reason)}
	if seq == 0 || code.Fatal() {
		return results, fmt.Errorf("client: server %s closed the connection: %w", cn.addr, re)
	}
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e := cn.entryLocked(seq)
	if e == nil || e.p == nil {
		return results, violation(frame.CodeProtocol, "client: %s sent ERROR for sequence %d, which is not in flight", cn.addr, seq)
	}
	p := e.p
	e.p = nil
	cn.unresolved--
	results = append(results, c.resolveLocked(p, &RejectError{
		PacketID: p.id, Messages: p.msgs, Addr: cn.addr, Code: code, Reason: string(reason),
	}))
	cn.afterResolveLocked()
	return results, nil
}

func (cn *conn) onGoAway(payload []byte) error {
	code, reason, err := frame.DecodeReason(payload)
	if err != nil {
		return violation(frame.CodeProtocol, "client: malformed GOAWAY from %s: %v", cn.addr, err)
	}
	c := cn.c
	c.mu.Lock()
	cn.draining = true
	wasActive := c.active == cn
	if wasActive {
		c.active = nil
		c.stats.Addr = ""
	}
	cn.afterResolveLocked()
	c.mu.Unlock()
	c.log.Info("server is draining (GOAWAY): moving to the next address", "addr", cn.addr, "code", code, "reason", string(reason))
	if wasActive {
		select {
		case c.events <- connEvent{goaway: true}:
		case <-c.closing:
		}
	}
	return nil
}

// afterResolveLocked wakes whoever waits for window room, and closes a
// draining connection once nothing on it is unresolved.
func (cn *conn) afterResolveLocked() {
	// Entries resolved out of order (SACK, BUSY, ERROR) at the head go
	// now, not when an ACK passes them: the sequence gap is measured from
	// the oldest unresolved DATA (PROTOCOL.md 11.1), and a server need not
	// move its cumulative point past a BUSY.
	n := 0
	for n < len(cn.inflight) && cn.inflight[n].p == nil {
		n++
	}
	if n > 0 {
		clear(cn.inflight[:n])
		cn.inflight = cn.inflight[n:]
	}
	cn.wakeUp()
	cn.c.wakeActiveLocked()
	if cn.draining && cn.unresolved == 0 {
		cn.close(nil)
	}
}

// protocolError is a rule of the protocol the server broke: the client
// answers ERROR seq 0 with code, and closes.
type protocolError struct {
	code frame.Code
	msg  string
}

func (e *protocolError) Error() string { return e.msg }

func violation(code frame.Code, format string, args ...any) error {
	return &protocolError{code, fmt.Sprintf(format, args...)}
}
