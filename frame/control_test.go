package frame

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseOne parses b as exactly one whole, valid frame.
func parseOne(t *testing.T, b []byte) (Header, []byte) {
	t.Helper()
	lim := DefaultLimits()
	h, err := ParseHeader(b, &lim)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	if h.FrameLen() != len(b) {
		t.Fatalf("frame of %d bytes, header says %d", len(b), h.FrameLen())
	}
	payload := b[HeaderSize:]
	if err := h.Check(payload); err != nil {
		t.Fatal(err)
	}
	return h, payload
}

func TestHelloRoundTrip(t *testing.T) {
	f := func(in Hello) {
		t.Helper()
		b := AppendHello([]byte{1, 2, 3}, &in)[3:]
		h, payload := parseOne(t, b)
		if h.Type() != TypeHello || h.Seq() != 0 || h.Count() != 0 {
			t.Fatalf("header % x", []byte(h))
		}
		var out Hello
		if err := DecodeHello(payload, &out); err != nil {
			t.Fatal(err)
		}
		if out.Caps != in.Caps || out.Window != in.Window || out.MaxFrame != in.MaxFrame ||
			!bytes.Equal(out.AgentID, in.AgentID) || !bytes.Equal(out.Token, in.Token) || !bytes.Equal(out.Software, in.Software) {
			t.Fatalf("%+v != %+v", out, in)
		}
	}
	f(Hello{Caps: CapZstd, Window: 64, MaxFrame: 1 << 20, AgentID: []byte("agent-7"), Token: []byte("s3cret"), Software: []byte("logsend/1.0")})
	f(Hello{Window: 1, AgentID: []byte("a")})
	f(Hello{Caps: 0xFFFFFFFF, Window: ^uint32(0), MaxFrame: ^uint32(0), AgentID: bytes.Repeat([]byte("a"), MaxAgentID),
		Token: bytes.Repeat([]byte("t"), MaxToken), Software: bytes.Repeat([]byte("s"), MaxSoftware)})
}

func TestHelloClipsFields(t *testing.T) {
	in := Hello{Window: 1, AgentID: bytes.Repeat([]byte("a"), 300), Token: bytes.Repeat([]byte("t"), 2000),
		Software: bytes.Repeat([]byte("s"), 300)}
	_, payload := parseOne(t, AppendHello(nil, &in))
	var out Hello
	if err := DecodeHello(payload, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.AgentID) != MaxAgentID || len(out.Token) != MaxToken || len(out.Software) != MaxSoftware {
		t.Fatalf("lengths %d %d %d", len(out.AgentID), len(out.Token), len(out.Software))
	}
}

func TestWelcomeRoundTrip(t *testing.T) {
	f := func(in Welcome) {
		t.Helper()
		h, payload := parseOne(t, AppendWelcome(nil, &in))
		if h.Type() != TypeWelcome {
			t.Fatal(h.Type())
		}
		var out Welcome
		if err := DecodeWelcome(payload, &out); err != nil {
			t.Fatal(err)
		}
		if out.Caps != in.Caps || out.Window != in.Window || out.MaxFrame != in.MaxFrame ||
			out.IdleTimeoutMs != in.IdleTimeoutMs || !bytes.Equal(out.ServerID, in.ServerID) {
			t.Fatalf("%+v != %+v", out, in)
		}
	}
	f(Welcome{Caps: CapZstd, Window: 32, MaxFrame: 1 << 20, IdleTimeoutMs: 60000, ServerID: []byte("logdist-1")})
	f(Welcome{Window: 1, MaxFrame: 1})
	f(Welcome{Window: 1, MaxFrame: 1, ServerID: bytes.Repeat([]byte("s"), MaxSoftware)})
}

