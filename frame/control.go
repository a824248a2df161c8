package frame

import (
	"encoding/binary"
	"slices"
	"time"
	"unicode/utf8"
)

// Hello is the payload of a HELLO frame, the first frame a client sends.
//
//	u32 capabilities     Capabilities the client supports
//	u32 window           most DATA frames the client wants unacknowledged at once
//	u32 max frame        largest payload the client accepts from the server
//	u16 n, n bytes       agent id (1-255 bytes)
//	u16 n, n bytes       auth token (0-1024 bytes; empty: none)
//	u16 n, n bytes       software name and version, free text (0-255 bytes)
type Hello struct {
	Caps     Capabilities
	Window   uint32
	MaxFrame uint32
	AgentID  []byte
	Token    []byte
	Software []byte
}

// Welcome is the payload of a WELCOME frame, the server's answer to an
// accepted HELLO.
//
//	u32 capabilities     the capabilities granted (a subset of the client's)
//	u32 window           the granted window: the client keeps at most this many DATA unacknowledged
//	u32 max frame        largest DATA payload the server accepts
//	u32 idle timeout ms  the server closes a connection silent this long; clients PING well within it (0: none)
//	u16 n, n bytes       server id, free text (0-255 bytes)
//	only when capabilities has CapDict:
//	u8 n, n × u32        the dictionary ids the server holds (1-16 of them, non-zero, distinct)
type Welcome struct {
	Caps          Capabilities
	Window        uint32
	MaxFrame      uint32
	IdleTimeoutMs uint32
	ServerID      []byte
	// Dicts are the dictionary ids the server accepts payloads compressed
	// with; on the wire only with CapDict, which AppendWelcome drops when
	// Dicts is empty.
	Dicts []uint32
}

// Handshake field limits.
const (
	MaxAgentID  = 255
	MaxToken    = 1024
	MaxSoftware = 255
	MaxReason   = 1024
)

// AppendHello appends a whole HELLO frame to dst.
func AppendHello(dst []byte, h *Hello) []byte {
	start := len(dst)
	dst = AppendHeader(dst, TypeHello, 0, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Caps))
	dst = binary.BigEndian.AppendUint32(dst, h.Window)
	dst = binary.BigEndian.AppendUint32(dst, h.MaxFrame)
	dst = appendStr16(dst, clip(h.AgentID, MaxAgentID))
	dst = appendStr16(dst, clip(h.Token, MaxToken))
	dst = appendStr16(dst, clip(h.Software, MaxSoftware))
	return finishControl(dst, start)
}

// finishControl fills in the lengths and checksum of the control frame
// whose header starts at dst[start]. The payload is built in dst itself
// rather than in a stack array: a slice handed to the CRC-32C assembly
// escapes, and would cost an allocation per frame.
func finishControl(dst []byte, start int) []byte {
	payload := dst[start+HeaderSize:]
	n := uint32(len(payload))
	fillLengths(Header(dst[start:start+HeaderSize]), 0, n, n, Checksum(payload))
	return dst
}

// DecodeHello decodes a HELLO payload. The byte fields alias b.
func DecodeHello(b []byte, h *Hello) error {
	r := reader{b: b}
	h.Caps = Capabilities(r.u32())
	h.Window = r.u32()
	h.MaxFrame = r.u32()
	h.AgentID = r.str16(MaxAgentID)
	h.Token = r.str16(MaxToken)
	h.Software = r.str16(MaxSoftware)
	if r.err != nil || len(r.b) != 0 || len(h.AgentID) == 0 || h.Window == 0 {
		return ErrBadHandshake
	}
	return nil
}

