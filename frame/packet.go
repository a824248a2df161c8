package frame

import (
	"encoding/binary"
)

// Packet is the payload of a DATA frame: a batch of log messages from one
// agent.
//
// Raw packet layout (what zstd compresses; big-endian):
//
//	u64 packet id        unique per agent; (agent id, packet id) identifies a packet for dedup
//	u16 n, n bytes       agent id
//	u16 n, n bytes       trace id (n = 0: none)
//	u32 count            number of messages; equals the header's count
//	count × message:
//	  i64 timestamp      Unix nanoseconds
//	  u8  severity       0-7
//	  u8  facility       0-23
//	  u16 attr count
//	  u16 n, n bytes     hostname
//	  u16 n, n bytes     app name
//	  u32 n, n bytes     body
//	  attr count × (u16 n, n bytes key; u32 n, n bytes value)
//
// When decoded, the byte slices of a Packet alias the buffer it was decoded
// from and are valid only as long as that buffer is (see Decoder.Decode).
type Packet struct {
	ID       uint64
	AgentID  []byte
	TraceID  []byte
	Messages []Message
	// attrs backs every decoded message's Attrs, so that decoding into a
	// reused Packet does not allocate per message.
	attrs []Attr
}

// Message is one log message.
type Message struct {
	Timestamp int64 // Unix nanoseconds
	Severity  Severity
	Facility  uint8
	Hostname  []byte
	App       []byte
	Body      []byte
	Attrs     []Attr
}

// Attr is a key/value attribute of a message (RFC 5424 structured data
// lands here as "sdid.param" keys).
type Attr struct {
	Key, Value []byte
}

const (
	packetFixed  = 8 + 2 + 2 + 4
	messageFixed = 8 + 1 + 1 + 2 + 2 + 2 + 4
	attrFixed    = 2 + 4
)

// RawSize returns the encoded size of p before compression.
func (p *Packet) RawSize() int {
	n := packetFixed + len(p.AgentID) + len(p.TraceID)
	for i := range p.Messages {
		n += MessageSize(&p.Messages[i])
	}
	return n
}

// Validate checks p against the limits a receiver will apply, so that a
// sender finds out before it sends.
func (p *Packet) Validate(lim *Limits) error {
	if len(p.Messages) == 0 || uint64(len(p.Messages)) > uint64(lim.MaxMessages) {
		return ErrTooManyMessages
	}
	mf := int(lim.MaxField)
	if len(p.AgentID) > mf || len(p.TraceID) > mf {
		return ErrFieldTooLong
	}
	for i := range p.Messages {
		m := &p.Messages[i]
		if len(m.Hostname) > mf || len(m.App) > mf || uint64(len(m.Body)) > uint64(lim.MaxBody) {
			return ErrFieldTooLong
		}
		if m.Severity > SevDebug || m.Facility > MaxFacility {
			return ErrBadSeverity
		}
		if len(m.Attrs) > int(lim.MaxAttrs) {
			return ErrTooManyAttrs
		}
		for _, a := range m.Attrs {
			if len(a.Key) > mf || uint64(len(a.Value)) > uint64(lim.MaxBody) {
				return ErrFieldTooLong
			}
		}
	}
	if uint64(p.RawSize()) > uint64(lim.MaxRaw) {
		return ErrRawTooLarge
	}
	return nil
}

// AppendPacket appends the raw (uncompressed) encoding of p to dst. Field
// lengths are not checked here beyond what the encoding can represent:
// call Validate first. It panics on a field too long for its length prefix,
// which Validate with any legal Limits rules out.
func AppendPacket(dst []byte, p *Packet) []byte {
	dst = binary.BigEndian.AppendUint64(dst, p.ID)
	dst = appendStr16(dst, p.AgentID)
	dst = appendStr16(dst, p.TraceID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p.Messages)))
	for i := range p.Messages {
		dst = AppendMessage(dst, &p.Messages[i])
	}
	return dst
}

