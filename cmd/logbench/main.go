// Command logbench measures a logdist deployment (or a single analyzer):
// throughput, send → ACK latency, and how packets were spread over the
// analyzers. See package bench and docs/PERFORMANCE.md.
//
//	logbench --target 127.0.0.1:7400 --conns 8 --duration 30s --admin http://127.0.0.1:7480
//	logbench --target 127.0.0.1:7400 --rate 20000 --duration 1m --json
//	logbench --target 127.0.0.1:7400 --profile spike --scale 10
//	logbench --target 127.0.0.1:7400 --conns 0 --idle-conns 10000 --duration 1m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/bench"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code (0: every
// packet resolved, 1: the run failed or lost packets, 2: bad flags).
func run(args []string, stdout, stderr io.Writer) int {
	cfg, jsonOut, quiet, err := parseFlags(args, stdout, stderr)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "logbench: %v\n", err)
		return 2
	}
	if !quiet {
		cfg.Progress = stderr
	}
	if cfg.IdleConns > 0 {
		raiseFileLimit(cfg.IdleConns+cfg.Conns+64, stderr)
		cfg.OnIdleReady = func(n int) {
			// Machine-readable, for drivers that measure the server now.
			fmt.Fprintf(stderr, "logbench idle ready conns=%d\n", n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if res != nil {
		if jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(res)
		} else {
			res.WriteTable(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "logbench: %v\n", err)
		return 1
	}
	if cfg.Conns > 0 && res.PacketsAcked == 0 {
		fmt.Fprintf(stderr, "logbench: no packet was acknowledged (last error: %s)\n", res.LastError)
		return 1
	}
	if res.Unresolved > 0 {
		fmt.Fprintf(stderr, "logbench: %d packets were never resolved\n", res.Unresolved)
		return 1
	}
	return 0
}

func parseFlags(args []string, stdout, stderr io.Writer) (bench.Config, bool, bool, error) {
	cfg := bench.DefaultConfig()
	fs := pflag.NewFlagSet("logbench", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: logbench [flags]\n\nlogbench sends framed log packets to --target (logdist or an analyzer) and reports\nthroughput, send-to-ACK latency and, with --admin, how logdist spread the packets.\n\nExamples:\n  logbench --target 127.0.0.1:7400 --duration 30s --admin http://127.0.0.1:7480\n  logbench --target 127.0.0.1:7400 --rate 20000 --duration 1m --json\n  logbench --target 127.0.0.1:7400 --profile spike --scale 10\n  logbench --target 127.0.0.1:7400 --conns 0 --idle-conns 10000 --duration 1m\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		compress = "zstd"
		dictFile string
		profile  string
		scale    = 1.0
		jsonOut  bool
		quiet    bool
	)
	fs.StringVar(&cfg.Target, "target", cfg.Target, "host:port of logdist or of an analyzer; several, comma-separated, spread the connections over them, and a connection that loses one reconnects to the next")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections sending packets")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "packets/s in total over all connections (default 0: as fast as the window allows)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send (ignored with --packets or --profile)")
	fs.Int64Var(&cfg.Packets, "packets", cfg.Packets, "send exactly this many packets, then wait for their ACKs (default 0: use --duration)")
	fs.IntVar(&cfg.MsgsPerPacket, "msgs-per-packet", cfg.MsgsPerPacket, "messages in each packet")
	fs.IntVar(&cfg.MsgSize, "msg-size", cfg.MsgSize, "bytes of each message body: generated log text (timestamps, levels, hosts, ids)")
	fs.StringVar(&compress, "compress", compress, "payload compression: zstd or none")
	fs.BoolVar(&cfg.FastDecode, "fast-decode", false, "with zstd, leave the literals without entropy coding: packets about a quarter larger (10 messages of log text) that analyzers decode about 3× faster")
	fs.StringVar(&dictFile, "dict", "", "zstd dictionary file (logdist dict train) to compress the packets with; the target must hold it too (its WELCOME lists its id) (default \"\": none)")
	fs.Float64Var(&cfg.TraceSample, "trace-sample", cfg.TraceSample, "share of packets (0-1) that carry a sampled W3C trace context, each a new trace, for logdist and the analyzers to trace (logbench exports no spans; the server must grant the trace capability)")
	fs.BoolVar(&cfg.Sack, "sack", cfg.Sack, "offer selective ACKs: each packet is acknowledged when its analyzer acknowledges it (--sack=false: cumulative ACKs only, as older agents)")
	fs.IntVar(&cfg.PoolSize, "pool-size", cfg.PoolSize, "packet bodies built per connection before the clock starts, sent in turn, each time with a new packet id (default 0: up to 2,048, about 64 Ki over all connections)")
	fs.IntVar(&cfg.Window, "window", cfg.Window, "packets each connection keeps unacknowledged (the server may grant fewer)")
	fs.StringVar(&profile, "profile", "", "load shape instead of --rate/--duration: baseline (1,000 pkt/s for 5m), spike (100 to 5,000 pkt/s over 2m), sustained (2,000 pkt/s for 30m), variable (5m of varying rates) (default \"\": --rate and --duration)")
	fs.Float64Var(&scale, "scale", scale, "with --profile: multiply its rates and divide its durations by this")
	fs.StringVar(&cfg.Admin, "admin", "", "logdist admin URL (http://host:port): report each analyzer's share of the run against its weight (default \"\": off)")
	fs.IntVar(&cfg.IdleConns, "idle-conns", 0, "also open this many idle connections (handshake, then PING only) and hold them for the run (default 0)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as one JSON object on stdout instead of a table (default false)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress line on stderr (default false)")
	fs.StringVar(&cfg.AgentID, "agent-id", "", "agent id in HELLO and in the packets (default logbench-<pid>)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "after sending stops, how long to wait for outstanding ACKs")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", cfg.DialTimeout, "bound on each connect and handshake")
	tlsFlags := cli.AddTLSClient(fs, "the target")
	showVersion := cli.VersionFlag(fs, "logbench")
	if err := fs.Parse(args); err != nil {
		return cfg, false, false, err
	}
	if showVersion(stdout) {
		return cfg, false, false, pflag.ErrHelp
	}
	var err error
	if cfg.TLS, err = tlsFlags.Config(nil); err != nil {
		return cfg, false, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, false, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	switch compress {
	case "zstd":
		cfg.Compress = true
	case "none":
		cfg.Compress = false
	default:
		return cfg, false, false, fmt.Errorf("--compress %q: want zstd or none", compress)
	}
	if dictFile != "" {
		if cfg.Dict, err = frame.LoadDict(dictFile); err != nil {
			return cfg, false, false, fmt.Errorf("--dict: %w", err)
		}
	}
	if fs.Changed("duration") && fs.Changed("packets") {
		return cfg, false, false, errors.New("give --duration or --packets, not both")
	}
	if profile != "" {
		if fs.Changed("rate") || fs.Changed("duration") || fs.Changed("packets") {
			return cfg, false, false, errors.New("--profile sets the rate and the length: drop --rate, --duration and --packets")
		}
		s, err := bench.Profile(profile, scale)
		if err != nil {
			return cfg, false, false, fmt.Errorf("--profile: %v", err)
		}
		cfg.Profile, cfg.ProfileName = s, profile
	} else if fs.Changed("scale") {
		return cfg, false, false, errors.New("--scale only applies to --profile")
	}
	if cfg.Admin != "" {
		if _, err := bench.AnalyzersURL(cfg.Admin); err != nil {
			return cfg, false, false, fmt.Errorf("--admin: %v", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, false, err
	}
	return cfg, jsonOut, quiet, nil
}

// raiseFileLimit lifts the soft open-files limit towards need (up to the
// hard limit), so that --idle-conns 10000 works under a default ulimit.
func raiseFileLimit(need int, stderr io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur >= uint64(need) {
		return
	}
	l.Cur = min(l.Max, uint64(need))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur < uint64(need) {
		fmt.Fprintf(stderr, "logbench: open-files limit %d is below the %d connections asked for (raise ulimit -n)\n", l.Cur, need)
	}
}
