package proxy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/redact"
)

// redactHarness is the harness with a redactor (every built-in, and with
// rule a password rule), its packets' bodies being body.
func redactHarness(tb testing.TB, msgs int, body string, rule bool) *harness {
	f := redact.File{Builtins: []string{"all"}}
	if rule {
		f.Rules = []redact.Rule{{Name: "password", Pattern: `password=\S+`, Replace: "password=[REDACTED]"}}
	}
	set := metrics.NewSet()
	rd, err := redact.Compile(f, set)
	if err != nil {
		tb.Fatal(err)
	}
	h := newHarnessOpts(tb, harnessOpts{msgs: msgs, caps: frame.CapZstd, edit: func(c *Config) { c.Redactor, c.Metrics = rd, set }})
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
	for i := 0; i < msgs; i++ {
		p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Hostname: []byte("web-1"), App: []byte("api"), Body: []byte(body)})
	}
	h.data = (&frame.Encoder{}).AppendData(nil, 1, p, true)
	return h
}

const (
	cleanBody = "2026-11-26T21:00:00Z INFO request id=3f2a9c path=/api/v1/items status=200 duration_ms=12"
	dirtyBody = "2026-11-26T21:00:00Z INFO login user=jane.doe@example.com from 10.1.2.3 password=hunter2"
)

// What an analyzer gets is redacted, compressed again, and whole.
func TestRedactedForwarding(t *testing.T) {
	h := redactHarness(t, 3, dirtyBody, true)
	got := h.forward()
	if len(got) < frame.HeaderSize {
		t.Fatal("nothing forwarded")
	}
	hd := frame.Header(got)
	if hd.Type() != frame.TypeData || !hd.Compressed() || hd.FrameLen() > len(got) {
		t.Fatalf("forwarded frame: %v compressed=%v", hd.Type(), hd.Compressed())
	}
	var p frame.Packet
	if err := frame.NewDecoder(frame.DefaultLimits()).Decode(hd, got[frame.HeaderSize:hd.FrameLen()], &p); err != nil {
		t.Fatal(err)
	}
	want := "2026-11-26T21:00:00Z INFO login user=[REDACTED:email] from [REDACTED:ipv4] password=[REDACTED]"
	if len(p.Messages) != 3 || string(p.Messages[2].Body) != want || string(p.AgentID) != "bench-agent" {
		t.Fatalf("analyzer got %d messages, the last %q", len(p.Messages), p.Messages[len(p.Messages)-1].Body)
	}
	var sb strings.Builder
	h.lp.s.Metrics().WritePrometheus(&sb)
	for _, m := range []string{`logdist_redactions_total{rule="email"} 3`, `logdist_redactions_total{rule="password"} 3`} {
		if !strings.Contains(sb.String(), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	// The harness's loop is not one of the server's (whose counters
	// /metrics sums): read it directly.
	if n := h.lp.m.redactedPackets.Get(); n != 1 {
		t.Errorf("redacted packets %d, want 1", n)
	}
}

// Redaction keeps the per-packet path free of allocations, for packets
// with nothing to redact and for packets the built-ins redact and that
// are encoded again. A user rule (a regular expression) that matches
// costs two per field it changes: Go's regexp returns match indexes in
// new slices.
func TestRedactPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops what it is given, and regexp and zstd pool their state; the pin holds without -race (make test-short, bench-go)")
	}
	for _, c := range []struct {
		body string
		rule bool
		want float64
	}{{cleanBody, true, 0}, {dirtyBody, false, 0}, {dirtyBody, true, 2 * 10}} {
		h := redactHarness(t, 10, c.body, c.rule)
		for i := 0; i < 1000; i++ {
			h.cycle()
		}
		if allocs := testing.AllocsPerRun(2000, h.cycle); allocs != c.want {
			t.Errorf("body %q, user rule %v: %.2f allocations per 10-message packet, want %v", c.body, c.rule, allocs, c.want)
		}
	}
}

