package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/balancer"
)

// analyzerRow is one analyzer as the admin API shows it.
type analyzerRow struct {
	Name            string  `json:"name"`
	Addr            string  `json:"addr"`
	Weight          float64 `json:"weight"`
	EffectiveWeight float64 `json:"effective_weight"`
	// State is the administrative state: enabled, drained, forced_down...
	State   string `json:"state"`
	Health  string `json:"health"`
	Breaker string `json:"breaker"`
	Healthy bool   `json:"healthy"`
	// Connections is how many event loops have a ready connection to it.
	Connections int    `json:"connections"`
	Packets     uint64 `json:"packets"`
	Messages    uint64 `json:"messages"`
	Bytes       uint64 `json:"bytes"`
	// Share is this analyzer's fraction of all packets picked so far.
	Share float64 `json:"share"`
}

func (s *Server) analyzerRows() []analyzerRow {
	v := s.set.View()
	var total uint64
	for _, a := range v.Analyzers {
		total += a.Packets
	}
	rows := make([]analyzerRow, 0, len(v.Analyzers))
	for _, a := range v.Analyzers {
		r := analyzerRow{
			Name:            a.Name,
			Addr:            a.Addr,
			Weight:          a.Weight,
			EffectiveWeight: a.EffectiveWeight,
			State:           a.Admin.String(),
			Health:          a.Health.String(),
			Breaker:         a.Breaker.String(),
			Healthy:         a.Health == balancer.Up,
			Connections:     int(s.readyConns[a.ID].Load()),
			Packets:         a.Packets,
			Messages:        a.Messages,
			Bytes:           a.Bytes,
		}
		if total > 0 {
			r.Share = float64(a.Packets) / float64(total)
		}
		rows = append(rows, r)
	}
	return rows
}

// AdminHandler returns the admin HTTP API: GET /healthz, GET /metrics
// (Prometheus text: the server's metrics and the process's), GET
// /api/v1/analyzers, and with withPprof the net/http/pprof handlers under
// /debug/pprof/.
func (s *Server) AdminHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.mset.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /api/v1/analyzers", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.analyzerRows())
	})
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
