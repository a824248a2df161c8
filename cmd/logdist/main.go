// Command logdist is the logs distributor: it accepts framed log packets
// from agents and spreads them over analyzers by weight. See README.md and
// docs/OPERATIONS.md. "logdist ctl ..." speaks to a running logdist's
// admin API (ctl.go); "logdist auth hash" hashes agent tokens (auth.go);
// "logdist spool verify|dump|stats" reads a spool directory, "logdist spool
// keygen" makes a key for --spool-key-file (spool.go); "logdist dict
// train" trains a zstd dictionary for --dict (dict.go).
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/pflag"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/internal/agentauth"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/internal/redact"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tracing"
	"github.com/logdist/logdist/internal/version"
	"github.com/logdist/logdist/proxy"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage(fs *pflag.FlagSet) {
	fmt.Fprintf(os.Stderr, `Usage: logdist [flags]
       logdist ctl [flags] COMMAND ...   (logdist ctl --help)
       logdist auth hash [--new | TOKEN] (logdist auth --help)
       logdist spool verify|dump|stats DIR, logdist spool keygen [ID] (logdist spool --help)
       logdist dict train --in FILE --out DICT   (logdist dict --help)

logdist accepts framed log packets from agents on --listen and forwards each packet
to one of the --analyzer backends, in proportion to their weights.

Example:
  logdist --analyzer name=a1,addr=127.0.0.1:7501,weight=0.4 \
          --analyzer name=a2,addr=127.0.0.1:7502,weight=0.6
  logdist --config /etc/logdist/logdist.yaml   (keys are the flags' names)

Signals: SIGTERM and SIGINT drain and stop; SIGHUP reloads the config file.

Flags:
`)
	fs.SetOutput(os.Stderr)
	fs.PrintDefaults()
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "auth" {
		return runAuth(args[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "spool" {
		return runSpool(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "dict" {
		return runDict(args[1:], os.Stdout, os.Stderr)
	}
	fail := failer(nil, false) // plain text until the log is set up
	spec, cmd, err := config.Load(args, usage)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return fail("%v", err)
	}
	if cmd.Version {
		fmt.Println(version.Get().String("logdist"))
		return 0
	}
	// The log first: with --log-format json, everything logdist says
	// from here on is a JSON record, its errors included.
	levels := cli.NewLevels(cli.LevelSpec{Default: slog.LevelInfo})
	if ls, err := cli.ParseLevels(spec.LogLevel); err == nil {
		levels.Set(ls) // a bad one is reported by Check, below
	}
	log, err := cli.NewLoggerLevels(os.Stderr, spec.LogFormat, levels)
	if err != nil {
		return fail("%v", err)
	}
	fail = failer(log, cli.IsJSON(spec.LogFormat))
	if err := spec.Check(); err != nil {
		return fail("%v", err)
	}
	if cmd.CheckConfig {
		fmt.Printf("# logdist --check-config %s: valid. The effective settings (file, then flags):\n%s", cmd.File, spec.YAML())
		return 0
	}
	// Signals are taken from here on: a SIGHUP sent while logdist starts
	// (a reload racing the start) must not kill it, as SIGHUP's default
	// action would; it is handled once logdist runs.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	// The admin address is one only a restart changes: the declared one
	// is the one that runs. Taking it first makes a busy port the only
	// line a failed start prints.
	var adminLn net.Listener
	if spec.Admin != "" {
		if adminLn, err = net.Listen("tcp", spec.Admin); err != nil {
			return fail("cannot listen on admin address %s: %v", spec.Admin, err)
		}
		defer adminLn.Close()
	}
	ctl, err := control.Open(control.Options{DataDir: spec.DataDir, AuditLog: spec.AuditLog, Args: args, Log: log})
	if err != nil {
		return fail("%v", err)
	}
	defer ctl.Close()
	var changed <-chan string
	if cmd.WatchConfig {
		files := []string{cmd.File, spec.AuthFile}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		changed = watchFiles(ctx, files, configWatchPeriod, log)
	}
	return serve(ctl, spec, adminLn, sig, changed, levels, log, fail)
}

// configWatchPeriod is how often --watch-config reads the files.
const configWatchPeriod = 5 * time.Second

// watchFiles reads files (the empty names skipped) every period and sends
// the name of one whose content changed (a ConfigMap update swaps a
// symlink: the modification time is not enough). A file that cannot be
// read is logged once and watched on.
func watchFiles(ctx context.Context, files []string, period time.Duration, log *slog.Logger) <-chan string {
	out := make(chan string, 1)
	sums := map[string][sha256.Size]byte{}
	failed := map[string]bool{}
	read := func(f string) ([sha256.Size]byte, bool) {
		b, err := os.ReadFile(f)
		if err != nil {
			if !failed[f] {
				log.Warn("cannot read a watched file; the running configuration stays", "file", f, "err", err)
			}
			failed[f] = true
			return [sha256.Size]byte{}, false
		}
		failed[f] = false
		return sha256.Sum256(b), true
	}
	for _, f := range files {
		if f != "" {
			sums[f], _ = read(f)
		}
	}
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for f, old := range sums {
				sum, ok := read(f)
				if !ok || sum == old {
					continue
				}
				sums[f] = sum
				select {
				case out <- f:
				default: // a reload is pending already: it reads every file
				}
			}
		}
	}()
	return out
}

// failer returns the function that writes logdist's last word before it
// exits with status 2: a line of text, or a JSON record when the log is
// JSON.
func failer(log *slog.Logger, jsonLog bool) func(format string, a ...any) int {
	return func(format string, a ...any) int {
		cli.Fail(os.Stderr, log, jsonLog, "logdist: "+fmt.Sprintf(format, a...))
		return 2
	}
}

// serve starts logdist from the configuration the controller decides on
// and runs it until SIGTERM or SIGINT; SIGHUP reloads.
func serve(ctl *control.Controller, declared config.Spec, adminLn net.Listener, sig <-chan os.Signal, changed <-chan string, levels *cli.Levels, log *slog.Logger, fail func(string, ...any) int) int {
	v, err := ctl.Start(declared)
	if err != nil {
		return fail("%v", err)
	}
	spec := v.Spec
	base := proxy.DefaultConfig()
	// Each subsystem's logger names its component, for --log-level
	// proxy=debug and the like: TLS, auth and admin here; the proxy,
	// syslog, balancer and control name their own.
	base.Logger, base.Balancer.Logger = log, log
	agentTLS, upTLS, err := spec.TLS(log.With("component", "tls"))
	if err != nil {
		return fail("%v", err)
	}
	tt := proxy.TLSTransport{ClientConfig: upTLS.Get}
	if agentTLS != nil {
		tt.ServerConfig = agentTLS.Get
		base.AgentTransport = tt
	}
	base.UpstreamTransport = tt
	base.Metrics = metrics.NewSet()
	var auditRefusal func(agentauth.Refusal)
	if spec.AuditLog != "" { // without an audit file the log has them already
		auditRefusal = func(r agentauth.Refusal) {
			ctl.Record(control.Entry{Time: r.Time.UTC(), Remote: r.Remote, Action: "agent handshake as " + strconv.Quote(r.AgentID),
				Result: "refused", Error: r.Reason + ": " + r.Detail})
		}
	}
	guard, err := spec.Guard(log.With("component", "auth"), base.Metrics, auditRefusal)
	if err != nil {
		return fail("%v", err)
	}
	if guard != nil {
		base.Auth, base.AgentLimits = guard.Auth, guard
		log.Info("agent authentication", "auth", guard.Mode().String(), "auth_file", spec.AuthFile, "identities", guard.Policy().Len())
	}
	if base.Dicts, err = spec.Dicts(); err != nil {
		return fail("%v", err)
	}
	if len(base.Dicts) > 0 {
		log.Info("zstd dictionaries", "dict", spec.Dict, "ids", base.Dicts.IDs())
	}
	if spec.Redact != "" {
		if base.Redactor, err = redact.Load(spec.Redact, base.Metrics); err != nil {
			return fail("%v", err)
		}
		log.Info("redacting messages", "redact", spec.Redact, "rules", base.Redactor.Rules())
	}
	tracer, err := tracing.New(tracing.Config{Endpoint: spec.OTLPEndpoint, SampleRatio: spec.TraceSample,
		Service: "logdist", Instance: base.ServerID, Version: version.Get().Version})
	if err != nil {
		return fail("%v", err)
	}
	if tracer != nil {
		base.Tracer = tracer
		log.Info("tracing packets", "otlp_endpoint", spec.OTLPEndpoint, "trace_sample", spec.TraceSample)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := tracer.Shutdown(ctx); err != nil {
				log.Warn("could not export the last spans", "err", err)
			}
			cancel()
		}()
	}
	cfg, err := spec.Proxy(base)
	if err != nil {
		return fail("configuration version %d: %v", v.Version, err)
	}
	access := admin.NewAccess(nil, nil)
	tlsConfigs := []*tlsconf.Config{upTLS}
	if agentTLS != nil {
		tlsConfigs = append(tlsConfigs, agentTLS)
	}
	var srv *proxy.Server // set below; a reload before it exists revokes nothing
	outside := func(s config.Spec) error {
		// A reload (SIGHUP) also rereads the certificates that changed;
		// a broken one is logged and the ones in force stay.
		for _, c := range tlsConfigs {
			_, _ = c.ReloadChanged()
		}
		if guard != nil {
			revoked, err := guard.Reload()
			if err != nil {
				log.Error("auth file reload failed; the identities in force stay", "err", err)
			}
			if len(revoked) > 0 && srv != nil {
				log.Info("auth file reload revokes identities; their connections are told to go", "identities", revoked)
				srv.Revoke(revoked)
			}
		}
		if rd := base.Redactor; rd != nil {
			if err := rd.Reload(); err != nil {
				log.Error("redaction rules reload failed; the rules in force stay", "err", err)
			}
		}
		return applyOutside(s, levels, access)
	}
	if err := outside(spec); err != nil {
		return fail("%v", err)
	}
	adminLog := log.With("component", "admin")
	if len(spec.AdminAllow) == 0 && len(spec.Allow) > 0 && spec.Admin != "" {
		allow, _ := config.ParseAllow(spec.Allow)
		local := slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr("127.0.0.1")) })
		adminLog.Info("the admin API takes --allow, --admin-allow being empty", "allow", spec.Allow)
		if !local {
			adminLog.Warn("--allow leaves out 127.0.0.1: logdist ctl on this host will be refused; add it, or set --admin-allow")
		}
	}
	srv, err = proxy.New(cfg)
	if err != nil {
		return fail("%v", err)
	}
	if v.Version != 1 {
		if err := srv.ReconfigureAs(cfg, v.Version, "start"); err != nil {
			return fail("%v", err)
		}
	}
	ctl.Attach(srv, base, outside)
	registerTLSMetrics(srv, agentTLS, upTLS)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	for _, c := range tlsConfigs {
		go c.Watch(watchCtx, tlsWatchPeriod)
	}
	if guard != nil {
		go guard.Run(watchCtx)
	}
	if err := srv.Start(); err != nil {
		fail("%v", err)
		return 1
	}
	var hs *http.Server
	if adminLn != nil {
		hs = admin.Server(admin.New(admin.Config{Server: srv, Control: ctl, Access: access, Pprof: spec.Pprof}), spec.Pprof)
		go func() {
			if err := hs.Serve(admin.LimitListener(adminLn, admin.MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				adminLog.Error("admin server failed", "addr", spec.Admin, "err", err)
			}
		}()
		adminLog.Info("admin API listening", "addr", adminLn.Addr().String(), "status_page", "http://"+adminLn.Addr().String()+"/")
	}
	// Machine-readable line for scripts and tests that start logdist on
	// port 0: "logdist ready listen=... version=N", or a JSON record.
	cli.WriteReady(os.Stderr, log, cli.IsJSON(spec.LogFormat), "logdist",
		slog.String("listen", addrString(srv.Addr())), slog.String("tls", addrString(srv.TransportAddr())),
		slog.String("admin", addrOf(adminLn)), slog.String("syslog", addrString(srv.SyslogAddr())),
		slog.String("syslog_tcp", addrString(srv.SyslogTCPAddr())), slog.String("syslog_tls", addrString(srv.SyslogTLSAddr())),
		slog.Uint64("version", v.Version))

	reload := func(by string) {
		res, err := ctl.Reload(control.Actor{Remote: by})
		switch {
		case err != nil:
			log.Error("reload refused; the running configuration stays", "by", by, "version", res.Version.Version, "err", err)
		case res.Changed:
			log.Info("reload applied", "by", by, "version", res.Version.Version, "changes", res.Version.Changes)
		}
	}
	for running := true; running; {
		select {
		case f := <-changed:
			log.Info("a watched file changed; reloading", "file", f)
			reload("watch")
		case s := <-sig:
			if s == syscall.SIGHUP {
				reload("signal")
				continue
			}
			log.Info("signal received; draining", "signal", s.String(), "drain_timeout", cfg.DrainTimeout)
			running = false
		}
	}
	code := 0
	if err := srv.Stop(context.Background()); err != nil {
		log.Error("stop failed", "err", err)
		code = 1
	}
	if hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(ctx)
		cancel()
	}
	return code
}

