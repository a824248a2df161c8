// Package frame is logdist's wire format: the frame header, the packet
// encoding, zstd compression, checksums and limits. Agents, logdist and
// analyzers all speak it; docs/PROTOCOL.md is the normative description
// and repeats everything below in prose.
//
// # Frame layout (version 1)
//
// Every frame is a 32-byte header followed by PayloadLen bytes of payload.
// Integers are big-endian (network byte order).
//
//	off len field
//	  0   2 magic        0x4C44 ("LD")
//	  2   1 version      1
//	  3   1 type         Type (HELLO, DATA, ...)
//	  4   1 flags        Flags; bit 0 = payload is one zstd frame
//	  5   3 reserved     zero
//	  8   4 payload len  bytes of payload that follow the header
//	 12   4 raw len      payload bytes after decompression (== payload len if not compressed)
//	 16   8 sequence     DATA: per-connection sequence (1, 2, 3, ...); ACK: cumulative;
//	                     BUSY/ERROR: the DATA sequence they answer (0 = none); PING/PONG: nonce
//	 24   4 count        DATA: messages in the packet; otherwise 0
//	 28   4 crc          CRC-32C (Castagnoli) of the payload bytes as sent (0 for no payload)
//
// The header carries everything a forwarder needs (length, message count,
// uncompressed size, checksum), so logdist can validate, count and balance a
// DATA frame without decompressing it.
//
// # Protocol flow
//
//	client                         server
//	HELLO(agent, token, caps, window, max frame) ->
//	                               <- WELCOME(caps, window, max frame, idle timeout)
//	                                  or ERROR(code) and close
//	DATA seq=1 ->
//	DATA seq=2 ->                     (at most window DATA frames unacknowledged)
//	                               <- ACK seq=2 (1 and 2 are resolved)
//	DATA seq=3 ->
//	                               <- BUSY seq=3 retry-after=50ms (3 was not accepted: resend later)
//	                               <- ERROR seq=4 code=malformed (4 rejected for good; connection stays)
//	PING seq=n ->                  <- PONG seq=n (either side may ping)
//	                               <- GOAWAY (draining: send no new DATA here, reconnect elsewhere)
//	                               <- ERROR seq=0 code=... (fatal) and close
//
// # Version history
//
//	1  2026-11  first version.
package frame

// Magic is the first two bytes of every frame: "LD".
const Magic uint16 = 0x4C44

// Version is the protocol version this package speaks.
const Version uint8 = 1

// HeaderSize is the fixed size of a frame header in bytes.
const HeaderSize = 32

// Type is a frame type, byte 3 of the header.
type Type uint8

// Frame types. The payload layout of each is described next to it and in
// docs/PROTOCOL.md.
const (
	TypeHello   Type = 0x01 // client → server; payload: Hello
	TypeWelcome Type = 0x02 // server → client; payload: Welcome
	TypeData    Type = 0x03 // client → server; payload: one Packet (maybe zstd); seq = per-connection DATA sequence
	TypeAck     Type = 0x04 // server → client; no payload; seq = every DATA ≤ seq is resolved
	TypeBusy    Type = 0x05 // server → client; payload: u32 retry-after ms; seq = the DATA not accepted
	TypePing    Type = 0x06 // either way; no payload; seq = nonce
	TypePong    Type = 0x07 // either way; no payload; seq = the PING's nonce
	TypeError   Type = 0x08 // either way; payload: ErrorPayload; seq = rejected DATA, or 0 (fatal: close follows)
	TypeGoAway  Type = 0x09 // server → client; payload: ErrorPayload with the reason; no new DATA on this connection
	TypeSack    Type = 0x0A // server → client, with CapSack only; payload: SeqRanges accepted; seq = cumulative, as ACK

	// MaxType is the highest frame type of this protocol version: tables
	// indexed by type have MaxType+1 entries.
	MaxType = TypeSack
)

