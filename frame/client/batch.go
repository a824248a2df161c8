package client

import (
	"fmt"

	"github.com/logdist/logdist/frame"
)

// Encoded sizes from the packet layout in frame/packet.go.
const (
	packetOverhead = 8 + 2 + 2 + 4             // packet id, agent id len, trace id len, count
	msgOverhead    = 8 + 1 + 1 + 2 + 2 + 2 + 4 // timestamp, severity, facility, attr count, 3 lengths
	attrOverhead   = 2 + 4
)

// msgSize returns the encoded size of m inside a packet, before compression.
func msgSize(m *frame.Message) int {
	n := msgOverhead + len(m.Hostname) + len(m.App) + len(m.Body)
	for _, a := range m.Attrs {
		n += attrOverhead + len(a.Key) + len(a.Value)
	}
	return n
}

// checkMessage checks m against the receiver's limits, as
// frame.Packet.Validate would, without building a packet.
func checkMessage(m *frame.Message, lim *frame.Limits) error {
	mf := int(lim.MaxField)
	switch {
	case len(m.Hostname) > mf:
		return fmt.Errorf("client: cannot send message: hostname of %d bytes: %w (max %d)", len(m.Hostname), frame.ErrFieldTooLong, mf)
	case len(m.App) > mf:
		return fmt.Errorf("client: cannot send message: app name of %d bytes: %w (max %d)", len(m.App), frame.ErrFieldTooLong, mf)
	case uint64(len(m.Body)) > uint64(lim.MaxBody):
		return fmt.Errorf("client: cannot send message: body of %d bytes: %w (max %d)", len(m.Body), frame.ErrFieldTooLong, lim.MaxBody)
	case m.Severity > frame.SevDebug || m.Facility > frame.MaxFacility:
		return fmt.Errorf("client: cannot send message: %w", frame.ErrBadSeverity)
	case len(m.Attrs) > int(lim.MaxAttrs):
		return fmt.Errorf("client: cannot send message: %d attributes: %w (max %d)", len(m.Attrs), frame.ErrTooManyAttrs, lim.MaxAttrs)
	}
	for _, a := range m.Attrs {
		if len(a.Key) > mf || uint64(len(a.Value)) > uint64(lim.MaxBody) {
			return fmt.Errorf("client: cannot send message: attribute %q: %w", a.Key, frame.ErrFieldTooLong)
		}
	}
	return nil
}

// batch is the packet being filled by Send. Messages are copied into arena,
// so the caller may reuse its buffers as soon as Send returns. A batch is
// reused after it is encoded: appending to it then allocates nothing.
type batch struct {
	msgs  []frame.Message
	attrs []frame.Attr
	arena []byte
	size  int // sum of msgSize
}

// add copies m into the batch.
func (b *batch) add(m *frame.Message, size int) {
	need := len(m.Hostname) + len(m.App) + len(m.Body)
	for _, a := range m.Attrs {
		need += len(a.Key) + len(a.Value)
	}
	if cap(b.arena)-len(b.arena) < need {
		// Earlier messages keep pointing into the old arena, which stays
		// alive and unchanged until the batch is reset.
		b.arena = make([]byte, 0, max(2*cap(b.arena), need, 4096))
	}
	c := frame.Message{
		Timestamp: m.Timestamp,
		Severity:  m.Severity,
		Facility:  m.Facility,
		Hostname:  b.copy(m.Hostname),
		App:       b.copy(m.App),
		Body:      b.copy(m.Body),
	}
	if len(m.Attrs) > 0 {
		start := len(b.attrs)
		for _, a := range m.Attrs {
			b.attrs = append(b.attrs, frame.Attr{Key: b.copy(a.Key), Value: b.copy(a.Value)})
		}
		c.Attrs = b.attrs[start:len(b.attrs):len(b.attrs)]
	}
	b.msgs = append(b.msgs, c)
	b.size += size
}

