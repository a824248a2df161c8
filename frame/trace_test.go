package frame

import (
	"bytes"
	"testing"
)

// A trace context added, re-parented and removed leaves a frame that
// parses, checks and decodes to the same packet each time.
func TestTraceContextRoundTrip(t *testing.T) {
	var enc Encoder
	for _, compress := range []bool{false, true} {
		plain := enc.AppendData(nil, 7, realisticPacket(3, 1), compress)
		traced := AppendWithTrace(nil, plain, &goldenTrace)
		check := func(what string, fb []byte, wantTrace bool) {
			t.Helper()
			lim := DefaultLimits()
			h, err := ParseHeader(fb, &lim)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if err := h.Check(fb[HeaderSize:h.FrameLen()]); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			var p Packet
			if err := NewDecoder(lim).Decode(h, fb[HeaderSize:h.FrameLen()], &p); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if len(p.Messages) != 3 || h.Seq() != 7 {
				t.Fatalf("%s: %d messages, seq %d", what, len(p.Messages), h.Seq())
			}
			if _, ok := TraceOf(fb); ok != wantTrace {
				t.Fatalf("%s: traced %v, want %v", what, ok, wantTrace)
			}
		}
		check("traced", traced, true)
		tc, _ := TraceOf(traced)
		if tc != goldenTrace || !tc.Valid() || !tc.Sampled() {
			t.Fatalf("trace %s", tc.String())
		}
		SetTraceParent(traced, [8]byte{9, 9, 9, 9, 9, 9, 9, 9})
		check("re-parented", traced, true)
		if tc, _ := TraceOf(traced); tc.SpanID() != [8]byte{9, 9, 9, 9, 9, 9, 9, 9} || tc.TraceID() != goldenTrace.TraceID() {
			t.Fatalf("re-parented trace %s", tc.String())
		}
		again := AppendWithTrace(nil, traced, &goldenTrace)
		check("replaced", again, true)
		if len(again) != len(traced) {
			t.Fatal("replacing the context changed the frame's length")
		}
		inPlace := StripTrace(bytes.Clone(traced))
		check("stripped in place", inPlace, false)
		if !bytes.Equal(inPlace, plain) {
			t.Fatal("stripping the context in place does not give the original frame back")
		}
		stripped := AppendWithoutTrace(nil, traced)
		check("stripped", stripped, false)
		if !bytes.Equal(stripped, plain) {
			t.Fatal("stripping the context does not give the original frame back")
		}
	}
}

func TestTraceContextValid(t *testing.T) {
	var zero TraceContext
	bad := goldenTrace
	bad[0] = 1
	if zero.Valid() || bad.Valid() || !goldenTrace.Valid() {
		t.Fatal("Valid")
	}
}
