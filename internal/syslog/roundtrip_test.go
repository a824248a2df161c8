package syslog

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// Round trips: messages built from random fields, written the way senders
// write them, must parse back to exactly those fields.

var (
	headerWord = rapid.StringMatching(`[!-~]{1,24}`).Filter(func(s string) bool { return s != "-" })
	sdName     = rapid.StringMatching(`[!#-<>-\\^-~]{1,12}`) // PRINTUSASCII but = ] " and space
)

// escapeSD escapes a PARAM-VALUE as RFC 5424 section 6.3.3 says.
func escapeSD(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

func optional(t *rapid.T, label string) string {
	if rapid.Bool().Draw(t, label+"?") {
		return headerWord.Draw(t, label)
	}
	return ""
}

func TestRoundTrip5424(t *testing.T) {
	p := NewParser(Config{})
	var m Message
	rapid.Check(t, func(t *rapid.T) {
		pri := rapid.IntRange(0, 191).Draw(t, "pri")
		host, app := optional(t, "host"), optional(t, "app")
		procid, msgid := optional(t, "procid"), optional(t, "msgid")
		var want []string // attributes as key=value
		if procid != "" {
			want = append(want, "procid="+procid)
		}
		if msgid != "" {
			want = append(want, "msgid="+msgid)
		}

		var ts int64
		tsText := "-"
		if rapid.Bool().Draw(t, "ts?") {
			sec := rapid.Int64Range(0, 7e9).Draw(t, "sec") // 1970 to 2191
			digits := rapid.IntRange(0, 9).Draw(t, "digits")
			frac := rapid.IntRange(0, 999999999).Draw(t, "ns")
			for range 9 - digits {
				frac /= 10
			}
			ns := frac
			for range 9 - digits {
				ns *= 10
			}
			off := rapid.IntRange(-23*60-59, 23*60+59).Draw(t, "offset minutes")
			tm := time.Unix(sec, int64(ns)).In(time.FixedZone("", off*60))
			ts = tm.UnixNano()
			tsText = tm.Format("2006-01-02T15:04:05")
			if digits > 0 {
				tsText += fmt.Sprintf(".%0*d", digits, frac)
			}
			if off == 0 && rapid.Bool().Draw(t, "Z") {
				tsText += "Z"
			} else {
				tsText += tm.Format("-07:00")
			}
		}

		sd := "-"
		if n := rapid.IntRange(0, 3).Draw(t, "elements"); n > 0 {
			var s strings.Builder
			for range n {
				id := sdName.Draw(t, "id")
				s.WriteString("[" + id)
				for range rapid.IntRange(0, 3).Draw(t, "params") {
					name := sdName.Draw(t, "name")
					v := rapid.String().Draw(t, "value")
					s.WriteString(" " + name + `="` + escapeSD(v) + `"`)
					want = append(want, id+"."+name+"="+v)
				}
				s.WriteString("]")
			}
			sd = s.String()
		}

		in := fmt.Sprintf("<%d>1 %s %s %s %s %s %s", pri, tsText, nil2dash(host), nil2dash(app), nil2dash(procid), nil2dash(msgid), sd)
		body := ""
		if rapid.Bool().Draw(t, "msg?") {
			body = strings.TrimRight(rapid.String().Draw(t, "msg"), "\n\r\x00")
			body = strings.TrimPrefix(body, bom)
			bomText := ""
			if rapid.Bool().Draw(t, "bom") {
				bomText = bom
			}
			in += " " + bomText + body
		}
		if f := p.Parse([]byte(in), &m); f != RFC5424 {
			t.Fatalf("Parse(%q) = %v", in, f)
		}
		got := []string{}
		for _, a := range m.Attrs {
			got = append(got, string(a.Key)+"="+string(a.Value))
		}
		if want == nil {
			want = []string{}
		}
		if int(m.Facility)*8+int(m.Severity) != pri || m.Timestamp != ts ||
			string(m.Hostname) != host || string(m.App) != app || string(m.ProcID) != procid ||
			string(m.MsgID) != msgid || string(m.Body) != body || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("Parse(%q):\n%s\nwant ts %s body %q attrs %q", in, toExpected(RFC5424, &m).dump(), fmtTime(ts), body, want)
		}
	})
}

func nil2dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func TestRoundTrip3164(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := NewParser(Config{Now: func() time.Time { return now }})
	var m Message
	rapid.Check(t, func(t *rapid.T) {
		pri := rapid.IntRange(0, 191).Draw(t, "pri")
		// Any second of 2026: year inference must give 2026 back.
		tm := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rapid.Int64Range(0, 365*86400-1).Draw(t, "sec")) * time.Second)
		stamp := tm.Format(time.Stamp) // "Jan _2 15:04:05"
		host := rapid.StringMatching(`[a-zA-Z0-9][a-zA-Z0-9.-]{0,30}`).Draw(t, "host")
		app := rapid.StringMatching(`[a-zA-Z0-9_./%-]{1,32}`).Draw(t, "app")
		pid := ""
		tag := app
		if rapid.Bool().Draw(t, "pid?") {
			pid = rapid.StringMatching(`[0-9]{1,7}`).Draw(t, "pid")
			tag += "[" + pid + "]"
		}
		body := strings.TrimRight(rapid.String().Draw(t, "body"), "\n\r\x00")
		if body == "" {
			body = "x" // a tag needs a message after it
		}
		in := fmt.Sprintf("<%d>%s %s %s: %s", pri, stamp, host, tag, body)
		if f := p.Parse([]byte(in), &m); f != RFC3164 {
			t.Fatalf("Parse(%q) = %v", in, f)
		}
		var attrs string
		for _, a := range m.Attrs {
			attrs += string(a.Key) + "=" + string(a.Value)
		}
		wantAttrs := ""
		if pid != "" {
			wantAttrs = "procid=" + pid
		}
		if int(m.Facility)*8+int(m.Severity) != pri || m.Timestamp != tm.UnixNano() ||
			string(m.Hostname) != host || string(m.App) != app || string(m.ProcID) != pid ||
			m.MsgID != nil || string(m.Body) != body || attrs != wantAttrs {
			t.Fatalf("Parse(%q):\n%s\nwant ts %s", in, toExpected(RFC3164, &m).dump(), fmtTime(tm.UnixNano()))
		}
	})
}
