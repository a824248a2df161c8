package syslog

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFormatString(t *testing.T) {
	f := func(v Format, want string) {
		t.Helper()
		if got := v.String(); got != want {
			t.Errorf("Format(%d).String() = %q, want %q", v, got, want)
		}
	}
	f(Unparsed, "unparsed")
	f(RFC3164, "rfc3164")
	f(RFC5424, "rfc5424")
	f(9, "Format(9)")
}

func TestYearInference(t *testing.T) {
	f := func(now, in, want string) {
		t.Helper()
		n, err := time.Parse(time.RFC3339, now)
		if err != nil {
			t.Fatal(err)
		}
		p := NewParser(Config{Now: func() time.Time { return n }})
		var m Message
		if got := p.Parse([]byte("<13>"+in+" h app: x"), &m); got != RFC3164 {
			t.Fatalf("now %s, %q: format %v", now, in, got)
		}
		if got := fmtTime(m.Timestamp); got != want {
			t.Errorf("now %s, %q: got %s, want %s", now, in, got, want)
		}
	}
	// Around New Year, both ways.
	f("2027-01-01T00:00:05Z", "Dec 31 23:59:58", "2026-12-31T23:59:58Z")
	f("2026-12-31T23:59:58Z", "Jan  1 00:00:03", "2027-01-01T00:00:03Z")
	f("2027-01-15T10:00:00Z", "Dec  1 10:00:00", "2026-12-01T10:00:00Z")
	f("2026-12-20T10:00:00Z", "Jan 10 10:00:00", "2027-01-10T10:00:00Z")
	// Up to 31 days ahead stays this year; more is last year's.
	f("2026-06-01T00:00:00Z", "Jul  1 00:00:00", "2026-07-01T00:00:00Z")
	f("2026-06-01T00:00:00Z", "Jul  3 00:00:00", "2025-07-03T00:00:00Z")
	// Old messages in the same year.
	f("2026-11-26T00:00:00Z", "Jan  8 00:00:00", "2026-01-08T00:00:00Z")
	// An explicit year is used as is.
	f("2026-11-26T00:00:00Z", "Jan  8 2020 00:00:00", "2020-01-08T00:00:00Z")
	// Feb 29 of a leap year.
	f("2028-03-10T00:00:00Z", "Feb 29 12:00:00", "2028-02-29T12:00:00Z")
}

func TestLocation(t *testing.T) {
	plus2 := time.FixedZone("EET", 2*3600)
	// The clock says it is already 2027 in UTC+2 but still 2026 in UTC:
	// the year comes from the local clock.
	now := time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC)
	p := NewParser(Config{Location: plus2, Now: func() time.Time { return now }})
	f := func(in, want string) {
		t.Helper()
		var m Message
		p.Parse([]byte(in), &m)
		if got := fmtTime(m.Timestamp); got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
	f("<13>Jan  1 01:29:00 h app: x", "2026-12-31T23:29:00Z")
	// Cisco "UTC:" overrides the location; other abbreviations do not.
	f("<13>1: Jan  1 01:29:00 UTC: %X-1-Y: z", "2027-01-01T01:29:00Z")
	f("<13>1: Jan  1 01:29:00 CET: %X-1-Y: z", "2026-12-31T23:29:00Z")
	// RFC 3339 without offset in 3164 and in 5424: local; with offset: as given.
	f("<13>2027-01-01T01:29:00 h app: x", "2026-12-31T23:29:00Z")
	f("<13>1 2027-01-01T01:29:00 h app - - - x", "2026-12-31T23:29:00Z")
	f("<13>1 2027-01-01T01:29:00Z h app - - - x", "2027-01-01T01:29:00Z")
}

// TestUnparsedRule pins the Unparsed outcome on inputs too big or too
// binary for the corpus files.
func TestUnparsedRule(t *testing.T) {
	p := NewParser(Config{})
	var m Message
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*7 + i>>8) // deterministic, covers every byte value
	}
	garbage[0] = 0xff
	f := func(in []byte, want Format, wantBody []byte) {
		t.Helper()
		got := p.Parse(in, &m)
		if got != want || !bytes.Equal(m.Body, wantBody) {
			t.Errorf("Parse(%.40q...): %v body %.40q, want %v %.40q", in, got, m.Body, want, wantBody)
		}
		if got == Unparsed && (m.Severity != 5 || m.Facility != 1 || m.Timestamp != 0 ||
			m.Hostname != nil || m.App != nil || m.ProcID != nil || m.MsgID != nil || m.Attrs != nil) {
			t.Errorf("Unparsed message has fields: %+v", m)
		}
	}
	f(garbage, Unparsed, trimTrailing(garbage))
	f(nil, Unparsed, nil)
	f([]byte{}, Unparsed, []byte{})
	nuls := bytes.Repeat([]byte{0}, 1000)
	f(nuls, Unparsed, nil)
	// A 64 KiB body after a valid header.
	big := []byte("<13>1 2026-11-26T10:00:00Z h a - - - " + strings.Repeat("x", 64<<10))
	f(big, RFC5424, big[len(big)-64<<10:])
}

// TestAliasing checks the documented lifetime: fields alias the input, and
// a Message from a previous Parse is not changed by a later one's input
// (only by reuse of the scratch buffer).
func TestAliasing(t *testing.T) {
	p := NewParser(Config{})
	var m Message
	in := []byte(`<13>1 2026-11-26T10:00:00Z host app 7 - [a@1 k="v"] body`)
	p.Parse(in, &m)
	in[len(in)-1] = 'Y'
	if string(m.Body) != "bodY" {
		t.Errorf("Body does not alias the input: %q", m.Body)
	}
	if string(m.Attrs[1].Value) != "v" || string(m.Attrs[1].Key) != "a@1.k" {
		t.Errorf("attrs: %q", m.Attrs)
	}
	// Appending to a returned field must not overwrite the input.
	_ = append(m.Hostname, "XXXX"...)
	if !bytes.Contains(in, []byte(" host app ")) {
		t.Errorf("append to Hostname wrote into the input: %q", in)
	}
}

func TestZeroAllocs(t *testing.T) {
	p := NewParser(Config{})
	var m Message
	f := func(name, in string, want Format) {
		t.Helper()
		b := []byte(in)
		if got := p.Parse(b, &m); got != want {
			t.Fatalf("%s: format %v, want %v", name, got, want)
		}
		if n := testing.AllocsPerRun(200, func() { p.Parse(b, &m) }); n != 0 {
			t.Errorf("%s: %v allocations per Parse, want 0", name, n)
		}
	}
	f("rfc3164", msg3164, RFC3164)
	f("rfc5424+sd", msg5424SD, RFC5424)
	f("rfc5424+escapes", `<13>1 2026-11-26T10:00:00Z h a 1 m [x@1 q="say \"hi\"" b="C:\\dir"][y@2 z="\]"] msg`, RFC5424)
	f("rfc5424", msg5424, RFC5424)
	f("cisco", msgCisco, RFC3164)
	f("unparsed", msgUnparsed, Unparsed)
}