// AppendWelcome appends a whole WELCOME frame to dst.
// The ids must be non-zero and distinct (the decoder refuses others); at
// most MaxDicts are sent.
func AppendWelcome(dst []byte, w *Welcome) []byte {
	caps := w.Caps
	if len(w.Dicts) == 0 {
		caps &^= CapDict
	}
	start := len(dst)
	dst = AppendHeader(dst, TypeWelcome, 0, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(caps))
	dst = binary.BigEndian.AppendUint32(dst, w.Window)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxFrame)
	dst = binary.BigEndian.AppendUint32(dst, w.IdleTimeoutMs)
	dst = appendStr16(dst, clip(w.ServerID, MaxSoftware))
	if caps&CapDict != 0 {
		ids := w.Dicts[:min(len(w.Dicts), MaxDicts)]
		dst = append(dst, byte(len(ids)))
		for _, id := range ids {
			dst = binary.BigEndian.AppendUint32(dst, id)
		}
	}
	return finishControl(dst, start)
}

// DecodeWelcome decodes a WELCOME payload. The byte fields alias b; the
// dictionary ids are appended to w.Dicts[:0].
func DecodeWelcome(b []byte, w *Welcome) error {
	r := reader{b: b}
	w.Caps = Capabilities(r.u32())
	w.Window = r.u32()
	w.MaxFrame = r.u32()
	w.IdleTimeoutMs = r.u32()
	w.ServerID = r.str16(MaxSoftware)
	w.Dicts = w.Dicts[:0]
	if w.Caps&CapDict != 0 && r.err == nil {
		n := int(r.u8())
		if r.err != nil || n == 0 || n > MaxDicts || len(r.b) < 4*n {
			return ErrBadHandshake
		}
		for i := 0; i < n; i++ {
			id := r.u32()
			if id == 0 || slices.Contains(w.Dicts, id) {
				return ErrBadHandshake
			}
			w.Dicts = append(w.Dicts, id)
		}
	}
	if r.err != nil || len(r.b) != 0 || w.Window == 0 || w.MaxFrame == 0 {
		return ErrBadHandshake
	}
	return nil
}

// AppendAck appends an ACK frame: every DATA with sequence ≤ seq is resolved.
func AppendAck(dst []byte, seq uint64) []byte {
	return AppendHeader(dst, TypeAck, 0, seq, 0, 0, 0, 0)
}

// SeqRange is the DATA sequences First through Last, inclusive.
type SeqRange struct{ First, Last uint64 }

const sackRangeSize = 16

// MaxSackRanges is the most ranges one SACK frame carries.
const MaxSackRanges = MaxControlPayload / sackRangeSize

// AppendSack appends a SACK frame: every DATA with sequence ≤ cum is
// resolved, as with ACK cum, and every DATA in ranges is accepted. ranges
// must be valid for DecodeSack (1 to MaxSackRanges of them, ascending,
// separated by at least one sequence, all above cum+1); AppendSack panics
// otherwise, as that is a bug in the caller.
//
//	payload: ranges × (u64 first, u64 last)
func AppendSack(dst []byte, cum uint64, ranges []SeqRange) []byte {
	if err := checkSack(cum, ranges); err != nil {
		panic("BUG: frame: AppendSack: " + err.Error())
	}
	start := len(dst)
	dst = AppendHeader(dst, TypeSack, 0, cum, 0, 0, 0, 0)
	for _, r := range ranges {
		dst = binary.BigEndian.AppendUint64(dst, r.First)
		dst = binary.BigEndian.AppendUint64(dst, r.Last)
	}
	return finishControl(dst, start)
}

