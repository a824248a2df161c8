// Package session is the logdist protocol's state machine, once per side,
// with no I/O: bytes in, frames to write and events out. docs/PROTOCOL.md
// is the normative text; this package is where its rules live in code.
//
// A Server is the accepting side of one connection: logdist towards an
// agent (package proxy, on a gnet event loop), an analyzer towards logdist
// or an agent (package frame/server, a goroutine per connection), and the
// scriptable test server (frame/client/clienttest). It checks each header
// against the connection's state before a byte of payload is buffered
// (before HELLO only a HELLO of at most 4 KiB is admitted), does the
// HELLO/WELCOME handshake through one Auth hook, applies the sequence,
// window and gap rules to DATA, keeps the resolution of every DATA
// (accepted, BUSY, rejected) until it is reported, and writes the answers
// in the order the protocol requires: BUSY and ERROR before the ACK or SACK
// that covers them.
//
// A Client is the connecting side: logdist towards an analyzer (package
// proxy), the agent library (frame/client) and logbench (bench). It builds
// the HELLO, reads the WELCOME or the refusal, numbers DATA and keeps each
// unresolved one's item (a record, a packet, a pool index: the type
// parameter) by sequence, checks every ACK, SACK, BUSY and ERROR against
// what was sent, hands each resolved item to a Resolver exactly once,
// answers PINGs and matches PONGs, and drains after GOAWAY.
//
// # Using a session
//
// A session never reads or writes a socket and never reads the clock: the
// owner passes bytes and times in and writes what the session appended to
// its output. The flow for a frame is the same on both sides:
//
//	h, err := s.Admit(buf)            // 32 header bytes; err: fatal, write s.Output() and close
//	// ... buffer h.FrameLen() bytes, check h.Check(payload) ...
//	ev, err := s.Handle(h, payload)   // (client: Handle(h, payload, now))
//
// A session is not safe for concurrent use; an owner serving it from two
// goroutines (a reader and a writer) guards it with its own mutex.
// Sessions do not allocate on the per-packet path once their rings have
// grown to the window: the proxy pins that with testing.AllocsPerRun.
//
// # Errors
//
// A *Violation means the peer broke a rule: the session has appended
// ERROR seq 0 with the violation's code to its output; the owner writes
// the output and closes. A *RemoteError (frame.RemoteError) means the peer
// closed the connection with a fatal ERROR: close without answering. A
// *Refused from a client's handshake carries the server's refusal; its
// Permanent method says whether retrying can help.
package session
