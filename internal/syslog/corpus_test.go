package syslog

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
)

// corpusNow is the clock every corpus file is parsed with.
var corpusNow = time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)

// corpusCase is one case of a testdata/*.txt file: "in:" starts a case,
// the other keys are its expected fields (absent = empty or zero). String
// values are Go-quoted; "attr:" takes two quoted strings; "time:" is
// RFC 3339 (absent = Timestamp 0).
type corpusCase struct {
	file string
	line int
	in   []byte
	want string // the expected Message, formatted by dump
}

func loadCorpus(t testing.TB) []corpusCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cannot find corpus: %v", err)
	}
	var cases []corpusCase
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		var c *corpusCase
		var w expected
		flush := func() {
			if c != nil {
				c.want = w.dump()
				cases = append(cases, *c)
			}
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			key, val, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s:%d: want key: value", name, n)
			}
			bad := func(err error) {
				if err != nil {
					t.Fatalf("%s:%d: %v", name, n, err)
				}
			}
			str := func(s string) string {
				u, err := strconv.Unquote(s)
				bad(err)
				return u
			}
			switch key {
			case "in":
				flush()
				c = &corpusCase{file: name, line: n, in: []byte(str(val))}
				w = expected{}
			case "format":
				w.format = val
			case "facility":
				v, err := strconv.Atoi(val)
				bad(err)
				w.facility = v
			case "severity":
				v, err := strconv.Atoi(val)
				bad(err)
				w.severity = v
			case "time":
				ts, err := time.Parse(time.RFC3339Nano, val)
				bad(err)
				w.ts = ts.UnixNano()
			case "host":
				w.host = str(val)
			case "app":
				w.app = str(val)
			case "procid":
				w.procid = str(val)
			case "msgid":
				w.msgid = str(val)
			case "body":
				w.body = str(val)
			case "attr":
				k, v, ok := strings.Cut(val, `" "`)
				if !ok {
					bad(fmt.Errorf("attr wants two quoted strings"))
				}
				w.attrs = append(w.attrs, [2]string{str(k + `"`), str(`"` + v)})
			default:
				bad(fmt.Errorf("unknown key %q", key))
			}
		}
		flush()
		bad := sc.Err()
		f.Close()
		if bad != nil {
			t.Fatal(bad)
		}
	}
	return cases
}

// expected is a Message in comparable form.
type expected struct {
	format                         string
	facility, severity             int
	ts                             int64
	host, app, procid, msgid, body string
	attrs                          [][2]string
}

func (e expected) dump() string {
	var s strings.Builder
	fmt.Fprintf(&s, "format=%s facility=%d severity=%d time=%s\n", e.format, e.facility, e.severity, fmtTime(e.ts))
	fmt.Fprintf(&s, "host=%q app=%q procid=%q msgid=%q\nbody=%q\n", e.host, e.app, e.procid, e.msgid, e.body)
	for _, a := range e.attrs {
		fmt.Fprintf(&s, "attr %q=%q\n", a[0], a[1])
	}
	return s.String()
}

func fmtTime(ns int64) string {
	if ns == 0 {
		return "0"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func toExpected(f Format, m *Message) expected {
	e := expected{
		format: f.String(), facility: int(m.Facility), severity: int(m.Severity), ts: m.Timestamp,
		host: string(m.Hostname), app: string(m.App), procid: string(m.ProcID), msgid: string(m.MsgID),
		body: string(m.Body),
	}
	for _, a := range m.Attrs {
		e.attrs = append(e.attrs, [2]string{string(a.Key), string(a.Value)})
	}
	return e
}

func TestCorpus(t *testing.T) {
	p := NewParser(Config{Now: func() time.Time { return corpusNow }})
	var m Message
	cases := loadCorpus(t)
	for _, c := range cases {
		f := p.Parse(c.in, &m)
		if got := toExpected(f, &m).dump(); got != c.want {
			t.Errorf("%s:%d: Parse(%q)\ngot:\n%swant:\n%s", c.file, c.line, c.in, got, c.want)
		}
	}
	t.Logf("%d corpus cases", len(cases))
}

// TestCorpusAppended checks that the same inputs parse the same with
// garbage after them in the buffer (no reads past len) and with a reused
// Message full of stale fields.
func TestCorpusReuse(t *testing.T) {
	p := NewParser(Config{Now: func() time.Time { return corpusNow }})
	var m Message
	cases := loadCorpus(t)
	for i := range cases {
		// Parse the previous case first so that every field is stale.
		prev := cases[(i+len(cases)-1)%len(cases)]
		p.Parse(prev.in, &m)
		c := cases[i]
		buf := append(bytes.Clone(c.in), "<13>1 2026-11-26T10:00:00Z h a p m [x@1 k=\"v\"] tail"...)
		f := p.Parse(buf[:len(c.in):len(c.in)], &m)
		if got := toExpected(f, &m).dump(); got != c.want {
			t.Errorf("%s:%d: Parse(%q) after another message\ngot:\n%swant:\n%s", c.file, c.line, c.in, got, c.want)
		}
	}
}
