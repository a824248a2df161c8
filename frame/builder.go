package frame

import "encoding/binary"

// AppendMessage appends the raw encoding of one message (the layout under
// Packet) to dst. Call Packet.Validate or check the limits first.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Timestamp))
	dst = append(dst, byte(m.Severity), m.Facility)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Attrs)))
	dst = appendStr16(dst, m.Hostname)
	dst = appendStr16(dst, m.App)
	dst = appendStr32(dst, m.Body)
	for _, a := range m.Attrs {
		dst = appendStr16(dst, a.Key)
		dst = appendStr32(dst, a.Value)
	}
	return dst
}

// MessageSize returns the encoded size of m.
func MessageSize(m *Message) int {
	n := messageFixed + len(m.Hostname) + len(m.App) + len(m.Body)
	for _, a := range m.Attrs {
		n += attrFixed + len(a.Key) + len(a.Value)
	}
	return n
}

// PacketBuilder builds a raw packet one message at a time, copying each
// message's bytes as it is added. It suits callers whose message bytes do
// not outlive the call, such as datagrams seen in a gnet callback. The zero
// value is ready after Reset; it is not safe for concurrent use.
type PacketBuilder struct {
	raw   []byte
	count uint32
	// countAt is the offset of the u32 message count, patched by Raw.
	countAt int
}

// Reset starts a new packet with the given id, agent id and trace id.
func (b *PacketBuilder) Reset(id uint64, agentID, traceID []byte) {
	b.raw = binary.BigEndian.AppendUint64(b.raw[:0], id)
	b.raw = appendStr16(b.raw, clip(agentID, 0xFFFF))
	b.raw = appendStr16(b.raw, clip(traceID, 0xFFFF))
	b.countAt = len(b.raw)
	b.raw = binary.BigEndian.AppendUint32(b.raw, 0)
	b.count = 0
}

// Add appends a copy of m. The caller keeps m within the limits the
// receivers apply (field lengths, attribute count).
func (b *PacketBuilder) Add(m *Message) {
	b.raw = AppendMessage(b.raw, m)
	b.count++
}

// Count returns the number of messages added since Reset.
func (b *PacketBuilder) Count() uint32 { return b.count }

// Len returns the raw packet's size so far.
func (b *PacketBuilder) Len() int { return len(b.raw) }

// Raw returns the raw packet, valid until the next Reset or Add.
func (b *PacketBuilder) Raw() []byte {
	binary.BigEndian.PutUint32(b.raw[b.countAt:], b.count)
	return b.raw
}
