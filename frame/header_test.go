package frame

import (
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	b := AppendHeader([]byte("xx"), TypeData, FlagZstd, 0x0102030405060708, 7, 100, 300, 0xDEADBEEF)
	if len(b) != 2+HeaderSize {
		t.Fatalf("len %d", len(b))
	}
	h, err := ParseHeader(b[2:], &Limits{MaxFrame: 1 << 20, MaxRaw: 4 << 20, MaxMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if h.Magic() != Magic || h.Version() != Version || h.Type() != TypeData || h.Flags() != FlagZstd ||
		!h.Compressed() || h.PayloadLen() != 100 || h.RawLen() != 300 || h.Seq() != 0x0102030405060708 ||
		h.Count() != 7 || h.CRC() != 0xDEADBEEF || h.FrameLen() != HeaderSize+100 {
		t.Fatalf("accessors disagree with AppendHeader: % x", []byte(h))
	}
	h.SetSeq(42)
	if h.Seq() != 42 || b[2+16+7] != 42 {
		t.Fatalf("SetSeq: % x", b)
	}
	// The exact byte layout (frame.go's table).
	want := []byte{
		0x4C, 0x44, 0x01, 0x03, 0x01, 0, 0, 0,
		0, 0, 0, 100, 0, 0, 0x01, 0x2C,
		0, 0, 0, 0, 0, 0, 0, 42,
		0, 0, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF,
	}
	if string(h) != string(want) {
		t.Fatalf("layout:\n got % x\nwant % x", []byte(h), want)
	}
}

func TestChecksum(t *testing.T) {
	// The CRC-32C check value (RFC 3720 B.4 / the CRC catalogue).
	if got := Checksum([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("Checksum(123456789) = %#x, want 0xE3069283", got)
	}
	if got := Checksum(nil); got != 0 {
		t.Fatalf("Checksum(nil) = %#x, want 0", got)
	}
	payload := []byte("payload")
	b := AppendFrame(nil, TypeHello, 0, 0, payload)
	h := Header(b[:HeaderSize])
	if err := h.Check(b[HeaderSize:]); err != nil {
		t.Fatal(err)
	}
	b[HeaderSize] ^= 1
	if err := h.Check(b[HeaderSize:]); !errors.Is(err, ErrBadChecksum) {
		t.Fatalf("flipped bit: %v", err)
	}
}

func TestTypeStrings(t *testing.T) {
	f := func(ty Type, name string, valid bool) {
		t.Helper()
		if ty.String() != name || ty.Valid() != valid {
			t.Errorf("%#x: %q %v, want %q %v", uint8(ty), ty.String(), ty.Valid(), name, valid)
		}
	}
	f(0, "UNKNOWN", false)
	f(TypeHello, "HELLO", true)
	f(TypeWelcome, "WELCOME", true)
	f(TypeData, "DATA", true)
	f(TypeAck, "ACK", true)
	f(TypeBusy, "BUSY", true)
	f(TypePing, "PING", true)
	f(TypePong, "PONG", true)
	f(TypeError, "ERROR", true)
	f(TypeGoAway, "GOAWAY", true)
	f(TypeSack, "SACK", true)
	f(0x0B, "UNKNOWN", false)
	f(0xFF, "UNKNOWN", false)
}

func TestSeverity(t *testing.T) {
	for s := SevEmergency; s <= SevDebug; s++ {
		got, ok := ParseSeverity(s.String())
		if !ok || got != s {
			t.Errorf("ParseSeverity(%q) = %v %v", s.String(), got, ok)
		}
		got, ok = ParseSeverity(string(rune('0' + s)))
		if !ok || got != s {
			t.Errorf("ParseSeverity(%d) = %v %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "8", "INFO", "trace"} {
		if _, ok := ParseSeverity(s); ok {
			t.Errorf("ParseSeverity(%q) accepted", s)
		}
	}
	if Severity(8).String() != "invalid" {
		t.Error("Severity(8)")
	}
}

// TestParseHeaderRules is one row per rule of ParseHeader, each starting
// from a valid header and breaking one thing.
func TestParseHeaderRules(t *testing.T) {
	lim := DefaultLimits()
	hdr := func(ty Type, f Flags, seq uint64, count, n, raw uint32) []byte {
		return AppendHeader(nil, ty, f, seq, count, n, raw, 0)
	}
	set := func(b []byte, off int, v byte) []byte { b[off] = v; return b }
	minRaw := func(count uint32) uint32 { return packetFixed + count*messageFixed }
	tests := []struct {
		name string
		b    []byte
		want error // nil: valid
	}{
		{"short", make([]byte, HeaderSize-1), ErrShortHeader},
		{"empty", nil, ErrShortHeader},
		{"data", hdr(TypeData, 0, 1, 1, 100, 100), nil},
		{"data zstd", hdr(TypeData, FlagZstd, 1, 1, 10, 100), nil},
		{"data max frame", hdr(TypeData, 0, 1, 1, lim.MaxFrame, lim.MaxFrame), nil},
		{"data max raw", hdr(TypeData, FlagZstd, 1, 1, 10, lim.MaxRaw), nil},
		{"data max messages", hdr(TypeData, FlagZstd, 1, lim.MaxMessages, 100, minRaw(lim.MaxMessages)), nil},
		{"data max seq", hdr(TypeData, 0, ^uint64(0), 1, 100, 100), nil},
		{"hello", hdr(TypeHello, 0, 0, 0, 20, 20), nil},
		{"welcome", hdr(TypeWelcome, 0, 0, 0, 20, 20), nil},
		{"ack", hdr(TypeAck, 0, 5, 0, 0, 0), nil},
		{"ack seq 0", hdr(TypeAck, 0, 0, 0, 0, 0), nil},
		{"ping", hdr(TypePing, 0, 9, 0, 0, 0), nil},
		{"pong", hdr(TypePong, 0, 9, 0, 0, 0), nil},
		{"busy", hdr(TypeBusy, 0, 3, 0, 4, 4), nil},
		{"error", hdr(TypeError, 0, 0, 0, 4, 4), nil},
		{"goaway", hdr(TypeGoAway, 0, 0, 0, 4, 4), nil},
		{"control max", hdr(TypeError, 0, 0, 0, MaxControlPayload, MaxControlPayload), nil},

		{"bad magic 0", set(hdr(TypeAck, 0, 1, 0, 0, 0), 0, 'X'), ErrBadMagic},
		{"bad magic 1", set(hdr(TypeAck, 0, 1, 0, 0, 0), 1, 'X'), ErrBadMagic},
		{"version 0", set(hdr(TypeAck, 0, 1, 0, 0, 0), 2, 0), ErrBadVersion},
		{"version 2", set(hdr(TypeAck, 0, 1, 0, 0, 0), 2, 2), ErrBadVersion},
		{"type 0", hdr(0, 0, 1, 0, 0, 0), ErrBadType},
		{"type 0x0B", hdr(0x0B, 0, 1, 0, 0, 0), ErrBadType},
		{"sack empty", hdr(TypeSack, 0, 1, 0, 0, 0), ErrBadLength},
		{"sack half range", hdr(TypeSack, 0, 1, 0, 8, 8), ErrBadLength},
		{"sack raw != len", hdr(TypeSack, 0, 1, 0, 16, 17), ErrBadLength},
		{"sack count", hdr(TypeSack, 0, 1, 1, 16, 16), ErrBadLength},
		{"sack too large", hdr(TypeSack, 0, 1, 0, MaxControlPayload+16, MaxControlPayload+16), ErrControlTooLarge},
		{"type 0xFF", hdr(0xFF, 0, 1, 0, 0, 0), ErrBadType},
		{"reserved 5", set(hdr(TypeAck, 0, 1, 0, 0, 0), 5, 1), ErrReserved},
		{"reserved 6", set(hdr(TypeAck, 0, 1, 0, 0, 0), 6, 0x80), ErrReserved},
		{"reserved 7", set(hdr(TypeAck, 0, 1, 0, 0, 0), 7, 1), ErrReserved},
		{"unknown flag", hdr(TypeData, 0x04, 1, 1, 100, 100), ErrBadFlags},
		{"unknown flag high", hdr(TypeData, 0x80|FlagZstd, 1, 1, 100, 100), ErrBadFlags},
		{"zstd on hello", hdr(TypeHello, FlagZstd, 0, 0, 20, 20), ErrBadFlags},
		{"zstd on ack", hdr(TypeAck, FlagZstd, 1, 0, 0, 0), ErrBadFlags},
		{"zstd on error", hdr(TypeError, FlagZstd, 0, 0, 4, 4), ErrBadFlags},

		{"data frame too large", hdr(TypeData, 0, 1, 1, lim.MaxFrame+1, lim.MaxFrame+1), ErrFrameTooLarge},
		{"data frame too large zstd", hdr(TypeData, FlagZstd, 1, 1, lim.MaxFrame+1, 100), ErrFrameTooLarge},
		{"data frame 4 GiB", hdr(TypeData, 0, 1, 1, ^uint32(0), ^uint32(0)), ErrFrameTooLarge},
		{"data raw too large", hdr(TypeData, FlagZstd, 1, 1, 10, lim.MaxRaw+1), ErrRawTooLarge},
		{"data raw 4 GiB", hdr(TypeData, FlagZstd, 1, 1, 10, ^uint32(0)), ErrRawTooLarge},
		{"data raw != len", hdr(TypeData, 0, 1, 1, 100, 101), ErrBadLength},
		{"data raw < len", hdr(TypeData, 0, 1, 1, 100, 99), ErrBadLength},
		{"data count too large", hdr(TypeData, FlagZstd, 1, lim.MaxMessages+1, 100, lim.MaxRaw), ErrTooManyMessages},
		{"data count 4G", hdr(TypeData, 0, 1, ^uint32(0), 100, 100), ErrTooManyMessages},
		{"data count > raw allows", hdr(TypeData, 0, 1, 5, minRaw(5)-1, minRaw(5)-1), ErrCountMismatch},
		{"data count > raw allows zstd", hdr(TypeData, FlagZstd, 1, 100, 50, minRaw(100)-1), ErrCountMismatch},
		{"data zero count", hdr(TypeData, 0, 1, 0, 100, 100), ErrBadLength},
		{"data zero seq", hdr(TypeData, 0, 0, 1, 100, 100), ErrBadLength},
		{"data zero len", hdr(TypeData, 0, 1, 1, 0, 0), ErrBadLength},
		{"data zero len zstd", hdr(TypeData, FlagZstd, 1, 1, 0, 100), ErrBadLength},

		{"ack payload", hdr(TypeAck, 0, 1, 0, 4, 4), ErrBadLength},
		{"ack raw", hdr(TypeAck, 0, 1, 0, 0, 4), ErrBadLength},
		{"ack count", hdr(TypeAck, 0, 1, 1, 0, 0), ErrBadLength},
		{"ping payload", hdr(TypePing, 0, 1, 0, 1, 1), ErrBadLength},
		{"pong payload", hdr(TypePong, 0, 1, 0, 1, 1), ErrBadLength},
		{"ping huge payload", hdr(TypePing, 0, 1, 0, ^uint32(0), ^uint32(0)), ErrBadLength},
		{"hello too large", hdr(TypeHello, 0, 0, 0, MaxControlPayload+1, MaxControlPayload+1), ErrControlTooLarge},
		{"welcome too large", hdr(TypeWelcome, 0, 0, 0, MaxControlPayload+1, MaxControlPayload+1), ErrControlTooLarge},
		{"busy too large", hdr(TypeBusy, 0, 1, 0, ^uint32(0), ^uint32(0)), ErrControlTooLarge},
		{"error too large", hdr(TypeError, 0, 0, 0, 1<<20, 1<<20), ErrControlTooLarge},
		{"goaway too large", hdr(TypeGoAway, 0, 0, 0, MaxControlPayload+1, MaxControlPayload+1), ErrControlTooLarge},
		{"hello raw != len", hdr(TypeHello, 0, 0, 0, 20, 21), ErrBadLength},
		{"hello count", hdr(TypeHello, 0, 0, 1, 20, 20), ErrBadLength},
		{"error count", hdr(TypeError, 0, 0, 3, 4, 4), ErrBadLength},
	}
	for _, tt := range tests {
		h, err := ParseHeader(tt.b, &lim)
		if err != tt.want {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
			continue
		}
		if err == nil && len(h) != HeaderSize {
			t.Errorf("%s: header of %d bytes", tt.name, len(h))
		}
		if err != nil && h != nil {
			t.Errorf("%s: header returned with error", tt.name)
		}
	}
}

// TestParseHeaderLimits checks that a DATA header is measured against the
// Limits given, not the defaults.
func TestParseHeaderLimits(t *testing.T) {
	lim := Limits{MaxFrame: 5000, MaxRaw: 8000, MaxMessages: 3, MaxField: 10, MaxBody: 100, MaxAttrs: 1}
	f := func(flags Flags, count, n, raw uint32, want error) {
		t.Helper()
		b := AppendHeader(nil, TypeData, flags, 1, count, n, raw, 0)
		if _, err := ParseHeader(b, &lim); err != want {
			t.Errorf("count %d len %d raw %d: %v, want %v", count, n, raw, err, want)
		}
	}
	f(0, 3, 5000, 5000, nil)
	f(0, 4, 5000, 5000, ErrTooManyMessages)
	f(0, 1, 5001, 5001, ErrFrameTooLarge)
	f(FlagZstd, 1, 100, 8000, nil)
	f(FlagZstd, 1, 100, 8001, ErrRawTooLarge)
	// Limits that were not validated (MaxRaw < MaxFrame): MaxRaw still
	// bounds an uncompressed payload, as its doc says.
	odd := Limits{MaxFrame: 5000, MaxRaw: 1000, MaxMessages: 3}
	b := AppendHeader(nil, TypeData, 0, 1, 1, 2000, 2000, 0)
	if _, err := ParseHeader(b, &odd); err != ErrRawTooLarge {
		t.Errorf("uncompressed above MaxRaw: %v", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	f := func(name string, mod func(*Limits), ok bool) {
		t.Helper()
		l := DefaultLimits()
		mod(&l)
		err := l.Validate()
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrBadLimits)) {
			t.Errorf("%s: %v", name, err)
		}
	}
	f("default", func(*Limits) {}, true)
	f("frame small", func(l *Limits) { l.MaxFrame = MaxControlPayload - 1 }, false)
	f("frame min", func(l *Limits) { l.MaxFrame = MaxControlPayload }, true)
	f("frame hard max", func(l *Limits) { l.MaxFrame, l.MaxRaw = HardMaxFrame, HardMaxFrame }, true)
	f("frame above hard max", func(l *Limits) { l.MaxFrame, l.MaxRaw = HardMaxFrame+1, HardMaxFrame+1 }, false)
	f("raw below frame", func(l *Limits) { l.MaxRaw = l.MaxFrame - 1 }, false)
	f("raw above hard max", func(l *Limits) { l.MaxRaw = HardMaxFrame + 1 }, false)
	f("messages 0", func(l *Limits) { l.MaxMessages = 0 }, false)
	f("field 0", func(l *Limits) { l.MaxField = 0 }, false)
	f("body 0", func(l *Limits) { l.MaxBody = 0 }, false)
	f("attrs 0", func(l *Limits) { l.MaxAttrs = 0 }, true)
}

func TestHeaderAllocs(t *testing.T) {
	lim := DefaultLimits()
	buf := make([]byte, 0, 64)
	payload := []byte("some payload bytes")
	frame := AppendFrame(nil, TypeHello, 0, 0, payload)
	var sink uint64
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", name, n)
		}
	}
	f("AppendHeader", func() {
		buf = AppendHeader(buf[:0], TypeData, FlagZstd, 1, 2, 3, 4000, 5)
	})
	f("ParseHeader", func() {
		h, err := ParseHeader(buf, &lim)
		if err != nil {
			panic(err)
		}
		sink += uint64(h.Count())
	})
	f("ParseHeader error", func() {
		if _, err := ParseHeader(payload, &lim); err == nil {
			panic("no error")
		}
	})
	f("accessors", func() {
		h := Header(buf)
		sink += uint64(h.Magic()) + uint64(h.Version()) + uint64(h.Type()) + uint64(h.Flags()) +
			uint64(h.PayloadLen()) + uint64(h.RawLen()) + h.Seq() + uint64(h.Count()) + uint64(h.CRC()) +
			uint64(h.FrameLen())
		if h.Compressed() {
			sink++
		}
		h.SetSeq(sink)
	})
	f("Check", func() {
		if err := Header(frame[:HeaderSize]).Check(frame[HeaderSize:]); err != nil {
			panic(err)
		}
	})
	f("Check mismatch", func() {
		if err := Header(buf).Check(payload); err == nil {
			panic("no error")
		}
	})
	f("AppendFrame", func() {
		buf = AppendFrame(buf[:0], TypeHello, 0, 0, payload)
	})
	_ = sink
}