func TestControlDecodeRules(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	str := func(s string) []byte { return appendStr16(nil, []byte(s)) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	hello := func(caps, window, maxFrame uint32, agent, token, sw []byte) []byte {
		return cat(u32(caps), u32(window), u32(maxFrame), agent, token, sw)
	}
	long := func(n int) []byte { return appendStr16(nil, bytes.Repeat([]byte("x"), n)) }
	validHello := hello(1, 8, 1<<20, str("a"), str("t"), str("s"))
	helloTests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"valid", validHello, true},
		{"no token no software", hello(0, 1, 0, str("a"), str(""), str("")), true},
		{"max fields", hello(0, 1, 0, long(MaxAgentID), long(MaxToken), long(MaxSoftware)), true},
		{"empty", nil, false},
		{"agent id empty", hello(0, 1, 0, str(""), str(""), str("")), false},
		{"window 0", hello(0, 0, 0, str("a"), str(""), str("")), false},
		{"agent id too long", hello(0, 1, 0, long(MaxAgentID+1), str(""), str("")), false},
		{"token too long", hello(0, 1, 0, str("a"), long(MaxToken+1), str("")), false},
		{"software too long", hello(0, 1, 0, str("a"), str(""), long(MaxSoftware+1)), false},
		{"trailing", append(bytes.Clone(validHello), 0), false},
		{"agent length lies", cat(u32(0), u32(1), u32(0), []byte{0, 9, 'a'}), false},
	}
	for i := 0; i < len(validHello); i++ {
		helloTests = append(helloTests, struct {
			name string
			b    []byte
			ok   bool
		}{"truncated", validHello[:i], false})
	}
	for _, tt := range helloTests {
		var h Hello
		err := DecodeHello(bytes.Clone(tt.b), &h)
		if (err == nil) != tt.ok || (err != nil && err != ErrBadHandshake) {
			t.Errorf("hello %s (%d bytes): %v", tt.name, len(tt.b), err)
		}
	}

	welcome := func(caps, window, maxFrame, idle uint32, id []byte) []byte {
		return cat(u32(caps), u32(window), u32(maxFrame), u32(idle), id)
	}
	validWelcome := welcome(1, 8, 1<<20, 30000, str("srv"))
	welcomeTests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"valid", validWelcome, true},
		{"no id, no idle", welcome(0, 1, 1, 0, str("")), true},
		{"window 0", welcome(0, 0, 1, 0, str("")), false},
		{"max frame 0", welcome(0, 1, 0, 0, str("")), false},
		{"id too long", welcome(0, 1, 1, 0, long(MaxSoftware+1)), false},
		{"trailing", append(bytes.Clone(validWelcome), 1), false},
	}
	for i := 0; i < len(validWelcome); i++ {
		welcomeTests = append(welcomeTests, struct {
			name string
			b    []byte
			ok   bool
		}{"truncated", validWelcome[:i], false})
	}
	for _, tt := range welcomeTests {
		var w Welcome
		err := DecodeWelcome(bytes.Clone(tt.b), &w)
		if (err == nil) != tt.ok || (err != nil && err != ErrBadHandshake) {
			t.Errorf("welcome %s (%d bytes): %v", tt.name, len(tt.b), err)
		}
	}

	busyTests := []struct {
		b    []byte
		ms   uint32
		want error
	}{
		{u32(250), 250, nil},
		{u32(0), 0, nil},
		{u32(^uint32(0)), ^uint32(0), nil},
		{nil, 0, ErrBadLength},
		{[]byte{0, 0, 1}, 0, ErrBadLength},
		{[]byte{0, 0, 0, 1, 0}, 0, ErrBadLength},
	}
	for _, tt := range busyTests {
		ms, err := DecodeBusy(tt.b)
		if ms != tt.ms || err != tt.want {
			t.Errorf("busy % x: %d %v", tt.b, ms, err)
		}
	}

	reason := func(code uint16, r []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, code), r...) }
	reasonTests := []struct {
		name   string
		b      []byte
		code   Code
		reason string
		want   error
	}{
		{"valid", reason(0x101, str("bad")), CodeMalformed, "bad", nil},
		{"empty reason", reason(0x0D, str("")), CodeShutdown, "", nil},
		{"unknown code", reason(0x7777, str("?")), 0x7777, "?", nil},
		{"max reason", reason(1, long(MaxReason)), CodeProtocol, strings.Repeat("x", MaxReason), nil},
		{"reason too long", reason(1, long(MaxReason+1)), 0, "", ErrBadLength},
		{"empty", nil, 0, "", ErrBadLength},
		{"code only", []byte{0, 1}, 0, "", ErrBadLength},
		{"reason truncated", reason(1, str("abc")[:4]), 0, "", ErrBadLength},
		{"trailing", append(reason(1, str("abc")), 0), 0, "", ErrBadLength},
	}
	for _, tt := range reasonTests {
		code, r, err := DecodeReason(tt.b)
		if code != tt.code || string(r) != tt.reason || err != tt.want {
			t.Errorf("reason %s: %v %q %v", tt.name, code, r, err)
		}
	}
}

