// Package admin is logdist's admin HTTP API, served over a running
// proxy.Server (its status, package proxy/status) and, for changes, the
// run-time controller (package internal/control): liveness and readiness,
// Prometheus metrics, the analyzers, the configuration and its versions,
// the status page, and optionally pprof.
package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/logdist/logdist/internal/agentauth"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/internal/promexp"
	"github.com/logdist/logdist/internal/redact"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/proxy"
)

// Config configures the admin handler.
type Config struct {
	// Server is the distributor the API reports on.
	Server *proxy.Server
	// Control takes the changes; nil serves reads only.
	Control *control.Controller
	// Access decides who may do what (see Access); nil lets anyone do
	// anything, for a caller that guards the handler itself.
	Access *Access
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
}

// New returns the admin API:
//
//	GET    /                                the status page (HTML)
//	GET    /healthz                         liveness: 200 "ok" until a graceful shutdown begins
//	GET    /readyz                          readiness: 200 only when an analyzer can take packets and logdist is not draining
//	GET    /metrics                         Prometheus text: the server's metrics and the process's
//	GET    /api/v1/status                   the whole status (status.Status)
//	GET    /api/v1/analyzers                the analyzers (JSON array of status.Analyzer)
//	POST   /api/v1/analyzers                add one: {"name", "addr", "weight", "state"}
//	PATCH  /api/v1/analyzers/{name}         change it: {"weight", "ramp", "state"}
//	DELETE /api/v1/analyzers/{name}         remove it (it drains first)
//	GET    /api/v1/queue                    the waiting queue's depth and oldest age
//	POST   /api/v1/queue/flush              send what waits now
//	GET    /api/v1/config                   the running configuration and its version
//	GET    /api/v1/config/versions          the history (without the configurations)
//	GET    /api/v1/config/versions/{n}      one version, whole
//	POST   /api/v1/config/rollback          {"version": n}: make version n's configuration run again
//	POST   /api/v1/config/reload            read the config file again (as SIGHUP)
//	GET    /api/v1/dead-letters             the dead letters (?after=SEQ&limit=N; deadletters.go)
//	POST   /api/v1/dead-letters/replay      send them to the analyzers again: [{"seqs": [...]}], none for all
//	DELETE /api/v1/dead-letters             remove them for good: [{"seqs": [...]}] or ?seq=N..., none for all
//	GET    /debug/pprof/...                 with Config.Pprof
//
// Every write answers the resulting configuration version; a refused one
// answers 4xx with {"error": "one line"} and changes nothing.
func New(cfg Config) http.Handler {
	h := &handler{cfg: cfg, s: cfg.Server, ctl: cfg.Control}
	mux := http.NewServeMux()
	h.route(mux, "GET /healthz", public, h.healthz)
	h.route(mux, "GET /readyz", public, h.readyz)
	h.route(mux, "GET /metrics", public, h.metrics)
	h.route(mux, "GET /{$}", read, h.page)
	h.route(mux, "GET /api/v1/status", read, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, h.s.Status()) })
	h.route(mux, "GET /api/v1/analyzers", read, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, h.s.Status().Analyzers) })
	h.route(mux, "GET /api/v1/queue", read, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, h.s.Status().Queue) })
	h.route(mux, "GET /api/v1/dead-letters", read, h.deadLetters)
	if h.ctl != nil {
		h.route(mux, "POST /api/v1/analyzers", write, h.addAnalyzer)
		h.route(mux, "PATCH /api/v1/analyzers/{name}", write, h.patchAnalyzer)
		h.route(mux, "DELETE /api/v1/analyzers/{name}", write, h.removeAnalyzer)
		h.route(mux, "POST /api/v1/queue/flush", write, h.flushQueue)
		h.route(mux, "GET /api/v1/config", read, h.config)
		h.route(mux, "GET /api/v1/config/versions", read, h.versions)
		h.route(mux, "GET /api/v1/config/versions/{n}", read, h.version)
		h.route(mux, "POST /api/v1/config/rollback", write, h.rollback)
		h.route(mux, "POST /api/v1/config/reload", write, h.reload)
		h.route(mux, "POST /api/v1/dead-letters/replay", write, h.replayDeadLetters)
		h.route(mux, "DELETE /api/v1/dead-letters", write, h.deleteDeadLetters)
	}
	if cfg.Pprof {
		h.route(mux, "GET /debug/pprof/", read, pprof.Index)
		h.route(mux, "GET /debug/pprof/cmdline", read, pprof.Cmdline)
		h.route(mux, "GET /debug/pprof/profile", read, pprof.Profile)
		h.route(mux, "GET /debug/pprof/symbol", read, pprof.Symbol)
		h.route(mux, "GET /debug/pprof/trace", read, pprof.Trace)
	}
	return mux
}

type handler struct {
	cfg Config
	s   *proxy.Server
	ctl *control.Controller
}

// route registers fn behind the access check for need. A refused write is
// recorded in the audit log.
func (h *handler) route(mux *http.ServeMux, pattern string, need level, fn http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if a := h.cfg.Access; a != nil {
			identity, status, why, outside := a.check(r, need)
			if status != 0 {
				// A refused write is audited under its route's pattern
				// (not its path, which the client chose, of any length),
				// unless it came from outside the allow list: those are
				// only counted.
				if need == write && h.ctl != nil {
					action := pattern
					if n := r.PathValue("name"); n != "" && proxy.ValidName(n) == nil {
						action += " " + n
					}
					h.ctl.Refused(control.Actor{Remote: r.RemoteAddr, Identity: identity}, action, status, why, !outside)
				}
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="logdist"`)
				}
				writeError(w, status, why)
				return
			}
			r = r.WithContext(withIdentity(r.Context(), identity))
		}
		fn(w, r)
	})
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	if h.s.Draining() {
		http.Error(w, "draining\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	st := h.s.Status()
	switch {
	case st.Draining:
		http.Error(w, "draining\n", http.StatusServiceUnavailable)
	case !st.Ready:
		http.Error(w, "no analyzer can take packets (all down, drained or at weight 0)\n", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ready\n"))
	}
}

func (h *handler) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_ = promexp.Write(w, catalog, h.s.Metrics().WritePrometheus, promexp.WriteProcess)
}

// catalog documents every family GET /metrics serves.
var catalog = MetricCatalog()

// MetricCatalog returns the families logdist's GET /metrics serves, with
// their HELP texts (docs/OBSERVABILITY.md is checked against it).
func MetricCatalog() promexp.Catalog {
	return promexp.NewCatalog(proxy.MetricFamilies, control.MetricFamilies, agentauth.MetricFamilies,
		redact.MetricFamilies, tlsconf.MetricFamilies, promexp.Runtime)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers {"error": why}: one line.
func writeError(w http.ResponseWriter, status int, why string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": why})
}

// Server returns the http.Server to serve the admin API on: bounded
// headers (16 KiB), header and body read timeouts, a write timeout (longer
// with pprof, whose CPU profile runs for its seconds), and a short idle
// timeout. Serve it on a LimitListener.
func Server(h http.Handler, pprof bool) *http.Server {
	write := 30 * time.Second
	if pprof {
		write = 5 * time.Minute
	}
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      write,
		IdleTimeout:       30 * time.Second,
	}
}

// MaxConns bounds the admin connections open at once (LimitListener).
const MaxConns = 64

// LimitListener accepts at most n connections at once from ln: the one
// after waits in the kernel's backlog until one closes. The admin port
// shares the process's file descriptors with the agents and analyzers;
// a client holding connections open must not take them.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n)}
}

type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
