package client

import (
	"errors"
	"fmt"

	"github.com/logdist/logdist/frame"
)

// Sentinel errors. Compare with errors.Is; the errors returned wrap them
// with the details.
var (
	// ErrInvalidConfig is returned by Config.Validate and New.
	ErrInvalidConfig = errors.New("client: invalid config")

	// ErrClosed is returned by Send and Flush after Close, and by Close
	// when it had to drop unresolved messages.
	ErrClosed = errors.New("client: closed")

	// ErrFull is returned by Send without Config.Block when MaxPending
	// bytes are already pending: the server is slow or unreachable.
	ErrFull = errors.New("client: pending buffer full (Config.MaxPending); the server is slow or unreachable")

	// ErrTooLarge is returned by Send for a message that cannot fit in any
	// frame the server accepts.
	ErrTooLarge = errors.New("client: message too large for one frame")

	// ErrRejected is wrapped by the error Flush returns when packets were
	// rejected for good (ERROR with a per-packet code) and by RejectError.
	ErrRejected = errors.New("client: packets rejected")

	// ErrAuth means a server refused the token for the agent id (ERROR
	// code auth in the handshake). It is permanent: the client stops
	// connecting and Send, Flush and Close return it. Fix the token.
	ErrAuth = errors.New("client: server rejected the token")

	// ErrHandshake means a server refused the HELLO as malformed (ERROR
	// code bad_handshake). Permanent, like ErrAuth: the client and server
	// disagree on the protocol or the agent id is not acceptable.
	ErrHandshake = errors.New("client: server rejected the handshake")
)

// Result is the outcome of one packet, passed to Config.OnResult.
type Result struct {
	PacketID uint64
	Messages int
	// Err is nil when the packet was acknowledged, otherwise a
	// *RejectError: the packet was rejected for good and is not resent.
	Err error
}

// RejectError describes a packet rejected for good, by the server (an
// ERROR with a per-packet code) or locally (a message that no longer fits
// the max frame of the server the client reconnected to).
type RejectError struct {
	PacketID uint64
	Messages int
	Addr     string // the server that rejected it; empty if rejected locally
	Code     frame.Code
	Reason   string
}

func (e *RejectError) Error() string {
	by := e.Addr
	if by == "" {
		by = "the client"
	}
	return fmt.Sprintf("client: packet %d (%d messages) rejected by %s: %s: %s", e.PacketID, e.Messages, by, e.Code, e.Reason)
}

// Unwrap returns ErrRejected.
func (e *RejectError) Unwrap() error { return ErrRejected }

// HandshakeError is a permanent refusal of the HELLO by a server. It wraps
// ErrAuth or ErrHandshake and the server's *frame.RemoteError.
type HandshakeError struct {
	Addr    string
	AgentID string
	Remote  *frame.RemoteError
}

func (e *HandshakeError) Error() string {
	what := "the handshake"
	if e.Remote.Code == frame.CodeAuth {
		what = "the token"
	}
	return fmt.Sprintf("client: server %s rejected %s for agent %q: %s: %s", e.Addr, what, e.AgentID, e.Remote.Code, e.Remote.Reason)
}

// Unwrap returns ErrAuth or ErrHandshake, and the remote error.
func (e *HandshakeError) Unwrap() []error {
	if e.Remote.Code == frame.CodeAuth {
		return []error{ErrAuth, e.Remote}
	}
	return []error{ErrHandshake, e.Remote}
}
