// Package admin is logdist's admin HTTP API, served over the status a
// running proxy.Server reports (package proxy/status): liveness and
// readiness, Prometheus metrics, the analyzers, and optionally pprof.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/proxy"
)

// Config configures the admin handler.
type Config struct {
	// Server is the distributor the API reports on.
	Server *proxy.Server
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
}

// New returns the admin API:
//
//	GET /healthz           liveness: 200 "ok" until a graceful shutdown begins
//	GET /readyz            readiness: 200 only when an analyzer can take packets and logdist is not draining
//	GET /metrics           Prometheus text: the server's metrics and the process's
//	GET /api/v1/analyzers  the analyzers (JSON array of status.Analyzer)
//	GET /api/v1/status     the whole status (status.Status)
//	GET /debug/pprof/...   with Config.Pprof
func New(cfg Config) http.Handler {
	s := cfg.Server
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.Draining() {
			http.Error(w, "draining\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.Status()
		switch {
		case st.Draining:
			http.Error(w, "draining\n", http.StatusServiceUnavailable)
		case !st.Ready:
			http.Error(w, "no analyzer can take packets (all down, drained or at weight 0)\n", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.Metrics().WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /api/v1/analyzers", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Status().Analyzers)
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Status())
	})
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
