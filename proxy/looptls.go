package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Loop-native TLS. A TLS connection's handshake runs on a goroutine, as
// any Transport's does; then, instead of the socketpair bridge, the
// socket itself is enrolled on an event loop and the loop runs the record
// layer:
//
//	peer ⇄ socket (TLS records) ⇄ event loop: crypto/tls over gnet's buffers
//
// crypto/tls works on a net.Conn; under a loop-native tls.Conn that is a
// recordConn, which is the socket until the hand-over, and afterwards
// reads the ciphertext gnet has buffered for the connection (or answers
// "nothing yet", a temporary net.Error, which crypto/tls does not make
// sticky: a partial record waits in its buffer for the next read) and
// collects the records crypto/tls writes, for the loop to send. The loop
// sees the connection through a tlsConn, a gnet.Conn whose reads give
// the plaintext and whose writes encrypt: the agent and upstream code is
// the same for TLS and plaintext. No goroutine per connection, and no
// copies through the kernel beyond the socket's own.

// recordConn is the net.Conn under a loop-native tls.Conn.
type recordConn struct {
	net.Conn // the socket: all I/O until the hand-over, the addresses after
	// onLoop is set by the handshake's goroutine before the hand-over
	// (Enroll orders it before every use on the loop).
	onLoop bool
	raw    gnet.Conn // the socket on the loop, from OnOpen to OnClose
	out    []byte    // records written by crypto/tls, not yet sent
	outBuf *[]byte   // out's buffer, from outPool
}

// errNoInput is recordConn's "no ciphertext buffered": temporary, so that
// crypto/tls keeps the connection usable (conn.go, readRecordOrCCS).
var errNoInput error = noInputError{}

type noInputError struct{}

func (noInputError) Error() string   { return "proxy: no TLS input buffered yet" }
func (noInputError) Timeout() bool   { return true }
func (noInputError) Temporary() bool { return true }

func (r *recordConn) Read(p []byte) (int, error) {
	if !r.onLoop {
		return r.Conn.Read(p)
	}
	if r.raw == nil || len(p) == 0 {
		return 0, errNoInput
	}
	n, _ := r.raw.Read(p)
	if n == 0 {
		return 0, errNoInput
	}
	return n, nil
}

func (r *recordConn) Write(p []byte) (int, error) {
	if !r.onLoop {
		return r.Conn.Write(p)
	}
	if r.outBuf == nil {
		r.outBuf = outPool.Get().(*[]byte)
		r.out = (*r.outBuf)[:0]
	}
	r.out = append(r.out, p...)
	return len(p), nil
}

// Close closes the socket before the hand-over; after it the socket is
// gnet's, closed by the loop.
func (r *recordConn) Close() error {
	if !r.onLoop {
		return r.Conn.Close()
	}
	return nil
}

