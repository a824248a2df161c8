package proxy

import (
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/redact"
)

// An agent's trace context reaches the analyzer with the packet — also
// when redaction rewrote it — if the analyzer granted the trace
// capability, and is left out (the packet whole) if it did not. With
// tracing off logdist does not touch the context: the agent's span stays
// the parent.
func TestTraceContextForwarded(t *testing.T) {
	tc := frame.NewTraceContext([16]byte{0xab, 1, 2, 3}, [8]byte{0xcd, 4, 5, 6}, true)
	for _, c := range []struct {
		name          string
		grant, redact bool
	}{
		{"granted", true, false}, {"granted, redacted", true, true},
		{"not granted", false, false}, {"not granted, redacted", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := harnessOpts{msgs: 3, caps: frame.CapZstd | frame.CapTrace}
			if c.grant {
				o.upstreamCaps = frame.CapTrace
			}
			if c.redact {
				set := metrics.NewSet()
				rd, err := redact.Compile(redact.File{Builtins: []string{"all"}}, set)
				if err != nil {
					t.Fatal(err)
				}
				o.edit = func(cfg *Config) { cfg.Redactor, cfg.Metrics = rd, set }
			}
			h := newHarnessOpts(t, o)
			p := &frame.Packet{ID: 7, AgentID: []byte("traced")}
			for i := 0; i < 3; i++ {
				p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Body: []byte(dirtyBody)})
			}
			h.data = frame.AppendWithTrace(nil, (&frame.Encoder{}).AppendData(nil, 1, p, true), &tc)
			got := h.forward()
			lim := frame.DefaultLimits()
			hd, err := frame.ParseHeader(got, &lim)
			if err != nil {
				t.Fatal(err)
			}
			fb := got[:hd.FrameLen()]
			if err := hd.Check(fb[frame.HeaderSize:]); err != nil {
				t.Fatal(err)
			}
			var pk frame.Packet
			if err := frame.NewDecoder(lim).Decode(hd, fb[frame.HeaderSize:], &pk); err != nil {
				t.Fatal(err)
			}
			if pk.ID != 7 || len(pk.Messages) != 3 {
				t.Fatalf("analyzer got packet %d with %d messages", pk.ID, len(pk.Messages))
			}
			if redacted := !strings.Contains(string(pk.Messages[0].Body), "jane.doe@example.com"); redacted != c.redact {
				t.Fatalf("body %q: redacted %v, want %v", pk.Messages[0].Body, redacted, c.redact)
			}
			fwd, traced := frame.TraceOf(fb)
			if traced != c.grant {
				t.Fatalf("forwarded with a trace context: %v, want %v", traced, c.grant)
			}
			if traced && fwd != tc {
				t.Fatalf("trace context %s, want the agent's %s untouched (tracing is off)", fwd.String(), tc.String())
			}
		})
	}
}
