package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/logdist/logdist/bench"
)

// The proxy-isolated benchmark (make bench-proxy, benchcmp --isolated):
// the proxy under test alone on one core, everything else — logbench and
// the analyzers, here framesink, which acknowledges without reading — on
// the other, so that what is measured is the proxy's own cost. Paths:
//
//	copy     tools/copyproxy: per-connection, splice(2), parses nothing (the floor)
//	logdist  logdist --loops 1: per-packet weighted picks, CRC checks, end-to-end ACKs
//	haproxy  HAProxy nbthread 1, mode tcp, roundrobin 4/3/2/1 per connection
//
// For each: packets/s as fast as the window allows, the proxy's CPU per
// packet (user and system apart, from /proc/PID/stat), system calls per
// packet (perf stat -e raw_syscalls:sys_enter, in a run of its own so
// that counting does not slow the CPU rounds), the analyzers' shares, and
// the p99 at a fixed rate below every path's saturation.

const (
	pathCopy = "copy"
)

type isoSystem struct {
	cfg      config
	proxyCPU string // taskset list for the proxy
	restCPU  string // and for everything else
	sink     *proc
	sinks    []string // the sink's listen addresses, a1..a4
	procs    map[string]*proc
	addrs    map[string]string
	tmp      string
}

// pinned returns the argv that runs path on cpus.
func pinned(cpus, path string, args ...string) (string, []string) {
	if cpus == "" {
		return path, args
	}
	return "taskset", append([]string{"-c", cpus, path}, args...)
}

func (s *isoSystem) start(name, cpus, path, ready string, args ...string) (*proc, error) {
	p, a := pinned(cpus, path, args...)
	return start(name, p, ready, a...)
}

func runIsolated(ctx context.Context, cfg config) error {
	began := time.Now()
	if n := runtime.NumCPU(); n < 2 {
		return fmt.Errorf("--isolated needs two CPUs, this machine has %d", n)
	}
	for _, b := range []string{"logdist", "logbench", "framesink", "copyproxy"} {
		if _, err := os.Stat(filepath.Join(cfg.bin, b)); err != nil {
			return fmt.Errorf("no %s in %s: run make build first (%v)", b, cfg.bin, err)
		}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("--isolated pins processes with taskset (util-linux), which is not on PATH")
	}
	haproxy, why := findHAProxy(ctx, cfg.install)
	if haproxy == "" {
		logf("haproxy row skipped: %s", why)
	}
	s := &isoSystem{cfg: cfg, proxyCPU: cfg.proxyCPU, restCPU: cfg.restCPU, procs: map[string]*proc{}, addrs: map[string]string{}}
	defer s.stop()
	if err := s.startAll(haproxy); err != nil {
		return err
	}
	paths := []string{pathCopy, "logdist"}
	if s.procs["haproxy"] != nil {
		paths = append(paths, "haproxy")
	}
	var rep isoReport
	rep.header = machineLine()
	rep.cfg = cfg
	rep.paths = paths
	for r := range cfg.rounds {
		for i := range paths {
			path := paths[(i+r)%len(paths)]
			if err := ctx.Err(); err != nil {
				return err
			}
			m, err := s.measure(ctx, path, 0, cfg.duration, false)
			if err != nil {
				return err
			}
			rep.tput = append(rep.tput, m)
			logf("throughput round %d/%d %-8s %9.0f packets/s  cpu/pkt user %.3f sys %.3f µs  errors %d", r+1, cfg.rounds, path,
				m.res.PacketsPerSec, m.user*1e6/float64(max(m.res.PacketsAcked, 1)), m.sys*1e6/float64(max(m.res.PacketsAcked, 1)), m.res.Errors)
		}
	}
	// System calls: one counted run per path, apart from the CPU rounds.
	if _, err := exec.LookPath("perf"); err != nil {
		rep.sysNote = "perf is not installed (Debian: linux-perf): no system-call counts"
	} else {
		for _, path := range paths {
			m, err := s.measure(ctx, path, 0, cfg.duration, true)
			if err != nil {
				return err
			}
			if m.syscalls < 0 {
				rep.sysNote = m.sysErr
			}
			rep.sys = append(rep.sys, m)
			logf("syscall round %-8s %9.0f packets/s  %.3f system calls/packet", path, m.res.PacketsPerSec, m.syscallsPerPacket())
		}
	}
	slowest := 0.0
	for _, p := range paths {
		v := median(rep.tputValues(p, func(m isoMeasurement) float64 { return m.res.PacketsPerSec }))
		if slowest == 0 || v < slowest {
			slowest = v
		}
	}
	// --latency-rate, by default 10,000/s: at a quarter of the slowest
	// path's saturation (--latency-rate 0) logbench's pacing on the CPU it
	// shares with framesink made every path's p99, the copy proxy's too
	// (PERFORMANCE.md, "The proxy alone on one core").
	rep.latRate = cfg.latRate
	if rep.latRate <= 0 {
		rep.latRate = float64(int64(slowest / 4))
	} else if half := float64(int64(slowest / 2)); rep.latRate > half {
		logf("--latency-rate %.0f is above half the slowest path's saturation (%.0f/s): the latency rounds run at %.0f/s", rep.latRate, slowest, half)
		rep.latRate = half
	}
	for r := range cfg.rounds {
		for i := range paths {
			path := paths[(i+r)%len(paths)]
			m, err := s.measure(ctx, path, rep.latRate, cfg.latDuration, false)
			if err != nil {
				return err
			}
			rep.lat = append(rep.lat, m)
			logf("latency round %d/%d %-8s at %.0f/s: p50 %.2f ms p99 %.2f ms", r+1, cfg.rounds, path, rep.latRate, m.res.LatencyMs.P50, m.res.LatencyMs.P99)
		}
	}
	rep.took = time.Since(began)
	return writeReport(cfg.out, rep.write)
}

