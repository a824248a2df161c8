package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
)

// Handler processes the packets a server receives.
//
// HandlePacket is called once per DATA frame, concurrently across
// connections and, for one connection, sequentially in sequence order —
// or, with Config.Concurrency N > 1, up to N at once, in any order. p and md, and every byte
// slice they hold, are valid only during the call: copy what you keep.
// ctx is cancelled when the connection is torn down (the server's drain
// timeout expired, or the peer went away); a slow handler should watch it.
//
// The result decides how the packet is resolved on the wire:
//
//   - nil: the packet is accepted and acknowledged (ACK). Return nil only
//     once the packet is safe, as at-least-once delivery relies on it.
//   - an error matching ErrBusy (see Busy): BUSY with a retry-after; the
//     client resends the packet later, here or elsewhere.
//   - an error carrying a *frame.Error with a packet code (≥ 0x100), e.g.
//     Reject(reason): ERROR seq=N; the packet is rejected for good and the
//     connection stays.
//   - an error carrying a *frame.Error with a connection code (< 0x100):
//     ERROR seq=0 with that code, and the connection is closed.
//   - any other error: treated as a transient failure, BUSY with
//     Config.BusyRetryAfter (the packet was not processed; it comes back).
type Handler interface {
	HandlePacket(ctx context.Context, md *Meta, p *frame.Packet) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, md *Meta, p *frame.Packet) error

// HandlePacket calls f.
func (f HandlerFunc) HandlePacket(ctx context.Context, md *Meta, p *frame.Packet) error {
	return f(ctx, md, p)
}

// Meta describes the DATA frame a packet came in. It is reused between
// calls: it is valid only during HandlePacket.
type Meta struct {
	// Remote is the peer's address.
	Remote net.Addr
	// AgentID is the agent id of the connection's HELLO. For packets
	// forwarded by logdist it names logdist; the packet's own AgentID
	// names the agent that made it.
	AgentID string
	// Identity is who the connection acts as: the Auth hook's answer, or
	// the client certificate's identity over TLS, or else AgentID.
	Identity string
	// Seq is the DATA frame's sequence number on this connection.
	Seq uint64
	// PayloadBytes is the payload size as received (compressed or not).
	PayloadBytes int
	// RawBytes is the decoded packet size (after decompression).
	RawBytes int
	// Compressed reports whether the payload was zstd-compressed.
	Compressed bool
	// Trace is the W3C trace context the packet came with, when Traced
	// (PROTOCOL.md 4.7; an invalid one is ignored): the span that sent it
	// (logdist's dispatch, for a forwarded packet) is its parent.
	Trace  frame.TraceContext
	Traced bool
}

// ErrBusy is returned (or wrapped) by a Handler that cannot take a packet
// now; the server answers BUSY with Config.BusyRetryAfter.
var ErrBusy = errors.New("server: busy, retry later")

// BusyError asks for a BUSY with a specific retry-after. It matches
// ErrBusy with errors.Is.
type BusyError struct {
	// RetryAfter is how long the client should wait before resending; it
	// is sent in whole milliseconds.
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("server: busy, retry after %s", e.RetryAfter)
}

// Is makes errors.Is(err, ErrBusy) true for a *BusyError.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Busy returns an error that makes the server answer BUSY with retry-after d.
func Busy(d time.Duration) error { return &BusyError{RetryAfter: d} }

// Reject returns an error that makes the server reject the packet for good:
// ERROR seq=N code=rejected with reason. Use it for packets that can never
// be processed; the client drops them (to its dead-letter file).
func Reject(reason string) error {
	return &frame.Error{Code: frame.CodeRejected, Msg: reason}
}

// verdict is how one DATA frame is resolved.
type verdict struct {
	kind       verdictKind
	retryAfter uint32 // BUSY: milliseconds
	code       frame.Code
	reason     string
}

type verdictKind uint8

const (
	verdictAck verdictKind = iota
	verdictBusy
	verdictReject // ERROR seq=N
	verdictFatal  // ERROR seq=0 and close
)

// classify maps a Handler's result to a verdict.
func classify(err error, defaultRetry time.Duration) verdict {
	if err == nil {
		return verdict{kind: verdictAck}
	}
	var be *BusyError
	if errors.As(err, &be) {
		return verdict{kind: verdictBusy, retryAfter: frame.Millis(be.RetryAfter)}
	}
	if errors.Is(err, ErrBusy) {
		return verdict{kind: verdictBusy, retryAfter: frame.Millis(defaultRetry)}
	}
	var fe *frame.Error
	if errors.As(err, &fe) {
		if fe.Code.Fatal() {
			return verdict{kind: verdictFatal, code: fe.Code, reason: err.Error()}
		}
		return verdict{kind: verdictReject, code: fe.Code, reason: err.Error()}
	}
	return verdict{kind: verdictBusy, retryAfter: frame.Millis(defaultRetry), reason: err.Error()}
}