func TestSmallFramesRoundTrip(t *testing.T) {
	f := func(b []byte, ty Type, seq uint64) []byte {
		t.Helper()
		h, payload := parseOne(t, b)
		if h.Type() != ty || h.Seq() != seq || h.Count() != 0 || h.Flags() != 0 {
			t.Fatalf("%v: header % x", ty, []byte(h))
		}
		return payload
	}
	if p := f(AppendAck(nil, 77), TypeAck, 77); len(p) != 0 {
		t.Fatal("ACK payload")
	}
	if p := f(AppendPing(nil, 0xFEEDFACECAFEBEEF), TypePing, 0xFEEDFACECAFEBEEF); len(p) != 0 {
		t.Fatal("PING payload")
	}
	if p := f(AppendPong(nil, 0), TypePong, 0); len(p) != 0 {
		t.Fatal("PONG payload")
	}
	ms, err := DecodeBusy(f(AppendBusy(nil, 12, 1500), TypeBusy, 12))
	if err != nil || ms != 1500 {
		t.Fatal(ms, err)
	}
	code, reason, err := DecodeReason(f(AppendError(nil, 13, CodeFieldTooLong, "hostname too long"), TypeError, 13))
	if err != nil || code != CodeFieldTooLong || string(reason) != "hostname too long" {
		t.Fatal(code, reason, err)
	}
	code, reason, err = DecodeReason(f(AppendGoAway(nil, CodeShutdown, "draining"), TypeGoAway, 0))
	if err != nil || code != CodeShutdown || string(reason) != "draining" {
		t.Fatal(code, reason, err)
	}
}

func TestReasonClipped(t *testing.T) {
	f := func(in string, wantLen int) {
		t.Helper()
		_, payload := parseOne(t, AppendError(nil, 0, CodeInternal, in))
		_, reason, err := DecodeReason(payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(reason) != wantLen || !strings.HasPrefix(in, string(reason)) || !utf8.Valid(reason) {
			t.Fatalf("reason of %d bytes clipped to %d, want %d (valid UTF-8)", len(in), len(reason), wantLen)
		}
	}
	f(strings.Repeat("a", MaxReason+10), MaxReason)
	f(strings.Repeat("a", MaxReason), MaxReason)
	// A 3-byte rune across the limit is dropped whole.
	f(strings.Repeat("a", MaxReason-1)+"€", MaxReason-1)
	f(strings.Repeat("a", MaxReason-2)+"€", MaxReason-2)
	f(strings.Repeat("a", MaxReason-3)+"€", MaxReason)
}

func TestControlAllocs(t *testing.T) {
	buf := make([]byte, 0, 8192)
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", name, n)
		}
	}
	hello := Hello{Caps: CapZstd, Window: 64, MaxFrame: 1 << 20, AgentID: []byte("agent"), Token: []byte("tok")}
	welcome := Welcome{Caps: CapZstd, Window: 64, MaxFrame: 1 << 20, IdleTimeoutMs: 1000, ServerID: []byte("srv")}
	f("AppendAck", func() { buf = AppendAck(buf[:0], 1) })
	f("AppendPing", func() { buf = AppendPing(buf[:0], 1) })
	f("AppendPong", func() { buf = AppendPong(buf[:0], 1) })
	f("AppendBusy", func() { buf = AppendBusy(buf[:0], 1, 100) })
	f("AppendError", func() { buf = AppendError(buf[:0], 1, CodeMalformed, "packet does not decode") })
	f("AppendGoAway", func() { buf = AppendGoAway(buf[:0], CodeShutdown, "draining") })
	f("AppendHello", func() { buf = AppendHello(buf[:0], &hello) })
	f("AppendWelcome", func() { buf = AppendWelcome(buf[:0], &welcome) })
	hb := AppendHello(nil, &hello)[HeaderSize:]
	wb := AppendWelcome(nil, &welcome)[HeaderSize:]
	eb := AppendError(nil, 1, CodeMalformed, "x")[HeaderSize:]
	var h Hello
	var w Welcome
	f("DecodeHello", func() {
		if err := DecodeHello(hb, &h); err != nil {
			panic(err)
		}
	})
	f("DecodeWelcome", func() {
		if err := DecodeWelcome(wb, &w); err != nil {
			panic(err)
		}
	})
	f("DecodeReason", func() {
		if _, _, err := DecodeReason(eb); err != nil {
			panic(err)
		}
	})
}