var typeNames = [...]string{
	TypeHello:   "HELLO",
	TypeWelcome: "WELCOME",
	TypeData:    "DATA",
	TypeAck:     "ACK",
	TypeBusy:    "BUSY",
	TypePing:    "PING",
	TypePong:    "PONG",
	TypeError:   "ERROR",
	TypeGoAway:  "GOAWAY",
	TypeSack:    "SACK",
}

// String returns the frame type's protocol name, e.g. "DATA".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "UNKNOWN"
}

// Valid reports whether t is a frame type of this protocol version.
func (t Type) Valid() bool { return t >= TypeHello && t <= MaxType }

// Flags is the header's flags byte.
type Flags uint8

const (
	// FlagZstd marks a payload that is one zstd frame; RawLen is its
	// decompressed size. Only DATA frames may set it.
	FlagZstd Flags = 1 << 0
	// FlagTrace marks a DATA payload that begins with a TraceContext,
	// outside the compression (PROTOCOL.md 4.7). Only a peer granted
	// CapTrace may send it.
	FlagTrace Flags = 1 << 1

	flagsKnown = FlagZstd | FlagTrace
)

// SeqGapWindows bounds, in windows, how far a client's newest DATA runs
// ahead of its oldest unresolved one: a client sends DATA seq only if
// seq − oldest < SeqGapWindows × window, and a server accepts at least
// that (logdist accepts twice as much). The window alone does not bound it
// once SACK, BUSY or ERROR resolve packets out of order.
const SeqGapWindows = 8

// Capability bits, exchanged in HELLO and WELCOME.
type Capabilities uint32

const (
	// CapZstd: the sender of the HELLO/WELCOME accepts zstd-compressed DATA.
	// logdist forwards payloads as they came, so analyzers must grant it.
	CapZstd Capabilities = 1 << 0
	// CapSack: the client accepts SACK frames, which accept DATA out of
	// order (logdist spreads one connection's packets over analyzers that
	// answer at different speeds; with cumulative ACKs alone every packet
	// would wait for the slowest of them).
	CapSack Capabilities = 1 << 1
	// CapTrace: the receiver of DATA accepts FlagTrace (a W3C trace
	// context ahead of the packet), so a forwarder reads it without
	// decompressing.
	CapTrace Capabilities = 1 << 2
	// CapDict: the receiver of DATA accepts payloads compressed with a zstd
	// dictionary. A client offers it when it holds dictionaries; a server
	// that grants it lists the dictionary ids it holds in WELCOME
	// (Welcome.Dicts), and the client compresses only with one of those.
	// Each compressed payload names its dictionary in its zstd frame
	// header (DictID), so a forwarder routes it without decompressing.
	CapDict Capabilities = 1 << 3
)

// Severity is the syslog severity of a message (0 emergency … 7 debug).
type Severity uint8

// Syslog severities (RFC 5424 section 6.2.1).
const (
	SevEmergency Severity = iota
	SevAlert
	SevCritical
	SevError
	SevWarning
	SevNotice
	SevInfo
	SevDebug
)

var severityNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// String returns the syslog keyword of the severity ("err", "info", ...).
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "invalid"
}

// ParseSeverity accepts a syslog keyword ("info", "warning", "err", …, also
// "error", "warn", "crit", "emerg", "critical", "emergency") or a digit 0-7.
func ParseSeverity(s string) (Severity, bool) {
	switch s {
	case "emerg", "emergency", "panic", "0":
		return SevEmergency, true
	case "alert", "1":
		return SevAlert, true
	case "crit", "critical", "2":
		return SevCritical, true
	case "err", "error", "3":
		return SevError, true
	case "warning", "warn", "4":
		return SevWarning, true
	case "notice", "5":
		return SevNotice, true
	case "info", "6":
		return SevInfo, true
	case "debug", "7":
		return SevDebug, true
	}
	return 0, false
}

// MaxFacility is the largest syslog facility code (local7).
const MaxFacility = 23
