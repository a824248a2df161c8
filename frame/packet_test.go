package frame

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestPacketRoundTrip(t *testing.T) {
	lim := DefaultLimits()
	f := func(name string, p *Packet) {
		t.Helper()
		if err := p.Validate(&lim); err != nil {
			t.Fatalf("%s: Validate: %v", name, err)
		}
		raw := AppendPacket([]byte("prefix"), p)[len("prefix"):]
		if len(raw) != p.RawSize() {
			t.Errorf("%s: encoded %d bytes, RawSize %d", name, len(raw), p.RawSize())
		}
		var got Packet
		if err := DecodePacket(raw, uint32(len(p.Messages)), &lim, &got); err != nil {
			t.Fatalf("%s: DecodePacket: %v", name, err)
		}
		if err := equalPacket(p, &got); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// Re-encoding the decoded packet gives the same bytes: the encoding
		// is canonical.
		if again := AppendPacket(nil, &got); !bytes.Equal(again, raw) {
			t.Errorf("%s: re-encoding differs", name)
		}
	}
	f("sample", samplePacket())
	f("one", onePacket())
	f("empty fields", &Packet{Messages: []Message{{}}})
	f("realistic 100", realisticPacket(100, 1))
	big := &Packet{ID: ^uint64(0), AgentID: bytes.Repeat([]byte("a"), 255), Messages: []Message{{
		Timestamp: -1 << 63, Severity: SevDebug, Facility: MaxFacility,
		Hostname: bytes.Repeat([]byte("h"), 255), App: bytes.Repeat([]byte("p"), 255),
		Body: bytes.Repeat([]byte("b"), 64<<10),
	}}}
	for i := 0; i < 64; i++ {
		big.Messages[0].Attrs = append(big.Messages[0].Attrs, Attr{Key: bytes.Repeat([]byte("k"), 255), Value: []byte("v")})
	}
	f("every field at its limit", big)
}

// TestPacketLayout pins the byte layout documented on Packet.
func TestPacketLayout(t *testing.T) {
	got := AppendPacket(nil, onePacket())
	want := []byte{
		0, 0, 0, 0, 0, 0, 0, 1, // packet id
		0, 2, 'a', '1', // agent id
		0, 2, 't', '1', // trace id
		0, 0, 0, 1, // count
		0x17, 0x97, 0x9C, 0xFE, 0x36, 0x2A, 0x00, 0x00, // timestamp 1.7e18
		4, 1, // severity, facility
		0, 1, // attr count
		0, 1, 'h',
		0, 3, 'a', 'p', 'p',
		0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o',
		0, 1, 'k', 0, 0, 0, 1, 'v',
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("layout:\n got % x\nwant % x", got, want)
	}
}

// rawPacket encodes p without any check, so that tests can build packets
// that break the limits.
func rawPacket(p *Packet) []byte { return AppendPacket(nil, p) }