// CloseWrite half-closes the socket before the hand-over (a plaintext
// client on the TLS port is answered, then drained).
func (r *recordConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok && !r.onLoop {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (r *recordConn) SetDeadline(t time.Time) error {
	if !r.onLoop {
		return r.Conn.SetDeadline(t)
	}
	return nil
}

func (r *recordConn) SetReadDeadline(t time.Time) error {
	if !r.onLoop {
		return r.Conn.SetReadDeadline(t)
	}
	return nil
}

func (r *recordConn) SetWriteDeadline(t time.Time) error {
	if !r.onLoop {
		return r.Conn.SetWriteDeadline(t)
	}
	return nil
}

// loopNative returns the socket and the record connection of a
// connection the TLS transport wrapped, if the loop can take its record
// layer (a TLS connection over a recordConn over a TCP socket).
func loopNative(w net.Conn) (*tls.Conn, *recordConn, *net.TCPConn, bool) {
	tc, ok := w.(*tls.Conn)
	if !ok {
		return nil, nil, nil, false
	}
	rc, ok := tc.NetConn().(*recordConn)
	if !ok {
		return nil, nil, nil, false
	}
	sock, ok := rc.Conn.(*net.TCPConn)
	if !ok {
		return nil, nil, nil, false
	}
	return tc, rc, sock, true
}

// handOver makes the TLS connection w loop-native, if it can be: it
// returns the socket to enroll and the tlsConn to enroll it with (its
// inner context ctx), or ok false for a connection to bridge.
func handOver(w net.Conn, ctx any) (*net.TCPConn, *tlsConn, bool) {
	tc, rc, sock, ok := loopNative(w)
	if !ok {
		return nil, nil, false
	}
	// The handshake is over and its goroutine does no more I/O on the
	// socket: from here on it is the loop's.
	rc.onLoop = true
	return sock, &tlsConn{tc: tc, rc: rc, ctx: ctx}, true
}

// enroll hands conn to the event loop el, with gctx as the connection's
// gnet context, and waits for the loop to open it: gnet serves a copy of
// the descriptor and closes conn (so does enroll if the loop refuses it).
// A loop that is shutting down never answers: the wait ends with the
// server's own shutdown.
func (s *Server) enroll(el gnet.EventLoop, conn net.Conn, gctx any) error {
	ch, err := el.Enroll(gnet.NewContext(s.ctx, gctx), conn)
	if err != nil {
		_ = conn.Close()
		return err
	}
	select {
	case res := <-ch:
		return res.Err
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// tlsConn is a loop-native TLS connection as the agent and upstream code
// sees it: a gnet.Conn whose inbound bytes are the plaintext of the
// records received, and whose writes are encrypted and sent. It is the
// gnet context of its socket; its own context is the connection's
// (*bridgedAgent until openAgent replaces it with the *agentConn, or the
// *upstream). Its methods run on the loop only.
type tlsConn struct {
	gnet.Conn // the socket, from OnOpen
	tc        *tls.Conn
	rc        *recordConn
	ctx       any

	in     []byte  // plaintext not yet consumed: in[off:]
	inBuf  *[]byte // in's buffer, from plainPool
	off    int
	gather []byte // Writev's plaintext, up to sealChunk at a time
	err    error  // why the record layer ended, for OnClose
	closed bool
}

const (
	// sealChunk is the plaintext Writev encrypts at once (crypto/tls
	// cuts it into records of 16 KiB); buffers larger than it are
	// encrypted where they are.
	sealChunk = 64 << 10
	// sendChunk is how many bytes of records Writev collects before it
	// hands them to the socket.
	sendChunk = 256 << 10
	// minPlainRoom is the free space a read of plaintext wants: a
	// record's worth.
	minPlainRoom = 16 << 10
)

// The plaintext buffers of reads come from pools by size class (8 KiB to
// 2 MiB, ×4 each), and so do the record buffers of writes (outPool): a
// connection holds a buffer only while it has bytes in it, and one that
// keeps part of a frame between reads keeps it in a buffer of its size's
// class, as gnet keeps a plaintext connection's. Idle TLS connections cost
// no more than crypto/tls's own buffers, and the partial-frame budget
// (--max-partial-bytes) bounds what the others hold within 4×.
const (
	minPlainClass = 8 << 10
	plainClasses  = 5 // 8 KiB, 32 KiB, 128 KiB, 512 KiB, 2 MiB
)

var (
	plainPools [plainClasses]sync.Pool
	outPool    = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}
)

// plainClass returns the smallest class that holds n bytes, or
// plainClasses if none does.
func plainClass(n int) int {
	c, size := 0, minPlainClass
	for size < n && c < plainClasses {
		c, size = c+1, size<<2
	}
	return c
}

// getPlain returns an empty buffer for at least n bytes.
func getPlain(n int) *[]byte {
	c := plainClass(n)
	if c == plainClasses {
		b := make([]byte, 0, n)
		return &b
	}
	if bp, ok := plainPools[c].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, minPlainClass<<(2*c))
	return &b
}

// putPlain gives a buffer back (b is its current slice: it may have
// moved), in the largest class it holds.
func putPlain(bp *[]byte, b []byte) {
	c := plainClass(cap(b) + 1)
	if c == 0 {
		return // smaller than any class: not from a pool
	}
	if c--; cap(b) > minPlainClass<<(2*plainClasses-2) {
		return // larger than the largest class: to the garbage collector
	}
	*bp = b[:0]
	plainPools[c].Put(bp)
}

// maxPooled is the largest record buffer put back in outPool.
const maxPooled = 4 * sendChunk

// socketOf returns the gnet connection under c: EventLoop.Close takes
// only gnet's own.
func socketOf(c gnet.Conn) gnet.Conn {
	if x, ok := c.(*tlsConn); ok {
		return x.Conn
	}
	return c
}

// open binds x to its socket and opens the connection inside (h.OnOpen
// with x). It sends what that answers itself, encrypted, rather than
// return it to gnet: records that came in with the end of the handshake
// wait in crypto/tls's buffer, not in the socket, so gnet would not report
// them, and they are read right here, after the answer (records must go
// out in order).
func (x *tlsConn) open(raw gnet.Conn, h *handler) ([]byte, gnet.Action) {
	x.Conn = raw
	x.rc.raw = raw
	raw.SetContext(x)
	out, action := h.OnOpen(x)
	if len(out) > 0 {
		if _, err := x.Write(out); err != nil {
			return nil, gnet.Close
		}
	}
	if action != gnet.None || x.closed {
		return nil, action
	}
	return nil, x.traffic(h)
}

// traffic decrypts every record gnet has buffered and lets the connection
// inside (h.OnTraffic with x) consume the plaintext.
func (x *tlsConn) traffic(h *handler) gnet.Action {
	if x.closed {
		_, _ = x.Conn.Discard(-1)
		return gnet.None
	}
	n, err := x.fill()
	if x.send() != nil {
		return gnet.None // gnet closed it
	}
	action := gnet.None
	if n > 0 || x.InboundBuffered() > 0 {
		action = h.OnTraffic(x)
	}
	x.release()
	if err != nil && action == gnet.None && !x.closed {
		if errors.Is(err, io.EOF) {
			x.err = io.EOF // the peer's close_notify: it closed, as with a FIN
		} else {
			x.err = fmt.Errorf("TLS: %w", err)
		}
		action = gnet.Close
	}
	return action
}

// fill decrypts what gnet has buffered into x.in, and returns how many
// plaintext bytes it added and, if the record layer ended, why (io.EOF:
// the peer's close_notify).
func (x *tlsConn) fill() (int, error) {
	// The plaintext is smaller than the ciphertext gnet holds, plus at
	// most a record crypto/tls has buffered.
	need := x.InboundBuffered() + x.Conn.InboundBuffered() + minPlainRoom
	switch {
	case x.inBuf == nil:
		x.inBuf = getPlain(need)
		x.in, x.off = *x.inBuf, 0
	case cap(x.in) < need:
		x.moveIn(need)
	case x.off > 0:
		x.in = x.in[:copy(x.in, x.in[x.off:])]
		x.off = 0
	}
	added := 0
	for {
		if cap(x.in)-len(x.in) < minPlainRoom {
			x.moveIn(2 * (len(x.in) + minPlainRoom))
		}
		n, err := x.tc.Read(x.in[len(x.in):cap(x.in)])
		x.in = x.in[:len(x.in)+n]
		added += n
		if err != nil {
			if errors.Is(err, errNoInput) {
				return added, nil
			}
			return added, err
		}
	}
}

// moveIn moves the unread plaintext into a buffer for at least n bytes.
func (x *tlsConn) moveIn(n int) {
	bp := getPlain(n)
	b := append(*bp, x.in[x.off:]...)
	putPlain(x.inBuf, x.in)
	x.inBuf, x.in, x.off = bp, b, 0
}

// release gives the plaintext buffer back once nothing is left in it, and
// moves what is left of a frame into a buffer of its size.
func (x *tlsConn) release() {
	if x.inBuf == nil {
		return
	}
	left := len(x.in) - x.off
	if left == 0 {
		putPlain(x.inBuf, x.in)
		x.in, x.inBuf, x.off = nil, nil, 0
		return
	}
	if plainClass(left) < plainClass(cap(x.in)+1)-1 {
		x.moveIn(left)
	}
}

// send hands the records written so far to the socket (gnet buffers what
// the socket does not take). An error means gnet has closed it.
func (x *tlsConn) send() error {
	out := x.rc.out
	if len(out) == 0 {
		return nil
	}
	_, err := x.Conn.Write(out)
	x.dropOut()
	return err
}

func (x *tlsConn) dropOut() {
	rc := x.rc
	if rc.outBuf != nil {
		if cap(rc.out) <= maxPooled {
			*rc.outBuf = rc.out[:0]
			outPool.Put(rc.outBuf)
		}
		rc.out, rc.outBuf = nil, nil
	}
}

// closing runs from OnClose: it sends close_notify if logdist closes the
// connection (err nil), and closes the connection inside.
func (x *tlsConn) closing(err error, h *handler) {
	if x.closed {
		return
	}
	if err == nil && x.err == nil {
		// gnet writes what it still holds, then closes: the alert goes
		// last. Best effort.
		_ = x.tc.CloseWrite()
		_ = x.send()
	}
	x.closed = true
	if x.err != nil {
		err = x.err
	}
	h.OnClose(x, err)
	x.dropOut()
	if x.inBuf != nil {
		putPlain(x.inBuf, x.in)
		x.in, x.inBuf, x.off = nil, nil, 0
	}
	x.gather = nil
	x.rc.raw = nil
}

// The gnet.Conn of the connection inside.

func (x *tlsConn) Context() any         { return x.ctx }
func (x *tlsConn) SetContext(ctx any)   { x.ctx = ctx }
func (x *tlsConn) InboundBuffered() int { return len(x.in) - x.off }

// Fd is -1: the socket carries records, and nothing but x may write to it.
func (x *tlsConn) Fd() int { return -1 }

func (x *tlsConn) Dup() (int, error) { return -1, errors.ErrUnsupported }

func (x *tlsConn) Read(p []byte) (int, error) {
	n := copy(p, x.in[x.off:])
	x.off += n
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

func (x *tlsConn) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(x.in[x.off:])
	x.off += n
	return int64(n), err
}

func (x *tlsConn) Peek(n int) ([]byte, error) {
	avail := len(x.in) - x.off
	if n > avail {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = avail
	}
	return x.in[x.off : x.off+n], nil
}

func (x *tlsConn) Next(n int) ([]byte, error) {
	b, err := x.Peek(n)
	x.off += len(b)
	return b, err
}

func (x *tlsConn) Discard(n int) (int, error) {
	avail := len(x.in) - x.off
	if n <= 0 || n > avail {
		n = avail
	}
	x.off += n
	return n, nil
}

func (x *tlsConn) Write(p []byte) (int, error) {
	if x.closed {
		return 0, net.ErrClosed
	}
	if _, err := x.tc.Write(p); err != nil {
		x.dropOut()
		return 0, x.fail(err)
	}
	if err := x.send(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Writev encrypts bs as one stream (small buffers are gathered first, so
// that records are full) and sends the records in a few writes.
func (x *tlsConn) Writev(bs [][]byte) (int, error) {
	if x.closed {
		return 0, net.ErrClosed
	}
	total := 0
	for _, b := range bs {
		total += len(b)
		if len(x.gather)+len(b) > sealChunk && len(x.gather) > 0 {
			if err := x.seal(x.gather); err != nil {
				return 0, err
			}
			x.gather = x.gather[:0]
		}
		if len(b) >= sealChunk {
			if err := x.seal(b); err != nil {
				return 0, err
			}
			continue
		}
		x.gather = append(x.gather, b...)
	}
	if len(x.gather) > 0 {
		err := x.seal(x.gather)
		x.gather = x.gather[:0]
		if err != nil {
			return 0, err
		}
	}
	if err := x.send(); err != nil {
		return 0, err
	}
	return total, nil
}

// seal encrypts p into the records to send, and sends them once there are
// sendChunk bytes of them.
func (x *tlsConn) seal(p []byte) error {
	if _, err := x.tc.Write(p); err != nil {
		x.dropOut()
		return x.fail(err)
	}
	if len(x.rc.out) >= sendChunk {
		return x.send()
	}
	return nil
}

// fail closes the connection after crypto/tls refused to write (its
// record layer is broken for good) and returns err.
func (x *tlsConn) fail(err error) error {
	if x.err == nil {
		x.err = fmt.Errorf("TLS: %w", err)
	}
	_ = x.Conn.Close()
	return err
}

func (x *tlsConn) ReadFrom(io.Reader) (int64, error) { return 0, errors.ErrUnsupported }
func (x *tlsConn) SendTo([]byte, net.Addr) (int, error) {
	return 0, errors.ErrUnsupported
}

// AsyncWrite and AsyncWritev are not for loop-native TLS: crypto/tls's
// writes belong to the loop. logdist does not use them.
func (x *tlsConn) AsyncWrite([]byte, gnet.AsyncCallback) error    { return errors.ErrUnsupported }
func (x *tlsConn) AsyncWritev([][]byte, gnet.AsyncCallback) error { return errors.ErrUnsupported }

// wrapDialed runs the upstream transport's handshake on a connection
// dialed to an analyzer, for the upstream's dial goroutine, and returns
// the connection to enroll and the gnet context to enroll it with: the
// socket and a loop-native tlsConn around u, or a bridge and u.
func (s *Server) wrapDialed(ctx context.Context, nc net.Conn, u *upstream, addr, serverName string) (net.Conn, any, error) {
	t := s.conf.Load().UpstreamTransport
	if t == nil {
		nc.Close()
		return nil, nil, errors.New("proxy: no upstream transport configured")
	}
	w, err := t.Client(ctx, nc, addr, serverName)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("transport handshake with %s: %w", addr, err)
	}
	if sock, x, ok := handOver(w, u); ok {
		return sock, x, nil
	}
	loopEnd, err := s.bridge(w)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return loopEnd, u, nil
}