func (b *batch) copy(s []byte) []byte {
	if len(s) == 0 {
		return nil
	}
	start := len(b.arena)
	b.arena = append(b.arena, s...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

func (b *batch) reset() {
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	clear(b.attrs)
	b.attrs = b.attrs[:0]
	b.arena = b.arena[:0]
	b.size = 0
}

// flushRec tracks the packets made from one sealed batch, so that Flush can
// wait for every batch sealed before it. open counts its unresolved packets
// (1 while the batch is being encoded).
type flushRec struct {
	idx  uint64
	open int
}

// packet is an encoded DATA frame waiting to be sent or resolved.
type packet struct {
	id        uint64
	msgs      int
	size      int    // sum of msgSize of its messages: released from pending when resolved
	frame     []byte // header (seq 0) + payload; never modified after encoding
	rec       *flushRec
	notBefore int64 // Unix ns; set by BUSY: not to be sent before
	sends     int
	dict      uint32 // the dictionary the payload is compressed with (0: none)
}

func (p *packet) payloadLen() int { return len(p.frame) - frame.HeaderSize }

func (p *packet) compressed() bool { return frame.Header(p.frame).Compressed() }

// encodeBatch encodes msgs into packets whose payload is at most maxFrame
// bytes, halving the batch until each fits. A single message that cannot
// fit comes back as a packet with a nil frame, to be rejected locally.
func (c *Client) encodeBatch(enc *frame.Encoder, msgs []frame.Message, rec *flushRec, compress bool, maxFrame int, out []*packet) []*packet {
	p := frame.Packet{ID: c.nextID.Add(1), AgentID: c.agentID, Messages: msgs}
	size := 0
	for i := range msgs {
		size += msgSize(&msgs[i])
	}
	raw := packetOverhead + len(c.agentID) + size
	capHint := frame.HeaderSize + raw
	if compress {
		capHint = frame.HeaderSize + raw/2 + 64
	}
	buf := enc.AppendData(make([]byte, 0, capHint), 0, &p, compress)
	if len(buf)-frame.HeaderSize > maxFrame {
		if len(msgs) == 1 {
			return append(out, &packet{id: p.ID, msgs: 1, size: size, rec: rec})
		}
		half := len(msgs) / 2
		out = c.encodeBatch(enc, msgs[:half], rec, compress, maxFrame, out)
		return c.encodeBatch(enc, msgs[half:], rec, compress, maxFrame, out)
	}
	if c.cfg.Trace != nil {
		if tc, ok := c.cfg.Trace(p.ID); ok {
			buf = frame.AppendWithTrace(make([]byte, 0, len(buf)+frame.TraceSize), buf, &tc)
		}
	}
	return append(out, &packet{id: p.ID, msgs: len(msgs), size: size, frame: buf, rec: rec, dict: frame.DictID(buf)})
}

// adapt re-encodes p for a connection that did not grant zstd, does not
// hold p's dictionary, or accepts smaller frames than p was built for (a
// reconnect to another server), compressing with dict if not nil. It
// returns the replacement packets; the split ones get new packet ids.
func (c *Client) adapt(p *packet, zstdOK bool, dict *frame.Dict, maxFrame int) []*packet {
	var dec frame.Decoder
	dec.Dicts = c.cfg.Dicts
	dec.Limits = c.cfg.Limits
	dec.Limits.MaxFrame = frame.HardMaxFrame
	dec.Limits.MaxRaw = frame.HardMaxFrame
	h := frame.Header(p.frame)
	var pk frame.Packet
	if err := dec.Decode(h, p.frame[frame.HeaderSize:], &pk); err != nil {
		panic("BUG: client: cannot decode a packet the client encoded: " + err.Error())
	}
	compress := zstdOK && c.cfg.Compress
	if !compress || p.payloadLen() <= maxFrame {
		// Keep the packet id when it stays one packet: a server may
		// already have it, and the id lets it deduplicate.
		enc := frame.Encoder{FastDecode: c.cfg.FastDecode}
		c.useDict(&enc, dict)
		buf := enc.AppendData(nil, 0, &pk, compress)
		if len(buf)-frame.HeaderSize <= maxFrame {
			q := *p
			q.frame, q.dict = buf, frame.DictID(buf)
			return []*packet{&q}
		}
	}
	enc := c.encoders.Get().(*frame.Encoder)
	c.useDict(enc, dict)
	defer c.encoders.Put(enc)
	return c.encodeBatch(enc, pk.Messages, p.rec, compress, maxFrame, nil)
}
