package frame

import (
	"encoding/binary"
	"encoding/hex"
)

// TraceSize is the size of a TraceContext on the wire.
const TraceSize = 26

// TraceContext is a W3C trace context (traceparent) in binary, as a DATA
// frame with FlagTrace carries it ahead of its packet (PROTOCOL.md 4.7):
//
//	u8     version      0
//	[16]   trace id     not all zero
//	[8]    parent id    the sender's span; not all zero
//	u8     trace flags  bit 0: sampled
//
// It sits outside the compression and inside the checksum, so a forwarder
// reads it (and puts its own span in parent id) without decompressing.
type TraceContext [TraceSize]byte

// NewTraceContext returns the context of span spanID in trace traceID.
func NewTraceContext(traceID [16]byte, spanID [8]byte, sampled bool) TraceContext {
	var t TraceContext
	copy(t[1:17], traceID[:])
	copy(t[17:25], spanID[:])
	if sampled {
		t[25] = 1
	}
	return t
}

// TraceID returns the trace id.
func (t *TraceContext) TraceID() (id [16]byte) { copy(id[:], t[1:17]); return id }

// SpanID returns the parent (sender's) span id.
func (t *TraceContext) SpanID() (id [8]byte) { copy(id[:], t[17:25]); return id }

// Sampled reports whether the sender records the trace.
func (t *TraceContext) Sampled() bool { return t[25]&1 != 0 }

// Valid reports whether t can be used: version 0 and non-zero ids.
func (t *TraceContext) Valid() bool {
	return t[0] == 0 && binary.BigEndian.Uint64(t[1:9])|binary.BigEndian.Uint64(t[9:17]) != 0 &&
		binary.BigEndian.Uint64(t[17:25]) != 0
}

// String returns t as a traceparent header value
// ("00-<trace id>-<parent id>-<flags>").
func (t *TraceContext) String() string {
	return "00-" + hex.EncodeToString(t[1:17]) + "-" + hex.EncodeToString(t[17:25]) + "-" + hex.EncodeToString(t[25:26])
}

// TraceOf returns the trace context of the DATA frame fb (header and
// payload), if it carries one.
func TraceOf(fb []byte) (TraceContext, bool) {
	var t TraceContext
	if len(fb) < HeaderSize+TraceSize || !Header(fb).Traced() {
		return t, false
	}
	copy(t[:], fb[HeaderSize:])
	return t, true
}

// SetTraceParent puts spanID in the trace context of the traced DATA frame
// fb, in place, and updates its checksum: a forwarder makes its own span
// the parent of the next hop's.
func SetTraceParent(fb []byte, spanID [8]byte) {
	h := Header(fb)
	copy(fb[HeaderSize+17:HeaderSize+25], spanID[:])
	binary.BigEndian.PutUint32(h[28:32], Checksum(fb[HeaderSize:h.FrameLen()]))
}

// AppendWithTrace appends to dst the DATA frame fb carrying t: its trace
// context replaced, or one added. The checksum is computed again.
func AppendWithTrace(dst, fb []byte, t *TraceContext) []byte {
	h := Header(fb)
	body := fb[HeaderSize:h.FrameLen()]
	if h.Traced() {
		body = body[TraceSize:]
	}
	start := len(dst)
	dst = append(dst, fb[:HeaderSize]...)
	dst = append(dst, t[:]...)
	dst = append(dst, body...)
	nh := Header(dst[start : start+HeaderSize])
	nh[4] |= byte(FlagTrace)
	binary.BigEndian.PutUint32(nh[8:12], uint32(TraceSize+len(body)))
	binary.BigEndian.PutUint32(nh[28:32], Checksum(dst[start+HeaderSize:]))
	return dst
}

// AppendWithoutTrace appends to dst the DATA frame fb without its trace
// context (for a receiver not granted CapTrace). The checksum is computed
// again.
func AppendWithoutTrace(dst, fb []byte) []byte {
	h := Header(fb)
	if !h.Traced() {
		return append(dst, fb[:h.FrameLen()]...)
	}
	body := fb[HeaderSize+TraceSize : h.FrameLen()]
	start := len(dst)
	dst = append(dst, fb[:HeaderSize]...)
	dst = append(dst, body...)
	nh := Header(dst[start : start+HeaderSize])
	nh[4] &^= byte(FlagTrace)
	binary.BigEndian.PutUint32(nh[8:12], uint32(len(body)))
	binary.BigEndian.PutUint32(nh[28:32], Checksum(body))
	return dst
}

// StripTrace removes the trace context of the traced DATA frame fb in
// place (the packet moves up) and returns the shorter frame, its checksum
// computed again.
func StripTrace(fb []byte) []byte {
	h := Header(fb)
	n := h.FrameLen()
	copy(fb[HeaderSize:], fb[HeaderSize+TraceSize:n])
	fb = fb[:n-TraceSize]
	h[4] &^= byte(FlagTrace)
	binary.BigEndian.PutUint32(h[8:12], uint32(len(fb)-HeaderSize))
	binary.BigEndian.PutUint32(h[28:32], Checksum(fb[HeaderSize:]))
	return fb
}