func TestDecodePacketRules(t *testing.T) {
	lim := Limits{MaxFrame: 1 << 20, MaxRaw: 4 << 20, MaxMessages: 3, MaxField: 8, MaxBody: 16, MaxAttrs: 2}
	ok := func() *Packet {
		return &Packet{ID: 7, AgentID: []byte("agent"), TraceID: []byte("trace"), Messages: []Message{{
			Timestamp: 1, Severity: SevInfo, Facility: 1, Hostname: []byte("host"), App: []byte("app"),
			Body: []byte("body"), Attrs: []Attr{{Key: []byte("k"), Value: []byte("v")}},
		}}}
	}
	mod := func(fn func(p *Packet)) []byte {
		p := ok()
		fn(p)
		return rawPacket(p)
	}
	long := []byte("123456789")             // MaxField+1
	longBody := []byte("12345678901234567") // MaxBody+1
	setCount := func(b []byte, n uint32) []byte {
		off := 8 + 2 + int(binary.BigEndian.Uint16(b[8:])) // after agent id
		off += 2 + int(binary.BigEndian.Uint16(b[off:]))   // after trace id
		binary.BigEndian.PutUint32(b[off:], n)
		return b
	}
	tests := []struct {
		name  string
		b     []byte
		count uint32
		want  error
	}{
		{"valid", mod(func(*Packet) {}), 1, nil},
		{"max messages", mod(func(p *Packet) { p.Messages = append(p.Messages, p.Messages[0], p.Messages[0]) }), 3, nil},
		{"fields at limit", mod(func(p *Packet) {
			p.AgentID, p.TraceID, p.Messages[0].Hostname, p.Messages[0].App = long[:8], long[:8], long[:8], long[:8]
			p.Messages[0].Body = longBody[:16]
			p.Messages[0].Attrs = []Attr{{long[:8], longBody[:16]}, {long[:8], longBody[:16]}}
		}), 1, nil},
		{"count mismatch header more", mod(func(*Packet) {}), 2, ErrCountMismatch},
		{"count mismatch header less", mod(func(p *Packet) { p.Messages = append(p.Messages, p.Messages[0]) }), 1, ErrCountMismatch},
		{"too many messages", mod(func(p *Packet) {
			for len(p.Messages) < 4 {
				p.Messages = append(p.Messages, p.Messages[0])
			}
		}), 4, ErrTooManyMessages},
		{"lying count", setCount(mod(func(*Packet) {}), 3), 3, ErrTruncated},
		{"lying count 4G", setCount(mod(func(*Packet) {}), 1<<32-1), 1<<32 - 1, ErrTooManyMessages},
		{"agent id too long", mod(func(p *Packet) { p.AgentID = long }), 1, ErrFieldTooLong},
		{"trace id too long", mod(func(p *Packet) { p.TraceID = long }), 1, ErrFieldTooLong},
		{"hostname too long", mod(func(p *Packet) { p.Messages[0].Hostname = long }), 1, ErrFieldTooLong},
		{"app too long", mod(func(p *Packet) { p.Messages[0].App = long }), 1, ErrFieldTooLong},
		{"body too long", mod(func(p *Packet) { p.Messages[0].Body = longBody }), 1, ErrFieldTooLong},
		{"attr key too long", mod(func(p *Packet) { p.Messages[0].Attrs[0].Key = long }), 1, ErrFieldTooLong},
		{"attr value too long", mod(func(p *Packet) { p.Messages[0].Attrs[0].Value = longBody }), 1, ErrFieldTooLong},
		{"too many attrs", mod(func(p *Packet) { p.Messages[0].Attrs = make([]Attr, 3) }), 1, ErrTooManyAttrs},
		{"lying attr count", func() []byte {
			b := mod(func(p *Packet) {})
			// attr count of the only message: after packet id, ids, count,
			// timestamp, severity, facility.
			off := 8 + 2 + 5 + 2 + 5 + 4 + 8 + 2
			binary.BigEndian.PutUint16(b[off:], 2)
			return b
		}(), 1, ErrTruncated},
		{"severity 8", mod(func(p *Packet) { p.Messages[0].Severity = 8 }), 1, ErrBadSeverity},
		{"severity 255", mod(func(p *Packet) { p.Messages[0].Severity = 255 }), 1, ErrBadSeverity},
		{"facility 24", mod(func(p *Packet) { p.Messages[0].Facility = 24 }), 1, ErrBadSeverity},
		{"trailing byte", append(mod(func(*Packet) {}), 0), 1, ErrTrailing},
		{"trailing message", append(mod(func(*Packet) {}), rawPacket(ok())[20:]...), 1, ErrTrailing},
		{"empty", nil, 1, ErrTruncated},
		{"zero messages", mod(func(p *Packet) { p.Messages = nil }), 0, nil},
	}
	for _, tt := range tests {
		var p Packet
		if err := DecodePacket(tt.b, tt.count, &lim, &p); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestDecodePacketTruncated cuts a valid packet at every byte offset.
func TestDecodePacketTruncated(t *testing.T) {
	lim := DefaultLimits()
	for _, p := range []*Packet{samplePacket(), onePacket(), {Messages: []Message{{}}}} {
		b := rawPacket(p)
		var got Packet
		for i := 0; i < len(b); i++ {
			// A fresh copy, so that reading past the cut would be caught
			// by the race detector's bounds or show as wrong data.
			cut := bytes.Clone(b[:i])
			if err := DecodePacket(cut, uint32(len(p.Messages)), &lim, &got); err != ErrTruncated {
				t.Fatalf("cut at %d of %d: %v, want ErrTruncated", i, len(b), err)
			}
		}
		if err := DecodePacket(b, uint32(len(p.Messages)), &lim, &got); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDecodePacketReuse decodes packets of different shapes into one Packet:
// nothing from an earlier packet may show through.
func TestDecodePacketReuse(t *testing.T) {
	lim := DefaultLimits()
	var got Packet
	for _, p := range []*Packet{realisticPacket(50, 3), samplePacket(), onePacket(), realisticPacket(7, 4),
		{Messages: []Message{{}}}, samplePacket()} {
		b := rawPacket(p)
		if err := DecodePacket(b, uint32(len(p.Messages)), &lim, &got); err != nil {
			t.Fatal(err)
		}
		if err := equalPacket(p, &got); err != nil {
			t.Fatal(err)
		}
	}
	// The attributes of one message cannot be appended into the next one's.
	if err := DecodePacket(rawPacket(samplePacket()), 3, &lim, &got); err != nil {
		t.Fatal(err)
	}
	a := got.Messages[0].Attrs
	_ = append(a, Attr{Key: []byte("evil")})
	if k := got.Messages[2].Attrs[0].Key; string(k) != "k" {
		t.Fatalf("append to message 0's attrs overwrote message 2's: %q", k)
	}
}

// TestDecodePacketMemory bounds what DecodePacket allocates for the worst
// payloads: as many messages, or as many attributes, as the bytes allow.
func TestDecodePacketMemory(t *testing.T) {
	lim := Limits{MaxFrame: 1 << 20, MaxRaw: 4 << 20, MaxMessages: 1 << 20, MaxField: 255, MaxBody: 1 << 20, MaxAttrs: 1 << 15}
	f := func(name string, p *Packet, perByte float64) {
		t.Helper()
		raw := rawPacket(p)
		var got Packet
		bytesAlloc := allocBytes(func() {
			if err := DecodePacket(raw, uint32(len(p.Messages)), &lim, &got); err != nil {
				t.Fatal(err)
			}
		})
		if max := perByte*float64(len(raw)) + 4096; float64(bytesAlloc) > max {
			t.Errorf("%s: %d raw bytes cost %d bytes of allocation, want ≤ %.0f", name, len(raw), bytesAlloc, max)
		}
		t.Logf("%s: %d raw bytes, %d allocated (%.1f per raw byte)", name, len(raw), bytesAlloc, float64(bytesAlloc)/float64(len(raw)))
	}
	many := &Packet{Messages: make([]Message, 50000)}
	f("empty messages", many, 6) // 112-byte Message per 20 raw bytes
	attrs := &Packet{Messages: make([]Message, 10)}
	for i := range attrs.Messages {
		attrs.Messages[i].Attrs = make([]Attr, 1<<15-1)
	}
	f("empty attrs", attrs, 8.5) // 48-byte Attr per 6 raw bytes
}

func TestPacketValidate(t *testing.T) {
	lim := Limits{MaxFrame: 1 << 20, MaxRaw: 120, MaxMessages: 2, MaxField: 4, MaxBody: 8, MaxAttrs: 1}
	f := func(name string, fn func(p *Packet), want error) {
		t.Helper()
		p := &Packet{AgentID: []byte("a"), Messages: []Message{{Severity: SevInfo, Body: []byte("b"),
			Attrs: []Attr{{Key: []byte("k"), Value: []byte("v")}}}}}
		fn(p)
		if err := p.Validate(&lim); err != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	f("valid", func(*Packet) {}, nil)
	f("no messages", func(p *Packet) { p.Messages = nil }, ErrTooManyMessages)
	f("too many messages", func(p *Packet) { p.Messages = make([]Message, 3) }, ErrTooManyMessages)
	f("agent id", func(p *Packet) { p.AgentID = []byte("12345") }, ErrFieldTooLong)
	f("trace id", func(p *Packet) { p.TraceID = []byte("12345") }, ErrFieldTooLong)
	f("hostname", func(p *Packet) { p.Messages[0].Hostname = []byte("12345") }, ErrFieldTooLong)
	f("app", func(p *Packet) { p.Messages[0].App = []byte("12345") }, ErrFieldTooLong)
	f("body", func(p *Packet) { p.Messages[0].Body = []byte("123456789") }, ErrFieldTooLong)
	f("attr key", func(p *Packet) { p.Messages[0].Attrs[0].Key = []byte("12345") }, ErrFieldTooLong)
	f("attr value", func(p *Packet) { p.Messages[0].Attrs[0].Value = []byte("123456789") }, ErrFieldTooLong)
	f("attrs", func(p *Packet) { p.Messages[0].Attrs = make([]Attr, 2) }, ErrTooManyAttrs)
	f("severity", func(p *Packet) { p.Messages[0].Severity = 8 }, ErrBadSeverity)
	f("facility", func(p *Packet) { p.Messages[0].Facility = 24 }, ErrBadSeverity)
	f("raw size", func(p *Packet) {
		p.Messages = append(p.Messages, p.Messages[0])
		for i := range p.Messages {
			p.Messages[i].Hostname, p.Messages[i].App, p.Messages[i].Body = []byte("hhhh"), []byte("aaaa"), []byte("bbbbbbbb")
			p.Messages[i].Attrs[0] = Attr{[]byte("kkkk"), []byte("vvvvvvvv")}
		}
		p.AgentID, p.TraceID = []byte("aaaa"), []byte("tttt")
	}, ErrRawTooLarge)
}

func TestAppendPacketPanicsOnOverlongField(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "BUG") {
			t.Fatalf("recover() = %v", r)
		}
	}()
	AppendPacket(nil, &Packet{AgentID: make([]byte, 1<<16)})
}

func TestPacketAllocs(t *testing.T) {
	lim := DefaultLimits()
	p := samplePacket()
	raw := rawPacket(p)
	buf := make([]byte, 0, 4096)
	var got Packet
	if err := DecodePacket(raw, 3, &lim, &got); err != nil { // sizes got
		t.Fatal(err)
	}
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", name, n)
		}
	}
	f("AppendPacket", func() { buf = AppendPacket(buf[:0], p) })
	f("RawSize", func() { _ = p.RawSize() })
	f("Validate", func() {
		if err := p.Validate(&lim); err != nil {
			panic(err)
		}
	})
	f("DecodePacket reused", func() {
		if err := DecodePacket(raw, 3, &lim, &got); err != nil {
			panic(err)
		}
	})
	f("DecodePacket error", func() {
		if err := DecodePacket(raw[:40], 3, &lim, &got); err == nil {
			panic("no error")
		}
	})
	var enc Encoder
	f("Encoder.AppendData uncompressed", func() { buf = enc.AppendData(buf[:0], 1, p, false) })
	dec := NewDecoder(lim)
	frame := enc.AppendData(nil, 1, p, false)
	h := Header(frame[:HeaderSize])
	f("Decoder.Decode uncompressed", func() {
		if err := dec.Decode(h, frame[HeaderSize:], &got); err != nil {
			panic(err)
		}
	})
}
