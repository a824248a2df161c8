// Command benchcmp is the driver behind `make bench`: it puts logdist side
// by side with a direct connection and with HAProxy, in one run,
// interleaved, and prints the figures docs/PERFORMANCE.md records.
//
// Paths, each measured with logbench:
//
//	direct   logbench → one analyzerd
//	logdist  logbench → logdist → four analyzerd (weights 0.4/0.3/0.2/0.1)
//	haproxy  logbench → HAProxy (mode tcp, balance roundrobin, weights 4/3/2/1) → the same four analyzerd
//
// It runs the throughput rounds (as fast as the window allows) A B C, B C
// A, ... and reports medians; then the latency rounds at a fixed rate of
// half the direct median; logdist's CPU per forwarded packet from
// /proc/<pid>/stat; the per-analyzer shares from the analyzers' /stats;
// the four load profiles at a short scale; and the RSS of a fresh logdist
// holding idle agent connections. Everything listens on 127.0.0.1; every
// process it starts is stopped before it exits.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

type config struct {
	bin         string
	rounds      int
	duration    time.Duration
	latDuration time.Duration
	latRate     float64
	fastDecode  bool
	logdistArgs []string
	conns       int
	window      int
	scale       float64
	profiles    []string
	idleConns   int
	install     bool
	out         string
	cpuProfile  time.Duration
	tls         bool
	trace       bool
	spool       bool
	isolated    bool
	proxyCPU    string
	restCPU     string
}

