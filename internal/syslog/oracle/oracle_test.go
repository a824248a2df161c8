package oracle

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/logdist/logdist/internal/syslog"
)

// The known, intentional differences between the two parsers, on inputs
// both accept as the same RFC (each is also handled where it is checked):
//
//   - RFC 5424: we drop a BOM that starts MSG; go-syslog keeps it.
//   - RFC 3164: we accept IPv6 literals as HOSTNAME; go-syslog's hostname
//     cannot contain ':' and reads the address as message text.
//   - RFC 3164: we skip the lone ": " Cisco ASA puts between hostname and
//     tag ("asa01 : %ASA-6-302013: ..."); go-syslog reads ": %ASA..." as
//     the message.
//   - RFC 3164: a word followed only by spaces is message text for us;
//     go-syslog takes it as HOSTNAME with a message of spaces.
//   - RFC 3164: go-syslog's state machine sets Appname or Hostname on a
//     partial match it then abandons (the word stays in its message); we
//     report no tag or hostname then. For a would-be tag with an unclosed
//     '[' ("app[12 text") its message stops before the '['; ours keeps it.
//   - RFC 3164: go-syslog accepts spaces in the pid ("app[1 2]: x"); we
//     read no tag then, and keep the text as message.
//   - Inputs go-syslog rejects and we accept (not compared): RFC 5424
//     without an offset or with ±hhmm, fractions beyond 6 digits, UTF-8 in
//     header fields, unescaped ']' in PARAM-VALUE, malformed or missing
//     STRUCTURED-DATA; RFC 3164 with a bare single-digit day, a year, Cisco
//     prefixes (go-syslog needs them configured), or no timestamp.
//   - Without PRI go-syslog (not configured for optional PRI) rejects
//     everything; we default to PRI 13 (not compared).

// oracleNow makes year inference give 2026 for every month (2026-01-01 is
// exactly 334 days back, 2026-12-31 less than 31 days ahead), the year the
// oracle is told to use.
var oracleNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func newParser() *syslog.Parser {
	return syslog.NewParser(syslog.Config{Now: func() time.Time { return oracleNow }})
}

// corpusInputs returns the "in:" lines of ../testdata/*.txt.
func corpusInputs(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cannot find the corpus: %v", err)
	}
	var ins [][]byte
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "in: "); ok {
				s, err := strconv.Unquote(v)
				if err != nil {
					t.Fatalf("%s: %q: %v", name, v, err)
				}
				ins = append(ins, []byte(s))
			}
		}
	}
	return ins
}

func dump(f syslog.Format, m *syslog.Message) string {
	var s strings.Builder
	fmt.Fprintf(&s, "format=%s facility=%d severity=%d time=%s\n", f, m.Facility, m.Severity, fmtTime(m.Timestamp))
	fmt.Fprintf(&s, "host=%q app=%q procid=%q msgid=%q\nbody=%q\n", m.Hostname, m.App, m.ProcID, m.MsgID, m.Body)
	for _, a := range m.Attrs {
		fmt.Fprintf(&s, "attr %q=%q\n", a.Key, a.Value)
	}
	return s.String()
}

