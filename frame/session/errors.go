package session

import (
	"errors"
	"fmt"

	"github.com/logdist/logdist/frame"
)

// Violation is a rule of the protocol the peer broke. The session that
// returns it has appended ERROR seq 0 with Code and Reason to its output
// and will accept nothing more: write the output, then close.
type Violation struct {
	Code   frame.Code
	Reason string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("session: peer broke the protocol: %s: %s", v.Code, v.Reason)
}

// Refused is a server's refusal of a client's HELLO: ERROR with a fatal
// code instead of WELCOME.
type Refused struct {
	Code   frame.Code
	Reason string
}

func (r *Refused) Error() string {
	return fmt.Sprintf("session: server refused the handshake: %s: %s", r.Code, r.Reason)
}

// Permanent reports whether retrying cannot help: the token or the HELLO
// itself was refused (PROTOCOL.md 9: a client reports these to its user
// and does not reconnect). Overloaded, shutdown and the rest are worth
// another try, elsewhere if possible.
func (r *Refused) Permanent() bool {
	return r.Code == frame.CodeAuth || r.Code == frame.CodeBadHandshake
}

// ErrClosed is returned by Handle once the session has ended: after a
// Violation, a fatal ERROR either way, or Fatal.
var ErrClosed = errors.New("session: closed")

func violation(code frame.Code, format string, args ...any) *Violation {
	return &Violation{Code: code, Reason: fmt.Sprintf(format, args...)}
}
