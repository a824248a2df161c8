package e2e

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpSink is an OTLP/HTTP trace receiver: it keeps every span it is sent.
type otlpSink struct {
	mu    sync.Mutex
	spans []sinkSpan
}

type sinkSpan struct {
	service, name     string
	trace, id, parent string
	start, end        uint64
	statusError       bool
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.spans = append(s.spans, sinkSpan{service: service, name: sp.Name,
					trace: hex.EncodeToString(sp.TraceId), id: hex.EncodeToString(sp.SpanId), parent: hex.EncodeToString(sp.ParentSpanId),
					start: sp.StartTimeUnixNano, end: sp.EndTimeUnixNano, statusError: sp.GetStatus().GetCode() == 2})
			}
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

func (s *otlpSink) all() []sinkSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkSpan(nil), s.spans...)
}

// A packet's trace runs through the three processes: logsend's span is
// the parent of logdist's packet span, whose dispatch span is the parent
// of analyzerd's — one trace, sent over OTLP/HTTP by each process to a
// receiver in the test.
func TestTraceAcrossProcesses(t *testing.T) {
	sink := &otlpSink{}
	hs := httptest.NewServer(sink)
	defer hs.Close()
	otlp := []string{"--otlp-endpoint", hs.URL}
	c := newClusterWith(t, []float64{0.5, 0.5}, otlp, otlp...)

	send := exec.Command(binary(t, "logsend"), "--target", c.listen, "--agent-id", "traced-agent", "--batch", "1",
		"--timeout", "10s", "--otlp-endpoint", hs.URL)
	send.Stdin = strings.NewReader("first\nsecond\nthird\nfourth\n")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("logsend: %v\n%s", err, out)
	}

	// Four traces, each with the four spans in one chain.
	var chains map[string][]sinkSpan
	waitFor(t, "every process's spans", 15*time.Second, func() bool {
		chains = map[string][]sinkSpan{}
		for _, s := range sink.all() {
			chains[s.trace] = append(chains[s.trace], s)
		}
		if len(chains) != 4 {
			return false
		}
		for _, spans := range chains {
			if len(spans) < 4 {
				return false
			}
		}
		return true
	})
	for trace, spans := range chains {
		byName := map[string]sinkSpan{}
		for _, s := range spans {
			byName[s.name] = s
		}
		root, pkt, disp, proc := byName["logsend.packet"], byName["logdist.packet"], byName["logdist.dispatch"], byName["analyzerd.process"]
		for _, want := range []struct {
			span          sinkSpan
			name, service string
			parent        string
		}{
			{root, "logsend.packet", "logsend", ""},
			{pkt, "logdist.packet", "logdist", root.id},
			{disp, "logdist.dispatch", "logdist", pkt.id},
			{proc, "analyzerd.process", "analyzerd", disp.id},
		} {
			if want.span.name != want.name || want.span.service != want.service || want.span.parent != want.parent || want.span.statusError {
				t.Errorf("trace %s: %s is %+v, want service %s and parent %q", trace, want.name, want.span, want.service, want.parent)
			}
		}
		// The chain nests in time, too: logdist's packet span ends
		// after the analyzer processed the packet.
		if !(pkt.start <= disp.start && disp.start <= proc.start && proc.end <= pkt.end && proc.end <= disp.end+uint64(time.Second)) {
			t.Errorf("trace %s: spans do not nest: packet %d-%d dispatch %d-%d process %d-%d", trace, pkt.start, pkt.end, disp.start, disp.end, proc.start, proc.end)
		}
	}
}