func (s *isoSystem) startAll(haproxy string) error {
	var err error
	if s.tmp, err = os.MkdirTemp("", "benchproxy-"); err != nil {
		return err
	}
	args := []string{"--admin", "127.0.0.1:0"}
	for range weights {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	if s.sink, err = s.start("framesink", s.restCPU, filepath.Join(s.cfg.bin, "framesink"), "framesink", args...); err != nil {
		return err
	}
	s.sinks = strings.Split(s.sink.fields["listen"], ",")
	if len(s.sinks) != len(weights) {
		return fmt.Errorf("framesink listens on %q, want %d addresses", s.sink.fields["listen"], len(weights))
	}
	// logdist, one loop, pinned.
	ld := []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--syslog-udp", "", "--log-level", "warn", "--loops", "1"}
	for i, a := range s.sinks {
		ld = append(ld, "--analyzer", fmt.Sprintf("name=a%d,addr=%s,weight=%g", i+1, a, weights[i]))
	}
	ld = append(ld, s.cfg.logdistArgs...)
	p, err := s.start("logdist", s.proxyCPU, filepath.Join(s.cfg.bin, "logdist"), "logdist", ld...)
	if err != nil {
		return err
	}
	s.procs["logdist"], s.addrs["logdist"] = p, p.fields["listen"]
	if err := waitHealthy(p, len(s.sinks)); err != nil {
		return err
	}
	cp := []string{"--listen", "127.0.0.1:0"}
	for i, a := range s.sinks {
		cp = append(cp, "--upstream", fmt.Sprintf("%s=%d", a, int(weights[i]*10+0.5)))
	}
	if p, err = s.start("copyproxy", s.proxyCPU, filepath.Join(s.cfg.bin, "copyproxy"), "copyproxy", cp...); err != nil {
		return err
	}
	s.procs[pathCopy], s.addrs[pathCopy] = p, p.fields["listen"]
	if haproxy != "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		conf := strings.Replace(haproxyConfig(addr, s.sinks), "nbthread 2", "nbthread 1", 1)
		path := filepath.Join(s.tmp, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return err
		}
		if p, err = s.start("haproxy", s.proxyCPU, haproxy, "", "-db", "-f", path); err != nil {
			return err
		}
		if err := waitListening(addr, 10*time.Second); err != nil {
			return fmt.Errorf("haproxy: %w\n%s", err, p.logs())
		}
		s.procs["haproxy"], s.addrs["haproxy"] = p, addr
	}
	return nil
}

