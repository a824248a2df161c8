// Package servertest is a minimal protocol client for tests and examples of
// frame servers: it speaks raw frames over one connection and does no
// retries, batching or reconnects (use package frame/client for that).
package servertest

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
)

// Client is one connection to a frame server. Not safe for concurrent use.
type Client struct {
	// Conn is the connection; tests may write raw bytes to it.
	Conn net.Conn
	// Welcome is the server's WELCOME (ServerID copied).
	Welcome frame.Welcome
	// Timeout bounds every read and write (default 5 s).
	Timeout time.Duration

	r   *frame.Reader
	lim frame.Limits
	enc frame.Encoder
	seq uint64
	buf []byte
}

// Frame is a frame received from the server, with its payload decoded.
type Frame struct {
	Type frame.Type
	Seq  uint64
	// Code and Reason of an ERROR or GOAWAY.
	Code   frame.Code
	Reason string
	// RetryAfter of a BUSY.
	RetryAfter time.Duration
}

func (f Frame) String() string {
	switch f.Type {
	case frame.TypeError, frame.TypeGoAway:
		return fmt.Sprintf("%s seq=%d code=%s reason=%q", f.Type, f.Seq, f.Code, f.Reason)
	case frame.TypeBusy:
		return fmt.Sprintf("BUSY seq=%d retry-after=%s", f.Seq, f.RetryAfter)
	}
	return fmt.Sprintf("%s seq=%d", f.Type, f.Seq)
}

// Dial connects to addr and completes a handshake as agentID with
// capability zstd and a window of 1024.
func Dial(addr, agentID string) (*Client, error) {
	c, err := DialRaw(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 1024, MaxFrame: 1 << 20, AgentID: []byte(agentID)}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// DialRaw connects to addr without a handshake.
func DialRaw(addr string) (*Client, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return New(nc), nil
}

// New returns a Client over a connection the caller made (from a given
// source address, through TLS...), without a handshake.
func New(nc net.Conn) *Client {
	c := &Client{Conn: nc, Timeout: 5 * time.Second, lim: frame.DefaultLimits()}
	c.r = frame.NewReader(nc, &c.lim)
	return c
}

// Handshake sends h as HELLO and reads the answer: nil for WELCOME, a
// *frame.RemoteError for ERROR.
func (c *Client) Handshake(h *frame.Hello) error {
	if err := c.Write(frame.AppendHello(nil, h)); err != nil {
		return err
	}
	hd, payload, err := c.next()
	if err != nil {
		return err
	}
	switch hd.Type() {
	case frame.TypeWelcome:
		if err := frame.DecodeWelcome(payload, &c.Welcome); err != nil {
			return err
		}
		c.Welcome.ServerID = append([]byte(nil), c.Welcome.ServerID...)
		return nil
	case frame.TypeError:
		code, reason, _ := frame.DecodeReason(payload)
		return &frame.RemoteError{Seq: hd.Seq(), Code: code, Reason: string(reason)}
	}
	return fmt.Errorf("servertest: got %s instead of WELCOME", hd.Type())
}

// Write writes raw bytes to the connection.
func (c *Client) Write(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	_, err := c.Conn.Write(b)
	return err
}

// AppendData appends a DATA frame carrying p with the next sequence number
// to dst, so that several can be written at once.
func (c *Client) AppendData(dst []byte, p *frame.Packet, compress bool) []byte {
	c.seq++
	return c.enc.AppendData(dst, c.seq, p, compress)
}

// Send writes p as the next DATA frame and returns its sequence number.
func (c *Client) Send(p *frame.Packet, compress bool) (uint64, error) {
	c.buf = c.AppendData(c.buf[:0], p, compress)
	return c.seq, c.Write(c.buf)
}

// LastSeq returns the sequence number of the last DATA frame appended.
func (c *Client) LastSeq() uint64 { return c.seq }

// SetSeq sets the sequence number the next DATA frame follows.
func (c *Client) SetSeq(seq uint64) { c.seq = seq }

// Next reads the next frame from the server.
func (c *Client) Next() (Frame, error) {
	h, payload, err := c.next()
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Type: h.Type(), Seq: h.Seq()}
	switch h.Type() {
	case frame.TypeError, frame.TypeGoAway:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return f, err
		}
		f.Code, f.Reason = code, string(reason)
	case frame.TypeBusy:
		ms, err := frame.DecodeBusy(payload)
		if err != nil {
			return f, err
		}
		f.RetryAfter = time.Duration(ms) * time.Millisecond
	}
	return f, nil
}

func (c *Client) next() (frame.Header, []byte, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	return c.r.Next()
}

// ErrNotAcked is returned by WaitAck when the server answered the packet
// with something other than an ACK.
var ErrNotAcked = errors.New("servertest: packet not acknowledged")

// WaitAck reads frames until an ACK covering seq. A BUSY or ERROR for
// seq, or a connection ERROR, ends it with an error describing the frame.
func (c *Client) WaitAck(seq uint64) error {
	for {
		f, err := c.Next()
		if err != nil {
			return err
		}
		switch {
		case f.Type == frame.TypeAck && f.Seq >= seq:
			return nil
		case f.Type == frame.TypeError && (f.Seq == 0 || f.Seq == seq),
			f.Type == frame.TypeBusy && f.Seq == seq:
			return fmt.Errorf("%w: %s", ErrNotAcked, f)
		}
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }
