// Command analyzerd is logdist's reference analyzer: it receives framed log
// packets (from logdist or directly from agents), counts them, detects
// duplicates, optionally writes every message as a JSON line, and serves
// its counters on an admin HTTP address. See package analyzerd.
//
// Once listening it writes one machine-readable line to stderr, for scripts
// and tests that start it on port 0:
//
//	analyzerd ready name=<name> listen=<host:port> admin=<host:port or empty>
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
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code (0 after a
// graceful shutdown on SIGINT/SIGTERM, 2 for bad flags or addresses).
func run(args []string, stdout, stderr io.Writer) int {
	cfg, log, tc, err := parseFlags(args, stdout, stderr)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fail(stderr, err)
		return 2
	}
	a, err := analyzerd.New(cfg)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if tc != nil {
		go tc.Watch(ctx, 5*time.Second) // new certificates reach new connections
	}
	if err := a.Start(); err != nil {
		fmt.Fprintf(stderr, "analyzerd: cannot start: %v\n", err)
		return 2
	}
	admin := ""
	if addr := a.AdminAddr(); addr != nil {
		admin = addr.String()
	}
	fmt.Fprintf(stderr, "analyzerd ready name=%s listen=%s admin=%s\n", cfg.Name, a.Addr(), admin)
	<-ctx.Done()
	stop() // a second signal kills the process without waiting for the drain
	log.Info("signal received; draining", "drain_timeout", cfg.Server.DrainTimeout)
	if err := a.Close(); err != nil {
		log.Error("shutdown failed", "err", err)
		return 1
	}
	return 0
}

// fail writes err as the one line a user sees.
func fail(stderr io.Writer, err error) {
	msg := err.Error()
	if !strings.HasPrefix(msg, "analyzerd") {
		msg = "analyzerd: " + msg
	}
	fmt.Fprintln(stderr, msg)
}

func parseFlags(args []string, stdout, stderr io.Writer) (analyzerd.Config, *slog.Logger, *tlsconf.Config, error) {
	cfg := analyzerd.DefaultConfig()
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
	)
	fs.StringVar(&cfg.Server.Addr, "listen", cfg.Server.Addr, "TCP address to receive packets on (port 0 picks a free port; see the \"analyzerd ready\" line on stderr)")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "analyzer name, reported in /stats and logs")
	fs.StringVar(&cfg.Admin, "admin", cfg.Admin, "HTTP address for GET /stats, /metrics and /healthz (default \"\": off)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "write received messages as JSON lines to this file (appended), or - for stdout (default \"\": off)")
	fs.DurationVar(&cfg.Delay, "delay", cfg.Delay, "processing delay per packet before its ACK, to simulate a slow analyzer (default 0s: none)")
	fs.Int64Var(&window, "window", window, "most packets a client may have unacknowledged (the granted window)")
	fs.Int64Var(&maxFrame, "max-frame", maxFrame, "largest DATA payload accepted, in bytes")
	fs.Uint64Var(&cfg.DedupWindow, "dedup-window", cfg.DedupWindow, "packet ids remembered per agent for duplicate detection (memory: this/8 bytes per agent)")
	fs.IntVar(&cfg.DedupAgents, "dedup-agents", cfg.DedupAgents, "agents tracked for duplicate detection; the least recently seen is forgotten beyond it")
	fs.DurationVar(&cfg.Server.IdleTimeout, "idle-timeout", cfg.Server.IdleTimeout, "close connections on which no frame arrived for this long")
	fs.DurationVar(&cfg.Server.HandshakeTimeout, "handshake-timeout", cfg.Server.HandshakeTimeout, "close connections that send no HELLO within this time")
	fs.DurationVar(&cfg.Server.DrainTimeout, "drain-timeout", cfg.Server.DrainTimeout, "on SIGINT/SIGTERM, how long clients get after GOAWAY before their connections are closed")
	fs.StringVar(&logLevel, "log-level", logLevel, "log level: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", logFormat, "log format: text or json")
	tlsFlags := cli.AddTLSServer(fs)
	showVersion := cli.VersionFlag(fs, "analyzerd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return cfg, nil, nil, err // pflag printed the usage
		}
		return cfg, nil, nil, fmt.Errorf("%w (see --help)", err)
	}
	if showVersion(stdout) {
		return cfg, nil, nil, pflag.ErrHelp
	}
	if fs.NArg() > 0 {
		return cfg, nil, nil, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if window < 1 || window > 1<<32-1 {
		return cfg, nil, nil, fmt.Errorf("--window %d: must be in [1, 4294967295]", window)
	}
	if maxFrame < frame.MaxControlPayload || maxFrame > frame.HardMaxFrame {
		return cfg, nil, nil, fmt.Errorf("--max-frame %d: must be in [%d, %d]", maxFrame, frame.MaxControlPayload, frame.HardMaxFrame)
	}
	cfg.Server.Window = uint32(window)
	cfg.Server.Limits.MaxFrame = uint32(maxFrame)
	// The decompressed bound must hold a full frame.
	cfg.Server.Limits.MaxRaw = max(cfg.Server.Limits.MaxRaw, cfg.Server.Limits.MaxFrame)

	log, err := cli.NewLogger(stderr, logFormat, logLevel)
	if err != nil {
		return cfg, nil, nil, err
	}
	cfg.Logger = log
	cfg.Stdout = stdout
	tc, err := tlsFlags.Config(log)
	if err != nil {
		return cfg, nil, nil, err
	}
	if tc != nil {
		cfg.Server.TLS = tc.Get()
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, err
	}
	return cfg, log, tc, nil
}
