package oracle

import (
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/logdist/logdist/internal/syslog"
)

// The messages of internal/syslog's BenchmarkParse.
const (
	msg3164   = "<27>Nov 26 21:51:53 web01.example.com sshd[11164]: Failed password for invalid user admin from 203.0.113.7 port 50022 ssh2"
	msg5424   = "<165>1 2026-11-26T21:51:53.131622+00:00 web01.example.com evntslog 1234 ID47 - An application event log entry for the benchmark"
	msg5424SD = `<165>1 2026-11-26T21:51:53.131622+00:00 web01.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][timeQuality tzKnown="1" isSynced="0"] An application event log entry`
)

// BenchmarkParsers runs internal/syslog and go-syslog side by side on the
// same messages: the measurement behind writing our own parser.
func BenchmarkParsers(b *testing.B) {
	now := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, in string
		lib      func() func([]byte)
	}{
		{"rfc3164", msg3164, func() func([]byte) {
			p := rfc3164.NewParser(rfc3164.WithYear(rfc3164.Year{YYYY: 2026}))
			return func(in []byte) { p.Parse(in) }
		}},
		{"rfc5424", msg5424, func() func([]byte) {
			p := rfc5424.NewParser()
			return func(in []byte) { p.Parse(in) }
		}},
		{"rfc5424_sd", msg5424SD, func() func([]byte) {
			p := rfc5424.NewParser()
			return func(in []byte) { p.Parse(in) }
		}},
	} {
		in := []byte(c.in)
		b.Run(c.name+"/logdist", func(b *testing.B) {
			p := syslog.NewParser(syslog.Config{Now: func() time.Time { return now }})
			var m syslog.Message
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				p.Parse(in, &m)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(c.name+"/go-syslog", func(b *testing.B) {
			parse := c.lib()
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				parse(in)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
