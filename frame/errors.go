package frame

import (
	"errors"
	"fmt"
	"slices"
)

// Code is a machine-readable error code carried in ERROR frames.
//
// Codes below 0x100 are connection errors: the stream can no longer be
// trusted (or the peer is not welcome), the sender writes ERROR with
// sequence 0 and closes. Codes from 0x100 up reject one DATA packet: the
// ERROR carries that packet's sequence, the packet is resolved for good
// (not to be resent) and the connection stays open.
type Code uint16

// Connection error codes (fatal: ERROR seq=0, then close).
const (
	CodeProtocol         Code = 0x01 // a rule of the protocol was broken (bad flags, reserved bits, frame out of order)
	CodeBadMagic         Code = 0x02 // the first bytes of a frame are not "LD": not our protocol, or the stream lost sync
	CodeBadVersion       Code = 0x03 // unknown protocol version
	CodeBadType          Code = 0x04 // unknown frame type
	CodeFrameTooLarge    Code = 0x05 // payload length above the negotiated/configured maximum
	CodeBadChecksum      Code = 0x06 // payload CRC-32C mismatch
	CodeBadHandshake     Code = 0x07 // HELLO/WELCOME malformed or missing
	CodeAuth             Code = 0x08 // token unknown or not allowed for this agent / address
	CodeHandshakeTimeout Code = 0x09 // no HELLO within the handshake timeout
	CodeIdleTimeout      Code = 0x0A // nothing received within the idle timeout
	CodeWindowExceeded   Code = 0x0B // more DATA unacknowledged than the granted window
	CodeBadSequence      Code = 0x0C // DATA sequence not the previous one plus one
	CodeShutdown         Code = 0x0D // the peer is shutting down
	CodeInternal         Code = 0x0E // the peer failed; retry elsewhere
	CodeOverloaded       Code = 0x0F // too many connections; retry later or elsewhere
)

// Packet error codes (ERROR seq=<the DATA>; that packet is rejected, the
// connection stays).
const (
	CodeMalformed       Code = 0x101 // the packet does not decode
	CodeTooManyMessages Code = 0x102 // more messages than the limit, or count disagrees with the header
	CodeFieldTooLong    Code = 0x103 // a field exceeds its limit
	CodeBadCompression  Code = 0x104 // zstd payload does not decompress
	CodeRawTooLarge     Code = 0x105 // decompressed size above the limit or not the announced raw length (zip bomb)
	CodeRejected        Code = 0x106 // the analyzer refused the packet as unprocessable
	CodeUnknownDict     Code = 0x107 // the zstd payload names a dictionary the receiver does not hold
)

// Fatal reports whether the code closes the connection.
func (c Code) Fatal() bool { return c < 0x100 }

var codeNames = map[Code]string{
	CodeProtocol:         "protocol",
	CodeBadMagic:         "bad_magic",
	CodeBadVersion:       "bad_version",
	CodeBadType:          "bad_type",
	CodeFrameTooLarge:    "frame_too_large",
	CodeBadChecksum:      "bad_checksum",
	CodeBadHandshake:     "bad_handshake",
	CodeAuth:             "auth",
	CodeHandshakeTimeout: "handshake_timeout",
	CodeIdleTimeout:      "idle_timeout",
	CodeWindowExceeded:   "window_exceeded",
	CodeBadSequence:      "bad_sequence",
	CodeShutdown:         "shutdown",
	CodeInternal:         "internal",
	CodeOverloaded:       "overloaded",
	CodeMalformed:        "malformed",
	CodeTooManyMessages:  "too_many_messages",
	CodeFieldTooLong:     "field_too_long",
	CodeBadCompression:   "bad_compression",
	CodeRawTooLarge:      "raw_too_large",
	CodeRejected:         "rejected",
	CodeUnknownDict:      "unknown_dictionary",
}