func appendStr16(dst, s []byte) []byte {
	if len(s) > 0xFFFF {
		panic("BUG: frame: 16-bit field longer than 65535 bytes; Packet.Validate was not called")
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendStr32(dst, s []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// DecodePacket decodes a raw packet from b into p, reusing p's slices. The
// decoded byte fields alias b. count is the header's message count; the
// packet must agree with it. It checks every limit before the memory the
// limit protects is touched, and allocates only when p's slices must grow,
// so decoding into a reused Packet does not allocate. Growing is bounded by
// the payload: at most one Message (112 bytes on 64-bit) per 20 payload
// bytes and one Attr (48 bytes) per 6, so a receiver budgets about 8 bytes
// of Go structs per raw byte for a fresh Packet (the byte fields alias b).
func DecodePacket(b []byte, count uint32, lim *Limits, p *Packet) error {
	r := reader{b: b}
	p.ID = r.u64()
	mf := int(lim.MaxField)
	p.AgentID = r.str16(mf)
	p.TraceID = r.str16(mf)
	n := r.u32()
	if r.err != nil {
		return r.err
	}
	if n != count {
		return ErrCountMismatch
	}
	if n > lim.MaxMessages {
		return ErrTooManyMessages
	}
	// A message is at least messageFixed bytes: a lying count cannot make
	// us allocate more than the payload justifies.
	if uint64(n)*messageFixed > uint64(len(r.b)) {
		return ErrTruncated
	}
	if cap(p.Messages) < int(n) {
		p.Messages = make([]Message, n)
	}
	p.Messages = p.Messages[:n]
	p.attrs = p.attrs[:0]
	maxAttrs := int(lim.MaxAttrs)
	for i := range p.Messages {
		m := &p.Messages[i]
		m.Timestamp = int64(r.u64())
		m.Severity = Severity(r.u8())
		m.Facility = r.u8()
		na := int(r.u16())
		m.Hostname = r.str16(mf)
		m.App = r.str16(mf)
		m.Body = r.str32(lim.MaxBody)
		if r.err != nil {
			return r.err
		}
		if m.Severity > SevDebug || m.Facility > MaxFacility {
			return ErrBadSeverity
		}
		if na > maxAttrs {
			return ErrTooManyAttrs
		}
		if na*attrFixed > len(r.b) {
			return ErrTruncated
		}
		start := len(p.attrs)
		if need := start + na; need > cap(p.attrs) {
			// Grow once, to what the whole packet needs, rather than by
			// append's doubling: a packet made of attributes then costs one
			// Attr per attribute, and a reused Packet stops growing.
			c := start + countAttrs(r.b, na, len(p.Messages)-i-1)
			a := make([]Attr, start, max(c, need))
			copy(a, p.attrs)
			p.attrs = a
		}
		for j := 0; j < na; j++ {
			k := r.str16(mf)
			v := r.str32(lim.MaxBody)
			p.attrs = append(p.attrs, Attr{k, v})
		}
		if r.err != nil {
			return r.err
		}
		// Store the range; the slice is fixed up below because p.attrs may
		// still move while it grows.
		m.Attrs = p.attrs[start:len(p.attrs):len(p.attrs)]
	}
	if len(r.b) != 0 {
		return ErrTrailing
	}
	if len(p.attrs) > 0 {
		off := 0
		for i := range p.Messages {
			m := &p.Messages[i]
			k := len(m.Attrs)
			m.Attrs = p.attrs[off : off+k : off+k]
			off += k
		}
	}
	return nil
}

// PacketIDs reads the packet id and the agent id from the start of a raw
// packet, without decoding the rest: what a log line about a packet that
// failed to decode (or that an analyzer refused) can still say about it.
// agentID aliases raw. ok is false if raw is too short for them, or the
// agent id is longer than maxField.
func PacketIDs(raw []byte, maxField uint16) (id uint64, agentID []byte, ok bool) {
	r := reader{b: raw}
	id = r.u64()
	agentID = r.str16(int(maxField))
	if r.err != nil {
		return 0, nil, false
	}
	return id, agentID, true
}

// countAttrs returns na plus the attributes of the next msgs messages, for
// b positioned at the first of na attributes. It reads only lengths; on
// bytes that do not parse it returns what it counted so far (the decoder
// reports the error).
func countAttrs(b []byte, na, msgs int) int {
	r := reader{b: b}
	skip := func(n int) {
		if len(r.b) < n {
			r.fail(ErrTruncated)
			return
		}
		r.b = r.b[n:]
	}
	skipAttrs := func(n int) {
		for ; n > 0 && r.err == nil; n-- {
			skip(int(r.u16()))
			skip(int(r.u32()))
		}
	}
	total := na
	skipAttrs(na)
	for ; msgs > 0 && r.err == nil; msgs-- {
		skip(8 + 1 + 1)
		n := int(r.u16())
		skip(int(r.u16()))
		skip(int(r.u16()))
		skip(int(r.u32()))
		if r.err != nil || n*attrFixed > len(r.b) {
			break
		}
		total += n
		skipAttrs(n)
	}
	return total
}

// reader is a bounds-checked cursor over a payload. After the first error
// every read returns zero values and err keeps the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.fail(ErrTruncated)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.fail(ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.fail(ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail(ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.fail(ErrTruncated)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str16(max int) []byte {
	n := int(r.u16())
	if r.err != nil {
		return nil
	}
	if n > max {
		r.fail(ErrFieldTooLong)
		return nil
	}
	if n == 0 {
		return nil
	}
	return r.bytes(n)
}

func (r *reader) str32(max uint32) []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if n > max {
		r.fail(ErrFieldTooLong)
		return nil
	}
	if n == 0 {
		return nil
	}
	return r.bytes(int(n))
}