func (s *isoSystem) stop() {
	for _, p := range s.procs {
		p.stop()
	}
	if s.sink != nil {
		s.sink.stop()
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// sinkCounts returns the packets each sink listener has acknowledged.
func (s *isoSystem) sinkCounts() ([]uint64, error) {
	var st struct {
		Listeners []struct {
			Packets uint64 `json:"packets"`
		} `json:"listeners"`
	}
	if err := getJSON("http://"+s.sink.fields["admin"]+"/stats", &st); err != nil {
		return nil, err
	}
	out := make([]uint64, len(st.Listeners))
	for i, l := range st.Listeners {
		out[i] = l.Packets
	}
	return out, nil
}

type isoMeasurement struct {
	path      string
	rate      float64
	res       bench.Result
	user, sys float64 // CPU seconds of the proxy during the run
	syscalls  float64 // system calls of the proxy during the run; <0 not counted
	sysErr    string
	shares    []uint64
}

func (m isoMeasurement) perPacket(v float64) float64 {
	if m.res.PacketsAcked == 0 {
		return -1
	}
	return v * 1e6 / float64(m.res.PacketsAcked)
}

func (m isoMeasurement) syscallsPerPacket() float64 {
	if m.syscalls < 0 || m.res.PacketsAcked == 0 {
		return -1
	}
	return m.syscalls / float64(m.res.PacketsAcked)
}

// measure runs logbench (pinned with the sinks) through path; with count,
// perf counts the proxy's system calls over the run.
func (s *isoSystem) measure(ctx context.Context, path string, rate float64, d time.Duration, count bool) (isoMeasurement, error) {
	m := isoMeasurement{path: path, rate: rate, syscalls: -1}
	p := s.procs[path]
	before, err := s.sinkCounts()
	if err != nil {
		return m, err
	}
	u0, s0, err := cpuSplit(p.pid())
	if err != nil {
		return m, err
	}
	var perf *exec.Cmd
	var perfOut strings.Builder
	if count {
		perf = exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", strconv.Itoa(p.pid()))
		perf.Stderr = &perfOut
		if err := perf.Start(); err != nil {
			m.sysErr = "perf stat: " + err.Error()
			perf = nil
		}
	}
	args := []string{"--target", s.addrs[path], "--conns", strconv.Itoa(s.cfg.conns), "--window", strconv.Itoa(s.cfg.window),
		"--duration", d.String(), "--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--json", "-q"}
	if s.cfg.fastDecode {
		args = append(args, "--fast-decode")
	}
	lp, la := pinned(s.restCPU, filepath.Join(s.cfg.bin, "logbench"), args...)
	cctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
	out, err := runCmd(cctx, lp, la...)
	cancel()
	if perf != nil {
		_ = perf.Process.Signal(syscall.SIGINT)
		_ = perf.Wait()
		if n, ok := parsePerfCount(perfOut.String()); ok {
			m.syscalls = n
		} else {
			m.sysErr = "perf stat gave no count: " + lastLines(perfOut.String(), 3)
		}
	}
	if jerr := json.Unmarshal(out, &m.res); jerr != nil && err == nil {
		err = fmt.Errorf("logbench output: %v", jerr)
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	u1, s1, err := cpuSplit(p.pid())
	if err != nil {
		return m, err
	}
	m.user, m.sys = u1-u0, s1-s0
	after, err := s.sinkCounts()
	if err != nil {
		return m, err
	}
	m.shares = make([]uint64, len(after))
	for i := range after {
		m.shares[i] = after[i] - before[i]
	}
	return m, nil
}

// parsePerfCount reads the count of perf stat -x, output.
func parsePerfCount(out string) (float64, bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) >= 3 && strings.Contains(line, "raw_syscalls:sys_enter") {
			v, err := strconv.ParseFloat(f[0], 64)
			return v, err == nil
		}
	}
	return 0, false
}

type isoReport struct {
	header  string
	cfg     config
	paths   []string
	tput    []isoMeasurement
	sys     []isoMeasurement
	lat     []isoMeasurement
	latRate float64
	sysNote string
	took    time.Duration
}

func (r *isoReport) tputValues(path string, f func(isoMeasurement) float64) []float64 {
	var out []float64
	for _, m := range r.tput {
		if m.path == path {
			if v := f(m); v >= 0 {
				out = append(out, v)
			}
		}
	}
	return out
}

func (r *isoReport) write(w io.Writer) {
	fmt.Fprintf(w, "# benchcmp --isolated (make bench-proxy)\n\n%s; proxy on CPU %s, logbench and framesink on CPU %s\n", r.header, r.cfg.proxyCPU, r.cfg.restCPU)
	fmt.Fprintf(w, "logbench: %d connections, window %d, 10-message zstd packets; %d rounds of %s per path, interleaved; medians (min–max)\n\n",
		r.cfg.conns, r.cfg.window, r.cfg.rounds, r.cfg.duration)
	fmt.Fprintf(w, "| path | packets/s | user µs/pkt | system µs/pkt | CPU µs/pkt | ×HAProxy CPU | syscalls/pkt | p99 ms saturated | p99 ms at %.0f/s | shares a1/a2/a3/a4 %% | errors |\n", r.latRate)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	hapCPU := median(r.tputValues("haproxy", func(m isoMeasurement) float64 { return m.perPacket(m.user + m.sys) }))
	for _, p := range r.paths {
		pps := r.tputValues(p, func(m isoMeasurement) float64 { return m.res.PacketsPerSec })
		user := r.tputValues(p, func(m isoMeasurement) float64 { return m.perPacket(m.user) })
		sys := r.tputValues(p, func(m isoMeasurement) float64 { return m.perPacket(m.sys) })
		tot := r.tputValues(p, func(m isoMeasurement) float64 { return m.perPacket(m.user + m.sys) })
		ratio := "-"
		if hapCPU > 0 {
			ratio = fmt.Sprintf("%.2f", median(tot)/hapCPU)
		}
		sc := "-"
		for _, m := range r.sys {
			if m.path == p && m.syscallsPerPacket() >= 0 {
				sc = fmt.Sprintf("%.3f", m.syscallsPerPacket())
			}
		}
		satP99 := r.tputValues(p, func(m isoMeasurement) float64 { return m.res.LatencyMs.P99 })
		var p99 []float64
		for _, m := range r.lat {
			if m.path == p {
				p99 = append(p99, m.res.LatencyMs.P99)
			}
		}
		var shares [4]uint64
		var errs uint64
		for _, m := range r.tput {
			if m.path != p {
				continue
			}
			errs += m.res.Errors + m.res.Unresolved
			for i := range min(len(m.shares), 4) {
				shares[i] += m.shares[i]
			}
		}
		total := shares[0] + shares[1] + shares[2] + shares[3]
		sh := "-"
		if total > 0 {
			sh = fmt.Sprintf("%.2f/%.2f/%.2f/%.2f", 100*float64(shares[0])/float64(total), 100*float64(shares[1])/float64(total),
				100*float64(shares[2])/float64(total), 100*float64(shares[3])/float64(total))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", p, spread(pps, "%.0f"), spread(user, "%.3f"), spread(sys, "%.3f"),
			spread(tot, "%.3f"), ratio, sc, spread(satP99, "%.1f"), spread(p99, "%.2f"), sh, errs)
	}
	if r.sysNote != "" {
		fmt.Fprintf(w, "\nsystem calls: %s\n", r.sysNote)
	}
	fmt.Fprintf(w, "\nsystem calls counted with perf stat -e raw_syscalls:sys_enter -p PID over one run per path of its own; CPU from /proc/PID/stat (utime, stime).\nTook %s.\n", r.took.Round(time.Second))
}

// spread formats the median and the range of vs.
func spread(vs []float64, f string) string {
	if len(vs) == 0 {
		return "-"
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return fmt.Sprintf(f, s[0])
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", median(s), s[0], s[len(s)-1])
}