// Codes returns every code this version defines, connection codes first,
// in ascending order (metric label values that exist from the start).
func Codes() []Code {
	cs := make([]Code, 0, len(codeNames))
	for c := range codeNames {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	return cs
}

// String returns the code's short snake_case name, usable as a metric label.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code_0x%x", uint16(c))
}

// Error is a protocol error with its wire code. The sentinels below are
// *Error values; compare with errors.Is and get the code with CodeOf.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Sentinel errors, one per way a peer can break the protocol. Each maps to
// the code sent in the ERROR frame.
var (
	ErrBadMagic        = &Error{CodeBadMagic, "frame: bad magic (not a logdist frame, or the stream lost sync)"}
	ErrTLSOnPlaintext  = &Error{CodeBadMagic, "frame: a TLS handshake on a plaintext port: connect without TLS, or to the TLS port"}
	ErrHTTPOnFramePort = &Error{CodeBadMagic, "frame: an HTTP request on the frame port: the HTTP API is on the admin port"}
	ErrBadVersion      = &Error{CodeBadVersion, "frame: unsupported protocol version"}
	ErrBadType         = &Error{CodeBadType, "frame: unknown frame type"}
	ErrBadFlags        = &Error{CodeProtocol, "frame: unknown flags or compression on a frame type that forbids it"}
	ErrReserved        = &Error{CodeProtocol, "frame: reserved header bytes are not zero"}
	ErrFrameTooLarge   = &Error{CodeFrameTooLarge, "frame: payload length above the maximum frame size"}
	ErrControlTooLarge = &Error{CodeFrameTooLarge, "frame: control frame payload above 4096 bytes"}
	ErrBadLength       = &Error{CodeProtocol, "frame: header lengths inconsistent with the frame type"}
	ErrBadChecksum     = &Error{CodeBadChecksum, "frame: payload checksum mismatch"}
	ErrBadHandshake    = &Error{CodeBadHandshake, "frame: malformed HELLO or WELCOME"}
	ErrBadSack         = &Error{CodeProtocol, "frame: SACK ranges out of order, overlapping, or not above the cumulative sequence"}
	ErrTruncated       = &Error{CodeMalformed, "frame: payload ends inside a field"}
	ErrTrailing        = &Error{CodeMalformed, "frame: bytes left over after the payload's last field"}
	ErrTooManyMessages = &Error{CodeTooManyMessages, "frame: packet has more messages than allowed"}
	ErrCountMismatch   = &Error{CodeTooManyMessages, "frame: packet message count disagrees with the header"}
	ErrTooManyAttrs    = &Error{CodeTooManyMessages, "frame: message has more attributes than allowed"}
	ErrFieldTooLong    = &Error{CodeFieldTooLong, "frame: field longer than allowed"}
	ErrBadSeverity     = &Error{CodeMalformed, "frame: severity above 7 or facility above 23"}
	ErrBadCompression  = &Error{CodeBadCompression, "frame: zstd payload does not decompress"}
	ErrRawTooLarge     = &Error{CodeRawTooLarge, "frame: decompressed size above the limit"}
	ErrRawMismatch     = &Error{CodeRawTooLarge, "frame: decompressed size differs from the header's raw length"}
	// ErrUnknownDictionary: the payload's zstd frame names a dictionary
	// the receiver does not hold (frame.DictID says which).
	ErrUnknownDictionary = &Error{CodeUnknownDict, "frame: the zstd payload names a dictionary this receiver does not hold"}
)

// CodeOf returns the wire code for err: the code of the *Error in its chain,
// or CodeInternal.
func CodeOf(err error) Code {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return CodeInternal
}

// RemoteError is an ERROR frame received from the peer.
type RemoteError struct {
	Seq    uint64 // the rejected DATA sequence, or 0 for a connection error
	Code   Code
	Reason string
}

func (e *RemoteError) Error() string {
	if e.Seq != 0 {
		return fmt.Sprintf("frame: peer rejected packet seq %d: %s: %s", e.Seq, e.Code, e.Reason)
	}
	return fmt.Sprintf("frame: peer closed the connection: %s: %s", e.Code, e.Reason)
}