func fmtTime(ns int64) string {
	if ns == 0 {
		return "0"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// trim is the parser's own trimming of trailing newlines and NULs.
func trim(b []byte) []byte { return bytes.TrimRight(b, "\n\r\x00") }

// TestOracle compares both parsers over the corpus and counts how many
// inputs were actually compared, so the test cannot pass vacuously.
func TestOracle(t *testing.T) {
	p := newParser()
	o := newOracle()
	var m syslog.Message
	compared := 0
	for _, in := range corpusInputs(t) {
		f := p.Parse(in, &m)
		diff, ok := o.compare(trim(in), f, &m)
		if diff != "" {
			t.Errorf("Parse(%q) disagrees with go-syslog: %s\nours:\n%s", in, diff, dump(f, &m))
		}
		if ok {
			compared++
		}
	}
	if compared < 30 {
		t.Errorf("only %d corpus inputs compared", compared)
	}
	t.Logf("%d corpus inputs compared with go-syslog", compared)
}

// FuzzOracle is the differential fuzz test: on every input both parsers
// accept as the same RFC, the fields must agree but for the known
// differences above.
func FuzzOracle(f *testing.F) {
	for _, in := range corpusInputs(f) {
		f.Add(in)
	}
	p := newParser()
	o := newOracle()
	var m syslog.Message
	f.Fuzz(func(t *testing.T, in []byte) {
		fm := p.Parse(in, &m)
		if diff, _ := o.compare(trim(in), fm, &m); diff != "" {
			t.Fatalf("Parse(%q) disagrees with go-syslog: %s\nours:\n%s", in, diff, dump(fm, &m))
		}
	})
}

const bom = "\xef\xbb\xbf"

// Years int64 nanoseconds can hold, as in the parser.
const minYear, maxYear = 1678, 2261

// oracle wraps go-syslog's strict (not best-effort) parsers, configured as
// close to ours as its options allow.
type oracle struct {
	r5424, r3164 gosyslog.Machine
}

func newOracle() *oracle {
	return &oracle{
		r5424: rfc5424.NewParser(),
		r3164: rfc3164.NewParser(
			rfc3164.WithYear(rfc3164.Year{YYYY: 2026}),
			rfc3164.WithTimezone(time.UTC),
			rfc3164.WithRFC3339(),
			rfc3164.WithSecondFractions(),
			rfc3164.WithLenientDay(),
		),
	}
}

// compare describes the disagreements between our result and the
// oracle's on in (already trimmed), or returns "". ok reports whether the
// oracle accepted the input, so that there was something to compare.
func (o *oracle) compare(in []byte, f syslog.Format, m *syslog.Message) (diff string, ok bool) {
	if lib, err := o.r5424.Parse(in); err == nil && lib != nil && lib.Valid() {
		if f != syslog.RFC5424 {
			return "the oracle parses it as RFC 5424, we as " + f.String(), true
		}
		return compare5424(lib.(*rfc5424.SyslogMessage), m), true
	}
	if lib, err := o.r3164.Parse(in); err == nil && lib != nil && lib.Valid() {
		if f == syslog.RFC5424 {
			// We try RFC 5424 first; go-syslog's RFC 3164 machine is the
			// wrong one to ask then.
			return "", false
		}
		if f != syslog.RFC3164 {
			return "the oracle parses it as RFC 3164, we as " + f.String(), true
		}
		return compare3164(lib.(*rfc3164.SyslogMessage), m), true
	}
	return "", false
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func compareBase(lib *gosyslog.Base, m *syslog.Message) string {
	var d []string
	ne := func(name string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: oracle %q, ours %q", name, a, b))
		}
	}
	if lib.Priority != nil {
		ne("facility", int(*lib.Facility), int(m.Facility))
		ne("severity", int(*lib.Severity), int(m.Severity))
	}
	var ts int64
	if lib.Timestamp != nil && lib.Timestamp.Year() >= minYear && lib.Timestamp.Year() <= maxYear {
		ts = lib.Timestamp.UnixNano()
	}
	ne("timestamp", fmtTime(ts), fmtTime(m.Timestamp))
	ne("hostname", str(lib.Hostname), string(m.Hostname))
	ne("app", str(lib.Appname), string(m.App))
	ne("procid", str(lib.ProcID), string(m.ProcID))
	ne("msgid", str(lib.MsgID), string(m.MsgID))
	ne("body", str(lib.Message), string(m.Body))
	return strings.Join(d, "; ")
}

func compare5424(lib *rfc5424.SyslogMessage, m *syslog.Message) string {
	// Known difference: we drop the BOM that starts a UTF-8 MSG, go-syslog
	// keeps it.
	if lib.Message != nil {
		s := strings.TrimPrefix(*lib.Message, bom)
		lib.Message = &s
	}
	d := compareBase(&lib.Base, m)
	want := map[string]string{}
	if lib.StructuredData != nil {
		for id, params := range *lib.StructuredData {
			for k, v := range params {
				want[id+"."+k] = v
			}
		}
	}
	got := map[string]string{}
	for _, a := range m.Attrs {
		if k := string(a.Key); k != "procid" && k != "msgid" {
			got[k] = string(a.Value)
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		d += fmt.Sprintf("; structured data: oracle %q, ours %q", want, got)
	}
	return strings.TrimPrefix(d, "; ")
}

func compare3164(lib *rfc3164.SyslogMessage, m *syslog.Message) string {
	// Known difference: go-syslog's hostname cannot contain ':', so it
	// reads an IPv6 hostname as the start of the message; we keep it.
	if bytes.IndexByte(m.Hostname, ':') >= 0 {
		return ""
	}
	// Known difference: go-syslog's hostname may be followed by nothing but
	// spaces ("h  " is hostname "h", message " "); for us a word followed
	// by nothing but spaces is message text.
	if lib.Message != nil && strings.Trim(*lib.Message, " ") == "" {
		return ""
	}
	// Known difference (a go-syslog quirk): its state machine sets Appname
	// or Hostname on a partial match it then abandons ("h http://x" gives
	// Appname "http", "h " Hostname "h", each with the word still in the
	// message); we report no tag or hostname then.
	if lib.Message != nil {
		if lib.Appname != nil && m.App == nil && strings.HasPrefix(*lib.Message, *lib.Appname) {
			lib.Appname = nil
		}
		if lib.Hostname != nil && m.Hostname == nil && strings.HasPrefix(*lib.Message, *lib.Hostname) {
			lib.Hostname = nil
		}
	}
	// Known difference: we skip the lone ": " Cisco ASA puts between
	// hostname and tag and read the tag; go-syslog reads it all as message.
	if lib.Appname == nil && m.App != nil && lib.Message != nil && strings.HasPrefix(*lib.Message, ": ") {
		return ""
	}
	// Known difference (a go-syslog quirk): for a would-be tag with an
	// unclosed '[' ("0[0", "0[00", "app[1 : x"), go-syslog's message stops
	// before the '[' or starts after it, and it may report the word as
	// Appname. We read no tag and keep the whole text. This also covers
	// pids with spaces ("app[1 2]: x", "0[ ]: 0"), which go-syslog accepts
	// (as ProcID, or as a hostname "0[" and a tag "]") and we do not.
	if m.App == nil {
		word, _, _ := bytes.Cut(m.Body, []byte(" "))
		if bytes.IndexByte(word, '[') >= 0 {
			return ""
		}
	}
	return compareBase(&lib.Base, m)
}