// BenchmarkRedactPath is BenchmarkForwardPath with a redactor (every
// built-in and one rule): decode, redact and, for the dirty body, encode
// again. Compare with BenchmarkForwardPath for the cost of redaction.
func BenchmarkRedactPath(b *testing.B) {
	for _, c := range []struct{ name, body string }{{"clean", cleanBody}, {"dirty", dirtyBody}} {
		for _, msgs := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/msgs=%d", c.name, msgs), func(b *testing.B) {
				h := redactHarness(b, msgs, c.body, true)
				for i := 0; i < 1000; i++ {
					h.cycle()
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					h.cycle()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*msgs), "ns/msg")
			})
		}
	}
}

// A packet that redaction makes larger than --max-raw is refused with a
// per-packet ERROR saying so, and not forwarded: an analyzer would close
// its connection on it.
func TestRedactedTooLarge(t *testing.T) {
	body := strings.Repeat("x@y.io ", 800) // 5,600 bytes; 16 per replacement: 12,800
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent"), Messages: []frame.Message{{Body: []byte(body)}}}
	raw := p.RawSize()
	rd, err := redact.Compile(redact.File{Builtins: []string{"email"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) {
		c.Redactor = rd
		c.Limits.MaxFrame, c.Limits.MaxRaw = uint32(raw+100), uint32(raw+100)
		c.Limits.MaxBody = 64 << 10
	}})
	h.data = (&frame.Encoder{}).AppendData(nil, 1, p, false)
	for _, u := range h.ups {
		u.keep, u.out = true, nil
	}
	h.ac.keep, h.ac.out = true, nil
	h.send()
	h.lp.flush()
	for _, u := range h.ups {
		if len(u.out) > 0 {
			t.Fatal("the oversized redacted packet was forwarded")
		}
	}
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	m.read(h.ac.out, 1)
	if m.resolved[1] != "error" {
		t.Fatalf("agent's packet resolved as %q, want a per-packet ERROR", m.resolved[1])
	}
	if !bytes.Contains(h.ac.out, []byte("beyond --max-frame")) {
		t.Fatalf("the ERROR does not say why: %q", h.ac.out)
	}
}

// A packet redacted is compressed again as its agent compressed it: with
// entropy-coded literals or without (frame.Encoder.FastDecode), unless
// Config.FastDecode asks for the latter for every packet.
func TestRedactKeepsFastDecode(t *testing.T) {
	for _, tc := range []struct {
		agent, conf, want bool
	}{{false, false, false}, {true, false, true}, {false, true, true}} {
		h := redactHarness(t, 10, dirtyBody, true)
		h.lp.conf.FastDecode = tc.conf
		p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
		for i := range 10 {
			p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Hostname: []byte("web-1"), App: []byte("api"), Body: []byte(fmt.Sprintf("%s n=%d", dirtyBody, i))})
		}
		h.data = (&frame.Encoder{FastDecode: tc.agent}).AppendData(nil, 1, p, true)
		if got := frame.FastDecoded(frame.Header(h.data), h.data[frame.HeaderSize:]); got != tc.agent {
			t.Fatalf("agent FastDecode %v: its frame reads as %v", tc.agent, got)
		}
		got := h.forward()
		if len(got) < frame.HeaderSize || h.lp.m.redactedPackets.Get() != 1 {
			t.Fatalf("agent %v, conf %v: %d bytes forwarded, %d redacted", tc.agent, tc.conf, len(got), h.lp.m.redactedPackets.Get())
		}
		hd := frame.Header(got)
		if fd := frame.FastDecoded(hd, got[frame.HeaderSize:hd.FrameLen()]); fd != tc.want {
			t.Errorf("agent FastDecode %v, Config.FastDecode %v: forwarded FastDecoded %v, want %v", tc.agent, tc.conf, fd, tc.want)
		}
	}
}