func main() {
	cfg := config{}
	fs := pflag.NewFlagSet("benchcmp", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&cfg.bin, "bin", "bin", "directory holding logdist, analyzerd and logbench")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds per path (interleaved; medians reported)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each throughput round")
	fs.DurationVar(&cfg.latDuration, "latency-duration", 5*time.Second, "length of each fixed-rate latency round")
	fs.Float64Var(&cfg.latRate, "latency-rate", 10000, "with --isolated: the fixed rate of the latency rounds in packets/s, well below what logbench and framesink sharing a CPU can pace (0: a quarter of the slowest path's saturation, where their pacing sets every path's p99)")
	fs.BoolVar(&cfg.fastDecode, "fast-decode", false, "logbench compresses with --fast-decode (literals not entropy-coded: larger packets the analyzers decode about 3× faster)")
	fs.IntVar(&cfg.conns, "conns", 10, "logbench connections (10 lets HAProxy place them 4/3/2/1)")
	fs.IntVar(&cfg.window, "window", 256, "logbench window per connection")
	fs.Float64Var(&cfg.scale, "scale", 20, "--scale of the load profiles (rates ×, durations ÷)")
	fs.StringSliceVar(&cfg.profiles, "profiles", []string{"baseline", "spike", "sustained", "variable"}, "load profiles to run through logdist (empty: none)")
	fs.IntVar(&cfg.idleConns, "idle-conns", 10000, "idle agent connections for the memory measurement (0: skip)")
	fs.BoolVar(&cfg.install, "install-haproxy", true, "as root, apt-get install haproxy when it is missing")
	fs.DurationVar(&cfg.cpuProfile, "cpu-profile", 10*time.Second, "take a CPU profile of logdist this long under full load and print its top costs (needs go on PATH; 0: skip)")
	fs.BoolVar(&cfg.trace, "trace", true, "also measure logdist exporting OpenTelemetry spans to a sink in benchcmp, sampling 0 (logdist-trace0) and 1% of packets (logdist-trace1)")
	fs.BoolVar(&cfg.spool, "spool", true, "also measure logdist with --ack-mode spool (logdist-spool: every packet written to a disk spool under a temporary --data-dir, fsync every 100 ms, agents acknowledged once it is durable)")
	fs.BoolVar(&cfg.tls, "tls", true, "also measure logdist with TLS on the agent hop (logdist-tls) and on both hops (logdist-tls2, over four more analyzerd serving TLS)")
	fs.BoolVar(&cfg.isolated, "isolated", false, "the proxy-isolated benchmark (make bench-proxy) instead: copyproxy, logdist --loops 1 and HAProxy nbthread 1, each alone on --proxy-cpu, with logbench and framesink (acknowledges unread) on --rest-cpu; CPU and system calls per packet")
	fs.StringVar(&cfg.proxyCPU, "proxy-cpu", "1", "with --isolated: the CPU list (taskset -c) the proxy under test runs on")
	fs.StringArrayVar(&cfg.logdistArgs, "logdist-arg", nil, "with --isolated: one more argument for logdist, e.g. --logdist-arg=--sack-delay=0 (repeat for several)")
	fs.StringVar(&cfg.restCPU, "rest-cpu", "0", "with --isolated: the CPU list for logbench and the analyzers")
	fs.StringVar(&cfg.out, "out", "", "also write the report to this file (default \"\": stdout only)")
	hapConfig := fs.StringSlice("haproxy-config", nil, "print the HAProxy configuration of the haproxy path for BIND,ANALYZER1,...,ANALYZER4 (addresses) and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "benchcmp: %v\n", err)
		os.Exit(2)
	}
	if len(*hapConfig) > 0 {
		if len(*hapConfig) != 1+len(weights) {
			fmt.Fprintf(os.Stderr, "benchcmp: --haproxy-config wants the bind address and %d analyzer addresses, got %d addresses\n", len(weights), len(*hapConfig))
			os.Exit(2)
		}
		fmt.Print(haproxyConfig((*hapConfig)[0], (*hapConfig)[1:]))
		return
	}
	if !cfg.isolated {
		for _, name := range []string{"latency-rate", "logdist-arg", "proxy-cpu", "rest-cpu"} {
			if fs.Changed(name) {
				fmt.Fprintf(os.Stderr, "benchcmp: --%s applies to --isolated only\n", name)
				os.Exit(2)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := 0
	runner := run
	if cfg.isolated {
		runner = runIsolated
	}
	if err := runner(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "benchcmp: %v\n", err)
		code = 1
	}
	stop()
	stopAll()
	os.Exit(code)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchcmp: "+format+"\n", a...)
}

func run(ctx context.Context, cfg config) error {
	began := time.Now()
	if runtime.GOOS != "linux" {
		logf("not Linux: CPU and RSS figures (from /proc) will be missing")
	}
	raiseFileLimit(cfg.idleConns + 4096)
	for _, b := range []string{"logdist", "analyzerd", "logbench"} {
		if _, err := os.Stat(filepath.Join(cfg.bin, b)); err != nil {
			return fmt.Errorf("no %s in %s: run make build first (%v)", b, cfg.bin, err)
		}
	}
	haproxy, why := findHAProxy(ctx, cfg.install)
	if haproxy == "" {
		logf("haproxy row skipped: %s", why)
	}

	sys, err := startSystem(cfg, haproxy)
	if err != nil {
		return err
	}
	var rep report
	rep.cfg = cfg
	rep.header = machineLine()
	paths := []string{"direct", "logdist"}
	if cfg.tls {
		paths = append(paths, pathTLSAgent, pathTLSBoth)
	}
	if cfg.trace {
		paths = append(paths, pathTrace0, pathTrace1)
	}
	if cfg.spool {
		paths = append(paths, pathSpool)
	}
	if sys.haproxy != nil {
		paths = append(paths, "haproxy")
	}
	rep.paths = paths

	rep.missed0, rep.lost0 = sys.healthCounters()
	// Throughput: rotate the order each round so no path always follows
	// the same one.
	for r := range cfg.rounds {
		for i := range paths {
			path := paths[(i+r)%len(paths)]
			if err := ctx.Err(); err != nil {
				return err
			}
			m, err := sys.measure(ctx, path, 0, cfg.duration)
			if err != nil {
				return err
			}
			rep.tput = append(rep.tput, m)
			logf("throughput round %d/%d %-8s %9.0f packets/s  p99 %.2f ms  cpu/pkt %s", r+1, cfg.rounds, path, m.res.PacketsPerSec, m.res.LatencyMs.P99, m.cpuPerPacketString())
		}
	}
	if cfg.cpuProfile > 0 {
		top, err := sys.cpuProfileTop(ctx, cfg.cpuProfile)
		if err != nil {
			logf("CPU profile skipped: %v", err)
		}
		rep.profileTop = top
	}
	direct := median(rep.values("direct", func(m measurement) float64 { return m.res.PacketsPerSec }))
	rep.latRate = float64(int64(direct / 2))
	for r := range cfg.rounds {
		for i := range paths {
			path := paths[(i+r)%len(paths)]
			if err := ctx.Err(); err != nil {
				return err
			}
			m, err := sys.measure(ctx, path, rep.latRate, cfg.latDuration)
			if err != nil {
				return err
			}
			rep.lat = append(rep.lat, m)
			logf("latency round %d/%d %-8s at %.0f/s: p50 %.2f ms p99 %.2f ms", r+1, cfg.rounds, path, rep.latRate, m.res.LatencyMs.P50, m.res.LatencyMs.P99)
		}
	}
	rep.missed1, rep.lost1 = sys.healthCounters()
	for _, p := range cfg.profiles {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := sys.profile(ctx, p, cfg.scale)
		if err != nil {
			return err
		}
		rep.profiles = append(rep.profiles, profileRun{name: p, res: res})
		logf("profile %s: %d/%d packets acked, p99 %.2f ms", p, res.PacketsAcked, res.PacketsScheduled, res.LatencyMs.P99)
	}
	sys.stop()
	if cfg.idleConns > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		idle, err := measureIdle(ctx, cfg)
		if err != nil {
			return err
		}
		rep.idle = idle
	}
	rep.took = time.Since(began)

	return writeReport(cfg.out, rep.write)
}

// writeReport writes a report to stdout and, if out is not empty, to the
// file out too.
func writeReport(out string, write func(io.Writer)) error {
	if out == "" {
		write(os.Stdout)
		return nil
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	write(io.MultiWriter(os.Stdout, f))
	return f.Close()
}

// findHAProxy returns the haproxy binary, installing it with apt-get as
// root when allowed, or "" and why not.
func findHAProxy(ctx context.Context, install bool) (string, string) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, ""
	}
	if !install {
		return "", "haproxy is not installed (--install-haproxy=false)"
	}
	if os.Geteuid() != 0 {
		return "", "haproxy is not installed and this is not root: install it (apt-get install -y haproxy) to get the row"
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", "haproxy is not installed and there is no apt-get"
	}
	logf("haproxy missing: apt-get update && apt-get install -y haproxy")
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := runCmd(ictx, "apt-get", "update"); err != nil {
		return "", "apt-get update failed: " + err.Error()
	}
	if _, err := runCmd(ictx, "apt-get", "install", "-y", "haproxy"); err != nil {
		return "", "apt-get install haproxy failed: " + err.Error()
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, ""
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", ""
	}
	return "", "haproxy installed but not found on PATH"
}

// raiseFileLimit lifts the soft open-files limit (inherited by logdist and
// logbench) to what the idle-connection measurement needs.
func raiseFileLimit(need int) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur >= uint64(need) {
		return
	}
	l.Cur = min(l.Max, uint64(need))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur < uint64(need) {
		logf("open-files limit is %d, below the %d needed: idle connections may fail (raise ulimit -n)", l.Cur, need)
	}
}

func machineLine() string {
	host, _ := os.Hostname()
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s at start", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s%s, %s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}
