package syslog

import (
	"bytes"
	"testing"
	"time"
	"unsafe"
)

// fuzzNow is a clock near New Year, where year inference has most to do.
var fuzzNow = time.Date(2026, 12, 30, 0, 0, 0, 0, time.UTC)

// FuzzParse checks that Parse never panics, never modifies its input,
// keeps the field invariants of checkInvariants and does not depend on
// what the Parser parsed before. The differential test against go-syslog
// is FuzzOracle in ./oracle, in its own test binary because the fuzzing
// instrumentation of go-syslog's generated state machines takes minutes
// to compile.
func FuzzParse(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.in)
	}
	for _, s := range []string{msg3164, msg5424, msg5424SD, msgCisco, msgUnparsed} {
		f.Add([]byte(s))
	}
	p := NewParser(Config{Now: func() time.Time { return fuzzNow }})
	fresh := NewParser(Config{Now: func() time.Time { return fuzzNow }})
	var m, m2 Message
	stale := []byte(msg5424SD)
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		format := p.Parse(in, &m)
		if !bytes.Equal(in, orig) {
			t.Fatalf("Parse modified its input")
		}
		checkInvariants(t, p, in, format, &m)

		// Same answer from a parser with a different history.
		fresh.Parse(stale, &m2)
		format2 := fresh.Parse(in, &m2)
		if a, b := toExpected(format, &m).dump(), toExpected(format2, &m2).dump(); a != b {
			t.Fatalf("Parse(%q) depends on the parser's history:\n%s\nvs\n%s", in, a, b)
		}
	})
}

func checkInvariants(t *testing.T, p *Parser, in []byte, f Format, m *Message) {
	t.Helper()
	if f > RFC5424 {
		t.Fatalf("format %d", f)
	}
	if m.Severity > 7 || m.Facility > 23 {
		t.Fatalf("severity %d facility %d", m.Severity, m.Facility)
	}
	trimmed := trimTrailing(in)
	within := func(name string, s []byte) {
		if len(s) == 0 {
			return
		}
		if !inside(s, in) && !inside(s, p.scratch) {
			t.Fatalf("%s %q is neither in the input nor in the scratch buffer", name, s)
		}
	}
	within("Hostname", m.Hostname)
	within("App", m.App)
	within("ProcID", m.ProcID)
	within("MsgID", m.MsgID)
	within("Body", m.Body)
	for _, a := range m.Attrs {
		within("attr key", a.Key)
		within("attr value", a.Value)
		if len(a.Key) == 0 {
			t.Fatalf("empty attribute key")
		}
	}
	// The Body is always the tail of the trimmed input.
	if len(m.Body) > 0 && (!inside(m.Body, trimmed) ||
		&m.Body[len(m.Body)-1] != &trimmed[len(trimmed)-1]) {
		t.Fatalf("Body %q is not the tail of the input", m.Body)
	}
	if f == Unparsed {
		if !bytes.Equal(m.Body, trimmed) || m.Severity != 5 || m.Facility != 1 || m.Timestamp != 0 ||
			m.Hostname != nil || m.App != nil || m.ProcID != nil || m.MsgID != nil || m.Attrs != nil {
			t.Fatalf("Unparsed message breaks the rule: %+v", m)
		}
	}
	if f == RFC3164 && m.MsgID != nil {
		t.Fatalf("RFC 3164 message with a MsgID")
	}
	if (len(m.ProcID) > 0) != (len(m.Attrs) > 0 && string(m.Attrs[0].Key) == "procid") {
		t.Fatalf("ProcID %q without its attribute, or the reverse: %q", m.ProcID, m.Attrs)
	}
}

// inside reports whether s lies within the memory of buf.
func inside(s, buf []byte) bool {
	if len(s) == 0 || cap(buf) == 0 {
		return false
	}
	s0 := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return s0 >= b0 && s0+uintptr(len(s)) <= b0+uintptr(len(buf))
}
