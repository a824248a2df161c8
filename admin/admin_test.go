package admin_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/proxy"
	"github.com/logdist/logdist/proxy/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gnet registers enrolled connections through a process-wide
		// worker pool (ants) whose idle workers outlive any one engine.
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	)
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// An operator sees why an analyzer is down — the connection error, with
// the operating system's words, and since when — and logdist is not ready
// while no analyzer can take a packet. The error used to be recorded and
// never shown.
func TestStatusShowsWhyAnAnalyzerIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: connections are refused
	cfg := proxy.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SyslogUDP = ""
	cfg.Loops = 1
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Balancer.Logger = cfg.Logger
	cfg.Analyzers = []proxy.AnalyzerConfig{{Name: "down-1", Addr: dead, Weight: 1}}
	s, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(t.Context())
	h := admin.New(admin.Config{Server: s})
	var rows []status.Analyzer
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, h, "/api/v1/analyzers")
		if code != 200 {
			t.Fatalf("GET /api/v1/analyzers: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && rows[0].LastError != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no last error after 10 s: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := rows[0]; !strings.Contains(r.LastError, "connection refused") || r.LastErrorAt == nil || r.Healthy {
		t.Fatalf("row %+v: want a refused connection, its time, and not healthy", r)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no analyzer can take packets") {
		t.Fatalf("/readyz with every analyzer down: %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, h, "/metrics"); code != 200 || !strings.Contains(body, `logdist_upstream_dial_failures_total{analyzer="down-1"}`) {
		t.Fatalf("/metrics lacks the analyzer's dial failures: %d", code)
	}
}