// DecodeSack appends the ranges of a SACK payload whose header sequence is
// cum to dst and returns it. It allocates only if dst lacks room.
func DecodeSack(b []byte, cum uint64, dst []SeqRange) ([]SeqRange, error) {
	if len(b) == 0 || len(b)%sackRangeSize != 0 || len(b) > MaxControlPayload {
		return dst, ErrBadLength
	}
	start := len(dst)
	for ; len(b) > 0; b = b[sackRangeSize:] {
		dst = append(dst, SeqRange{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])})
	}
	if err := checkSack(cum, dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// checkSack applies the rules of a SACK's ranges (docs/PROTOCOL.md 4.6).
func checkSack(cum uint64, ranges []SeqRange) error {
	if len(ranges) == 0 || len(ranges) > MaxSackRanges {
		return ErrBadLength
	}
	next := cum + 2 // a range starting at cum+1 belongs in the cumulative part
	if next < cum {
		return ErrBadSack
	}
	for i, r := range ranges {
		if r.First < next || r.Last < r.First {
			return ErrBadSack
		}
		if i+1 < len(ranges) {
			if next = r.Last + 2; next < r.Last { // no room for another range
				return ErrBadSack
			}
		}
	}
	return nil
}

// AppendPing appends a PING frame with the given nonce.
func AppendPing(dst []byte, nonce uint64) []byte {
	return AppendHeader(dst, TypePing, 0, nonce, 0, 0, 0, 0)
}

// AppendPong appends a PONG frame answering the PING with nonce.
func AppendPong(dst []byte, nonce uint64) []byte {
	return AppendHeader(dst, TypePong, 0, nonce, 0, 0, 0, 0)
}

// AppendBusy appends a BUSY frame: DATA seq was not accepted; resend it
// (on any connection) no sooner than retryAfterMs milliseconds from now.
//
//	payload: u32 retry-after ms
func AppendBusy(dst []byte, seq uint64, retryAfterMs uint32) []byte {
	start := len(dst)
	dst = AppendHeader(dst, TypeBusy, 0, seq, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, retryAfterMs)
	return finishControl(dst, start)
}

// DecodeBusy returns the retry-after of a BUSY payload in milliseconds.
func DecodeBusy(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, ErrBadLength
	}
	return binary.BigEndian.Uint32(b), nil
}

// AppendError appends an ERROR frame. seq is the rejected DATA sequence
// for a packet error, 0 for a connection error. The reason is clipped to
// MaxReason bytes, at a rune boundary.
//
//	payload: u16 code, u16 n, n bytes reason (UTF-8, for people)
func AppendError(dst []byte, seq uint64, code Code, reason string) []byte {
	return appendReason(dst, TypeError, seq, code, reason)
}

// AppendGoAway appends a GOAWAY frame: the server is draining. The client
// sends no new DATA on this connection, keeps reading ACKs for what it
// sent, and reconnects (elsewhere if it can) for new DATA.
//
//	payload: same layout as ERROR (code, reason)
func AppendGoAway(dst []byte, code Code, reason string) []byte {
	return appendReason(dst, TypeGoAway, 0, code, reason)
}

func appendReason(dst []byte, t Type, seq uint64, code Code, reason string) []byte {
	if len(reason) > MaxReason {
		// Cut before the rune that crosses the limit, so that the reason
		// stays valid UTF-8 for the people and parsers reading it.
		n := MaxReason
		for n > MaxReason-utf8.UTFMax && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	start := len(dst)
	dst = AppendHeader(dst, t, 0, seq, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(reason)))
	dst = append(dst, reason...)
	return finishControl(dst, start)
}

// DecodeReason decodes the payload of an ERROR or GOAWAY frame. The reason
// aliases b.
func DecodeReason(b []byte) (Code, []byte, error) {
	r := reader{b: b}
	code := Code(r.u16())
	reason := r.str16(MaxReason)
	if r.err != nil || len(r.b) != 0 {
		return 0, nil, ErrBadLength
	}
	return code, reason, nil
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Millis converts d to the protocol's u32 milliseconds (a BUSY's
// retry-after, a WELCOME's idle timeout), saturating: below 0 is 0, above
// 49 days is the most a u32 holds.
func Millis(d time.Duration) uint32 {
	switch ms := d.Milliseconds(); {
	case ms < 0:
		return 0
	case ms > 1<<32-1:
		return 1<<32 - 1
	default:
		return uint32(ms)
	}
}