func TestSackRules(t *testing.T) {
	ok := [][]SeqRange{
		{{4, 4}},
		{{4, 5}, {7, 9}},
		{{4, 5}, {7, 7}, {1 << 40, 1<<40 + 3}},
		{{^uint64(0), ^uint64(0)}},
	}
	for _, rs := range ok {
		b := AppendSack(nil, 2, rs)
		lim := DefaultLimits()
		h, err := ParseHeader(b, &lim)
		if err != nil {
			t.Fatalf("%v: header: %v", rs, err)
		}
		if err := h.Check(b[HeaderSize:]); err != nil {
			t.Fatalf("%v: %v", rs, err)
		}
		got, err := DecodeSack(b[HeaderSize:], h.Seq(), nil)
		if err != nil || !slices.Equal(got, rs) {
			t.Fatalf("%v: decoded %v, %v", rs, got, err)
		}
	}
	bad := []struct {
		cum    uint64
		ranges []SeqRange
	}{
		{2, nil},
		{2, []SeqRange{{3, 3}}},         // cum+1 belongs in the cumulative ACK
		{2, []SeqRange{{2, 4}}},         // covers the cumulative part
		{2, []SeqRange{{5, 4}}},         // backwards
		{2, []SeqRange{{4, 5}, {6, 7}}}, // adjacent: one range
		{2, []SeqRange{{4, 6}, {5, 7}}}, // overlapping
		{2, []SeqRange{{7, 8}, {4, 5}}}, // out of order
		{^uint64(0) - 1, []SeqRange{{^uint64(0), ^uint64(0)}}},
		{2, []SeqRange{{^uint64(0), ^uint64(0)}, {4, 4}}},
		{2, make([]SeqRange, MaxSackRanges+1)},
	}
	for _, tt := range bad {
		var p []byte
		for _, r := range tt.ranges {
			p = binary.BigEndian.AppendUint64(p, r.First)
			p = binary.BigEndian.AppendUint64(p, r.Last)
		}
		if got, err := DecodeSack(p, tt.cum, nil); err == nil {
			t.Errorf("cum %d ranges %v: decoded %v, want an error", tt.cum, tt.ranges, got)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("cum %d ranges %v: AppendSack did not panic", tt.cum, tt.ranges)
				}
			}()
			AppendSack(nil, tt.cum, tt.ranges)
		}()
	}
	// Decoding into a slice with room does not allocate.
	b := AppendSack(nil, 10, []SeqRange{{12, 14}, {20, 30}})[HeaderSize:]
	dst := make([]SeqRange, 0, 4)
	if n := testing.AllocsPerRun(100, func() { dst, _ = DecodeSack(b, 10, dst[:0]) }); n != 0 {
		t.Fatalf("DecodeSack allocates %.1f times", n)
	}
}