// applyOutside takes the settings that live outside the proxy: the log
// levels, and the admin API's tokens and allow list (the token file is
// read again). Nothing changes when one of them is wrong.
func applyOutside(s config.Spec, levels *cli.Levels, access *admin.Access) error {
	lvl, err := config.ParseLogLevel(s.LogLevel)
	if err != nil {
		return err
	}
	// --admin-allow, or else --allow: one list can guard every listener.
	list := s.AdminAllow
	if len(list) == 0 {
		list = s.Allow
	}
	allow, err := config.ParseAllow(list)
	if err != nil {
		return fmt.Errorf("admin-allow: %v", err)
	}
	var tokens []config.Token
	if s.AdminTokenFile != "" {
		if tokens, err = config.ReadTokens(s.AdminTokenFile); err != nil {
			return err
		}
	}
	levels.Set(lvl)
	access.Set(tokens, allow)
	return nil
}

// tlsWatchPeriod is how often the TLS files are checked for changes.
const tlsWatchPeriod = 5 * time.Second

// registerTLSMetrics exports the TLS reloads and the certificates' expiry.
func registerTLSMetrics(srv *proxy.Server, agents, upstream *tlsconf.Config) {
	srv.Metrics().RegisterMetricsWriter(func(w io.Writer) {
		tlsconf.WriteMetrics(w, map[string]*tlsconf.Config{"agents": agents, "upstream": upstream})
	})
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
