// Package controltest builds a control.Controller over a proxy.Server that
// is built but not started, for tests of what drives the controller (the
// admin API, logdist ctl): changes apply to the server's configuration
// and balancer, and no socket opens.
package controltest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/proxy"
)

// Spec returns a configuration with analyzers a1 and a2 (weight 1 each)
// at addresses nothing listens on, no syslog, listening on port 0.
func Spec() config.Spec {
	s := config.Default()
	s.Listen, s.SyslogUDP, s.Admin = "127.0.0.1:0", "", ""
	s.Analyzers = []config.Analyzer{{Name: "a1", Addr: "127.0.0.1:1", Weight: 1}, {Name: "a2", Addr: "127.0.0.1:2", Weight: 1}}
	return s
}

// New opens a controller with o (its Log defaults to a quiet one), starts
// it from spec, builds the server from the version it decides on, and
// attaches them. Both are closed when the test ends.
func New(t testing.TB, spec config.Spec, o control.Options) (*control.Controller, *proxy.Server) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.Log == nil {
		o.Log = quiet
	}
	ctl, err := control.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	v, err := ctl.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	base := proxy.DefaultConfig()
	base.Logger, base.Balancer.Logger = quiet, quiet
	cfg, err := v.Spec.Proxy(base)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ReconfigureAs(cfg, v.Version, "start"); err != nil {
		t.Fatal(err)
	}
	ctl.Attach(srv, base, nil)
	return ctl, srv
}
