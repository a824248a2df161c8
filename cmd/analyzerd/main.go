// Command analyzerd is logdist's reference analyzer: it receives framed log
// packets (from logdist or directly from agents), counts them, detects
// duplicates, optionally writes every message as a JSON line, and serves
// its counters on an admin HTTP address. See package analyzerd.
//
// Once listening it writes one machine-readable line to stderr, for scripts
// and tests that start it on port 0:
//
//	analyzerd ready name=<name> listen=<host:port> admin=<host:port or empty>
//
// or, with --log-format json, a record with msg "analyzerd ready" and
// those fields as attributes (cli.ParseReady reads either).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tracing"
	"github.com/logdist/logdist/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code (0 after a
// graceful shutdown on SIGINT/SIGTERM, 2 for bad flags or addresses).
func run(args []string, stdout, stderr io.Writer) int {
	cfg, lf, tc, err := parseFlags(args, stdout, stderr)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		lf.fail(stderr, err)
		return 2
	}
	log := lf.log
	a, err := analyzerd.New(cfg)
	if err != nil {
		lf.fail(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if tc != nil {
		go tc.Watch(ctx, 5*time.Second) // new certificates reach new connections
	}
	if err := a.Start(); err != nil {
		lf.fail(stderr, fmt.Errorf("cannot start: %w", err))
		return 2
	}
	admin := ""
	if addr := a.AdminAddr(); addr != nil {
		admin = addr.String()
	}
	cli.WriteReady(stderr, log, lf.json, "analyzerd",
		slog.String("name", cfg.Name), slog.String("listen", a.Addr().String()), slog.String("admin", admin))
	<-ctx.Done()
	stop() // a second signal kills the process without waiting for the drain
	log.Info("signal received; draining", "drain_timeout", cfg.Server.DrainTimeout)
	code := 0
	if err := a.Close(); err != nil {
		log.Error("shutdown failed", "err", err)
		code = 1
	}
	tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cfg.Tracer.Shutdown(tctx); err != nil {
		log.Warn("could not export the last spans", "err", err)
	}
	return code
}

// logging is the log, once the flags say how to write it.
type logging struct {
	log  *slog.Logger // nil until built
	json bool
}

// fail writes err as the one line a user sees: text, or a JSON record
// once the log is JSON.
func (l logging) fail(stderr io.Writer, err error) {
	msg := err.Error()
	if !strings.HasPrefix(msg, "analyzerd") {
		msg = "analyzerd: " + msg
	}
	cli.Fail(stderr, l.log, l.json, msg)
}

// logComponents are the components --log-level may name.
var logComponents = []string{"analyzerd", "frame/server", "tls"}

func parseFlags(args []string, stdout, stderr io.Writer) (cfg analyzerd.Config, lf logging, tc *tlsconf.Config, err error) {
	cfg = analyzerd.DefaultConfig()
	fs := pflag.NewFlagSet("analyzerd", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(stdout, `Usage: analyzerd [flags]

analyzerd receives framed log packets on --listen, counts them, detects
duplicates by (agent id, packet id), optionally writes every message as a JSON
line (--out), and acknowledges each packet once it is processed.

Flags:
`)
		fs.PrintDefaults()
	}
	var (
		maxFrame  = int64(cfg.Server.Limits.MaxFrame)
		window    = int64(cfg.Server.Window)
		logLevel  = "info"
		logFormat = "text"
		otlp      string
		dicts     []string
	)
	fs.StringVar(&cfg.Server.Addr, "listen", cfg.Server.Addr, "TCP address to receive packets on (port 0 picks a free port; see the \"analyzerd ready\" line on stderr)")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "analyzer name, reported in /stats and logs")
	fs.StringVar(&cfg.Admin, "admin", cfg.Admin, "HTTP address for GET /stats, /metrics and /healthz (default \"\": off)")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve net/http/pprof under /debug/pprof/ on --admin (default false)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "write received messages as JSON lines to this file (appended), or - for stdout (default \"\": off)")
	fs.DurationVar(&cfg.Delay, "delay", cfg.Delay, "processing delay per packet before its ACK, to simulate a slow analyzer (default 0s: none)")
	fs.IntVar(&cfg.Server.Concurrency, "concurrency", cfg.Server.Concurrency, "packets handled at once per connection (1 to 1024): with more than 1, a slow --delay (or slow output) no longer caps a connection at 1/delay packets a second; packets then complete out of order, acknowledged once all before them are")
	fs.Int64Var(&window, "window", window, "most packets a client may have unacknowledged (the granted window)")
	fs.Int64Var(&maxFrame, "max-frame", maxFrame, "largest DATA payload accepted, in bytes")
	fs.StringArrayVar(&dicts, "dict", nil, "zstd dictionary file (logdist dict train) packets may be compressed with; repeat for several (at most 16: the old and the new while rotating); clients that offer the dict capability are told their ids. A packet naming a dictionary not given is rejected with unknown_dictionary")
	fs.Uint64Var(&cfg.DedupWindow, "dedup-window", cfg.DedupWindow, "packet ids remembered per agent for duplicate detection (memory: this/8 bytes per agent)")
	fs.IntVar(&cfg.DedupAgents, "dedup-agents", cfg.DedupAgents, "agents tracked for duplicate detection; the least recently seen is forgotten beyond it")
	fs.DurationVar(&cfg.Server.IdleTimeout, "idle-timeout", cfg.Server.IdleTimeout, "close connections on which no frame arrived for this long")
	fs.DurationVar(&cfg.Server.HandshakeTimeout, "handshake-timeout", cfg.Server.HandshakeTimeout, "close connections that send no HELLO within this time")
	fs.DurationVar(&cfg.Server.DrainTimeout, "drain-timeout", cfg.Server.DrainTimeout, "on SIGINT/SIGTERM, how long clients get after GOAWAY before their connections are closed")
	fs.StringVar(&logLevel, "log-level", logLevel, cli.LevelHelp("frame/server=debug,warn", logComponents))
	fs.StringVar(&logFormat, "log-format", logFormat, "log format: text or json")
	fs.StringVar(&otlp, "otlp-endpoint", "", "OpenTelemetry collector (OTLP/HTTP, as http://HOST:4318) to send a span to for every packet that arrives with a sampled trace context; empty: off")
	tlsFlags := cli.AddTLSServer(fs)
	showVersion := cli.VersionFlag(fs, "analyzerd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return cfg, lf, nil, err // pflag printed the usage
		}
		return cfg, lf, nil, fmt.Errorf("%w (see --help)", err)
	}
	if showVersion(stdout) {
		return cfg, lf, nil, pflag.ErrHelp
	}
	if fs.NArg() > 0 {
		return cfg, lf, nil, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if cfg.Pprof && cfg.Admin == "" {
		return cfg, lf, nil, errors.New("--pprof needs --admin (pprof is served on the admin address)")
	}
	if cfg.Tracer, err = tracing.New(tracing.Config{Endpoint: otlp, Service: "analyzerd", Instance: cfg.Name, Version: version.Get().Version}); err != nil {
		return cfg, lf, nil, err
	}
	if window < 1 || window > 1<<32-1 {
		return cfg, lf, nil, fmt.Errorf("--window %d: must be in [1, 4294967295]", window)
	}
	if maxFrame < frame.MaxControlPayload || maxFrame > frame.HardMaxFrame {
		return cfg, lf, nil, fmt.Errorf("--max-frame %d: must be in [%d, %d]", maxFrame, frame.MaxControlPayload, frame.HardMaxFrame)
	}
	if c := cfg.Server.Concurrency; c < 1 || c > 1024 {
		return cfg, lf, nil, fmt.Errorf("--concurrency %d: must be in [1, 1024]", c)
	}
	if cfg.Server.Dicts, err = frame.LoadDicts(dicts); err != nil {
		return cfg, lf, nil, fmt.Errorf("--dict: %w", err)
	}
	cfg.Server.Window = uint32(window)
	cfg.Server.Limits.MaxFrame = uint32(maxFrame)
	// The decompressed bound must hold a full frame.
	cfg.Server.Limits.MaxRaw = max(cfg.Server.Limits.MaxRaw, cfg.Server.Limits.MaxFrame)

	levels, err := cli.ParseLevels(logLevel)
	if err == nil {
		err = levels.Check(logComponents)
	}
	if err != nil {
		return cfg, lf, nil, err
	}
	log, err := cli.NewLoggerLevels(stderr, logFormat, cli.NewLevels(levels))
	if err != nil {
		return cfg, lf, nil, err
	}
	// From here on even the errors are in the log's format.
	lf = logging{log: log, json: cli.IsJSON(logFormat)}
	cfg.Logger = log
	cfg.Stdout = stdout
	if tc, err = tlsFlags.Config(log.With("component", "tls")); err != nil {
		return cfg, lf, nil, err
	}
	if tc != nil {
		cfg.Server.TLS = tc.Get()
	}
	if err := cfg.Validate(); err != nil {
		return cfg, lf, nil, err
	}
	return cfg, lf, tc, nil
}
