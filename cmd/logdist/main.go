// Command logdist is the logs distributor: it accepts framed log packets
// from agents and spreads them over analyzers by weight. See README.md and
// docs/OPERATIONS.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/proxy"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, adminAddr, pprofOn, log, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "logdist: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "logdist: %v\n", err)
		return 2
	}
	var adminLn net.Listener
	if adminAddr != "" {
		adminLn, err = net.Listen("tcp", adminAddr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "logdist: cannot listen on admin address %s: %v\n", adminAddr, err)
			return 2
		}
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "logdist: %v\n", err)
		if adminLn != nil {
			adminLn.Close()
		}
		return 2
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "logdist: %v\n", err)
		if adminLn != nil {
			adminLn.Close()
		}
		return 1
	}
	var hs *http.Server
	if adminLn != nil {
		hs = &http.Server{Handler: admin.New(admin.Config{Server: srv, Pprof: pprofOn}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server failed", "addr", adminAddr, "err", err)
			}
		}()
		log.Info("admin API listening", "addr", adminLn.Addr().String(), "url", "http://"+adminLn.Addr().String()+"/api/v1/analyzers")
	}
	// Machine-readable line for scripts and tests that start logdist on
	// port 0.
	syslogAddr := ""
	if a := srv.SyslogAddr(); a != nil {
		syslogAddr = a.String()
	}
	syslogTCP := ""
	if a := srv.SyslogTCPAddr(); a != nil {
		syslogTCP = a.String()
	}
	fmt.Fprintf(os.Stderr, "logdist ready listen=%s admin=%s syslog=%s syslog_tcp=%s\n", srv.Addr(), addrOf(adminLn), syslogAddr, syslogTCP)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("signal received; draining", "signal", s.String(), "drain_timeout", cfg.DrainTimeout)
	signal.Stop(sig)
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

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func parseFlags(args []string) (proxy.Config, string, bool, *slog.Logger, error) {
	cfg := proxy.DefaultConfig()
	fs := pflag.NewFlagSet("logdist", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: logdist [flags]\n\nlogdist accepts framed log packets from agents on --listen and forwards each packet\nto one of the --analyzer backends, in proportion to their weights.\n\nExample:\n  logdist --analyzer name=a1,addr=127.0.0.1:7501,weight=0.4 \\\n          --analyzer name=a2,addr=127.0.0.1:7502,weight=0.6\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		analyzers []string
		balance   = "swrr"
		inspect   = "header"
		adminAddr = "127.0.0.1:7480"
		logFormat = "text"
		logLevel  = "info"
		maxFrame  = int(cfg.Limits.MaxFrame)
		maxRaw    = int(cfg.Limits.MaxRaw)
		window    = int(cfg.Window)
		pprofOn   bool
	)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP address agents connect to")
	fs.StringVar(&adminAddr, "admin", adminAddr, "HTTP address of the admin API (/healthz, /metrics, /api/v1/analyzers); empty disables it")
	fs.StringArrayVar(&analyzers, "analyzer", nil, "an analyzer as name=NAME,addr=HOST:PORT,weight=W (repeat the flag for each analyzer); weight defaults to 1 and name to the address; names are 1-64 letters, digits, '.', '_', ':' or '-'; two analyzers may not share an address")
	fs.StringVar(&balance, "balance", balance, "picking strategy: swrr (exact smooth weighted round robin), random (weighted random), hash (sticky by agent id)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "how often each analyzer connection sends PING")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "how long a PONG may take before the heartbeat counts as missed")
	fs.IntVar(&cfg.Balancer.Rise, "rise", cfg.Balancer.Rise, "consecutive successes that bring a down analyzer up")
	fs.IntVar(&cfg.Balancer.Fall, "fall", cfg.Balancer.Fall, "consecutive failures (missed heartbeats, connection errors) that take an analyzer down")
	fs.DurationVar(&cfg.Balancer.SlowStart, "slow-start", cfg.Balancer.SlowStart, "time over which a recovered analyzer's share ramps back to its weight (0 disables)")
	fs.DurationVar(&cfg.Balancer.BreakerBackoff, "breaker-backoff", cfg.Balancer.BreakerBackoff, "first wait before probing an analyzer that went down (doubles on each failed probe)")
	fs.DurationVar(&cfg.Balancer.BreakerMaxBackoff, "breaker-max-backoff", cfg.Balancer.BreakerMaxBackoff, "longest wait between probes of a down analyzer")
	fs.IntVar(&maxFrame, "max-frame", maxFrame, "largest DATA payload accepted from an agent, in bytes")
	fs.IntVar(&maxRaw, "max-raw", maxRaw, "largest decompressed DATA payload, in bytes (zip-bomb bound)")
	fs.IntVar(&window, "window", window, "most packets an agent may have unacknowledged")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", cfg.AckTimeout, "re-dispatch a packet an analyzer has not acknowledged in this long")
	fs.IntVar(&cfg.QueueMaxPackets, "queue-max-packets", cfg.QueueMaxPackets, "packets that may wait when no analyzer can take them; past it agents get BUSY")
	fs.Int64Var(&cfg.QueueMaxBytes, "queue-max-bytes", cfg.QueueMaxBytes, "bytes that may wait when no analyzer can take them; past it agents get BUSY")
	fs.DurationVar(&cfg.BusyRetryAfter, "busy-retry-after", cfg.BusyRetryAfter, "retry-after sent to agents with BUSY")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on SIGTERM/SIGINT, how long to wait for in-flight packets to be acknowledged")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", cfg.HandshakeTimeout, "close agent connections that send no HELLO within this time")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close agent connections silent for this long (or holding a half-sent frame for this long)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "most agent connections at once; past it new ones get ERROR overloaded (0: no bound)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", cfg.MaxConnsPerIP, "most agent connections from one source address (0: no bound)")
	fs.Int64Var(&cfg.MaxPartialBytes, "max-partial-bytes", cfg.MaxPartialBytes, "most bytes all agents together may hold in half-sent frames; the connection that would cross it is closed with ERROR overloaded (0: no bound)")
	fs.DurationVar(&cfg.SackDelay, "sack-delay", cfg.SackDelay, "for agents that take selective ACKs: how long packets an analyzer accepted may wait behind the cumulative ACK point (held by a slower analyzer) before a SACK reports them (0: at once)")
	fs.StringVar(&cfg.SyslogUDP, "syslog-udp", cfg.SyslogUDP, "UDP address for syslog datagrams (RFC 3164/5424); empty disables")
	fs.StringVar(&cfg.SyslogTCP, "syslog-tcp", cfg.SyslogTCP, "TCP address for syslog streams (RFC 6587 octet counting or newline framing); empty disables")
	fs.IntVar(&cfg.SyslogBatchMessages, "syslog-batch-messages", cfg.SyslogBatchMessages, "syslog messages per packet at most")
	fs.IntVar(&cfg.SyslogBatchBytes, "syslog-batch-bytes", cfg.SyslogBatchBytes, "raw bytes per syslog packet at most")
	fs.DurationVar(&cfg.SyslogLinger, "syslog-linger", cfg.SyslogLinger, "longest a syslog message waits for its batch to fill")
	fs.IntVar(&cfg.SyslogRecvBuffer, "syslog-rcvbuf", cfg.SyslogRecvBuffer, "UDP receive buffer in bytes (capped by net.core.rmem_max)")
	fs.BoolVar(&cfg.SyslogCompress, "syslog-compress", cfg.SyslogCompress, "zstd-compress syslog packets before forwarding")
	fs.StringVar(&inspect, "inspect", inspect, "header: check header, limits and checksum and forward as is; full: also decompress and validate every packet")
	fs.IntVar(&cfg.Loops, "loops", cfg.Loops, "event loops (0 = one per CPU)")
	fs.BoolVar(&pprofOn, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin address")
	fs.StringVar(&logFormat, "log-format", logFormat, "log format: text or json")
	fs.StringVar(&logLevel, "log-level", logLevel, "log level: debug, info, warn or error")
	showVersion := cli.VersionFlag(fs, "logdist")
	if err := fs.Parse(args); err != nil {
		return cfg, "", false, nil, err
	}
	if showVersion(os.Stdout) {
		return cfg, "", false, nil, pflag.ErrHelp
	}
	if fs.NArg() > 0 {
		return cfg, "", false, nil, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	log, err := cli.NewLogger(os.Stderr, logFormat, logLevel)
	if err != nil {
		return cfg, "", false, nil, err
	}
	cfg.Logger = log
	cfg.Balancer.Logger = log
	st, err := balancer.ParseStrategy(balance)
	if err != nil {
		return cfg, "", false, nil, fmt.Errorf("--balance: %v", err)
	}
	cfg.Balancer.Strategy = st
	if cfg.Inspect, err = proxy.ParseInspect(inspect); err != nil {
		return cfg, "", false, nil, fmt.Errorf("--inspect: %v", err)
	}
	if maxFrame <= 0 || maxRaw <= 0 || window <= 0 {
		return cfg, "", false, nil, errors.New("--max-frame, --max-raw and --window must be positive")
	}
	cfg.Limits.MaxFrame, cfg.Limits.MaxRaw, cfg.Window = uint32(maxFrame), uint32(maxRaw), uint32(window)
	for _, a := range analyzers {
		ac, err := parseAnalyzer(a)
		if err != nil {
			return cfg, "", false, nil, fmt.Errorf("--analyzer %q: %v", a, err)
		}
		cfg.Analyzers = append(cfg.Analyzers, ac)
	}
	return cfg, adminAddr, pprofOn, log, nil
}

// parseAnalyzer parses name=a1,addr=127.0.0.1:7501,weight=0.4.
func parseAnalyzer(s string) (proxy.AnalyzerConfig, error) {
	var a proxy.AnalyzerConfig
	a.Weight = 1
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return a, fmt.Errorf("%q is not key=value (want name=NAME,addr=HOST:PORT,weight=W)", kv)
		}
		switch k {
		case "name":
			a.Name = v
		case "addr":
			a.Addr = v
		case "weight":
			w, err := strconv.ParseFloat(v, 64)
			if err != nil || w < 0 || w != w {
				return a, fmt.Errorf("weight %q is not a non-negative number", v)
			}
			a.Weight = w
		default:
			return a, fmt.Errorf("unknown key %q (want name, addr, weight)", k)
		}
	}
	if a.Addr == "" {
		return a, errors.New("missing addr=HOST:PORT")
	}
	if a.Name == "" {
		a.Name = a.Addr
	}
	return a, nil
}
