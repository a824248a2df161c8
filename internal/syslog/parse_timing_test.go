package syslog

import (
	"testing"
	"time"
)

// Typical messages, as logger and rsyslog send them.
const (
	msg3164     = "<27>Nov 26 21:51:53 web01.example.com sshd[11164]: Failed password for invalid user admin from 203.0.113.7 port 50022 ssh2"
	msg5424     = "<165>1 2026-11-26T21:51:53.131622+00:00 web01.example.com evntslog 1234 ID47 - An application event log entry for the benchmark"
	msg5424SD   = `<165>1 2026-11-26T21:51:53.131622+00:00 web01.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][timeQuality tzKnown="1" isSynced="0"] An application event log entry`
	msgCisco    = "<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console by vty0 (10.34.195.36)"
	msgUnparsed = "this line came without any syslog header at all, a raw application log line"
)

// BenchmarkParse reports ns/op (= ns per message), allocs, msgs/s and
// cpu-ns/msg for each message family; b.SetBytes makes MB/s comparable
// across sizes.
func BenchmarkParse(b *testing.B) {
	now := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	for _, c := range []struct{ name, in string }{
		{"rfc3164", msg3164},
		{"rfc5424", msg5424},
		{"rfc5424_sd", msg5424SD},
		{"cisco", msgCisco},
		{"unparsed", msgUnparsed},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := NewParser(Config{Now: func() time.Time { return now }})
			var m Message
			in := []byte(c.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			cpu0 := processCPU()
			for b.Loop() {
				p.Parse(in, &m)
			}
			reportRates(b, processCPU()-cpu0)
		})
	}
}

// reportRates adds msgs/s (wall) and cpu-ns/msg (process CPU time, less
// sensitive to a busy machine than ns/op).
func reportRates(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// BenchmarkParseSystemClock is rfc3164 with the default clock (time.Now
// per BSD timestamp, for year inference), as the proxy will run it.
func BenchmarkParseSystemClock(b *testing.B) {
	p := NewParser(Config{})
	var m Message
	in := []byte(msg3164)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	cpu0 := processCPU()
	for b.Loop() {
		p.Parse(in, &m)
	}
	reportRates(b, processCPU()-cpu0)
}
