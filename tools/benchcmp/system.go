package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/logdist/logdist/bench"
	"github.com/logdist/logdist/internal/tlsconf/tlstest"
)

var weights = []float64{0.4, 0.3, 0.2, 0.1}

// system is the processes under test: one analyzerd for the direct path,
// four behind logdist and HAProxy; with --tls, logdist also takes agents
// over TLS (the logdist-tls path), and a second logdist takes agents over
// TLS only and reaches four more analyzerd over TLS (logdist-tls2: both
// hops encrypted).
type system struct {
	cfg          config
	direct       *proc
	analyzers    []*proc
	logdist      *proc
	haproxy      *proc
	hapAddr      string
	tmp          string
	tlsCA        string
	tlsAnalyzers []*proc
	logdistTLS2  *proc
	// With --trace: logdist exporting spans to an in-process OTLP sink,
	// sampling nothing (logdist-trace0) and 1% of packets (logdist-trace1).
	sink                         *http.Server
	logdistTrace0, logdistTrace1 *proc
	logdistSpool                 *proc
}

// Paths with TLS.
const (
	pathTLSAgent = "logdist-tls"    // logbench -TLS-> logdist -> analyzerd
	pathTLSBoth  = "logdist-tls2"   // logbench -TLS-> logdist -TLS-> analyzerd
	pathTrace0   = "logdist-trace0" // tracing on, sampling 0
	pathTrace1   = "logdist-trace1" // tracing on, sampling 1% (spans for logdist and the analyzers)
	pathSpool    = "logdist-spool"  // --ack-mode spool: every packet in a disk spool, acknowledged once durable
)

func (s *system) bin(name string) string { return filepath.Join(s.cfg.bin, name) }

func startAnalyzerd(bin, name string, extra ...string) (*proc, error) {
	return start(name, bin, "analyzerd", append([]string{"--name", name, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-level", "warn"}, extra...)...)
}

func startLogdist(bin string, analyzers []*proc, tlsAnalyzers bool, extra ...string) (*proc, error) {
	args := []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--syslog-udp", "", "--log-level", "warn", "--pprof"}
	for i, a := range analyzers {
		spec := fmt.Sprintf("name=a%d,addr=%s,weight=%g", i+1, a.fields["listen"], weights[i])
		if tlsAnalyzers {
			spec += ",tls=true"
		}
		args = append(args, "--analyzer", spec)
	}
	p, err := start("logdist", bin, "logdist", append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	return p, waitHealthy(p, len(analyzers))
}

// waitHealthy waits until logdist p sees n analyzers up.
func waitHealthy(p *proc, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var as []struct {
			Healthy bool `json:"healthy"`
		}
		err := getJSON("http://"+p.fields["admin"]+"/api/v1/analyzers", &as)
		up := 0
		for _, a := range as {
			if a.Healthy {
				up++
			}
		}
		if err == nil && up == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("logdist: %d of %d analyzers healthy after 10s (%v)", up, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startSystem(cfg config, haproxy string) (*system, error) {
	s := &system{cfg: cfg}
	var err error
	if s.direct, err = startAnalyzerd(s.bin("analyzerd"), "direct"); err != nil {
		return nil, err
	}
	for i := range weights {
		a, err := startAnalyzerd(s.bin("analyzerd"), fmt.Sprintf("a%d", i+1))
		if err != nil {
			return nil, err
		}
		s.analyzers = append(s.analyzers, a)
	}
	if s.tmp, err = os.MkdirTemp("", "benchcmp-"); err != nil {
		return nil, err
	}
	var tlsArgs []string
	if cfg.tls {
		ca := tlstest.NewCA(tmpT{s.tmp}, "benchcmp")
		pair := ca.Issue(tmpT{s.tmp}, tlstest.Localhost("localhost"))
		s.tlsCA = ca.File
		tlsArgs = []string{"--tls-cert", pair.Cert, "--tls-key", pair.Key}
		for i := range weights {
			a, err := startAnalyzerd(s.bin("analyzerd"), fmt.Sprintf("tls-a%d", i+1), tlsArgs...)
			if err != nil {
				return nil, err
			}
			s.tlsAnalyzers = append(s.tlsAnalyzers, a)
		}
		if s.logdistTLS2, err = startLogdist(s.bin("logdist"), s.tlsAnalyzers, true,
			append([]string{"--listen", "", "--tls-listen", "127.0.0.1:0", "--upstream-tls-ca", ca.File}, tlsArgs...)...); err != nil {
			return nil, err
		}
		tlsArgs = append([]string{"--tls-listen", "127.0.0.1:0"}, tlsArgs...)
	}
	if s.logdist, err = startLogdist(s.bin("logdist"), s.analyzers, false, tlsArgs...); err != nil {
		return nil, err
	}
	if cfg.trace {
		endpoint, err := s.startSink()
		if err != nil {
			return nil, err
		}
		if s.logdistTrace0, err = startLogdist(s.bin("logdist"), s.analyzers, false, "--otlp-endpoint", endpoint, "--trace-sample", "0"); err != nil {
			return nil, err
		}
		if s.logdistTrace1, err = startLogdist(s.bin("logdist"), s.analyzers, false, "--otlp-endpoint", endpoint, "--trace-sample", "0.01"); err != nil {
			return nil, err
		}
	}
	if cfg.spool {
		if s.logdistSpool, err = startLogdist(s.bin("logdist"), s.analyzers, false, "--data-dir", filepath.Join(s.tmp, "spool-data"), "--ack-mode", "spool"); err != nil {
			return nil, err
		}
	}
	if haproxy != "" {
		if err := s.startHAProxy(haproxy); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startHAProxy runs HAProxy in TCP mode, round robin over the same four
// analyzers at weights 4/3/2/1, in the foreground (-db), no health checks.
func (s *system) startHAProxy(bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.hapAddr = "127.0.0.1:" + strconv.Itoa(port)
	addrs := make([]string, len(s.analyzers))
	for i, a := range s.analyzers {
		addrs[i] = a.fields["listen"]
	}
	conf := haproxyConfig(s.hapAddr, addrs)
	path := filepath.Join(s.tmp, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	if s.haproxy, err = start("haproxy", bin, "", "-db", "-f", path); err != nil {
		return err
	}
	if err := waitListening(s.hapAddr, 10*time.Second); err != nil {
		return fmt.Errorf("haproxy: %w\n%s", err, s.haproxy.logs())
	}
	return nil
}

// healthCounters sums logdist's analyzer-connection failure counters:
// missed heartbeats and lost connections (either can take an analyzer out
// of the rotation and so move its share).
func (s *system) healthCounters() (missed, lost float64) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.logdist.fields["admin"] + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "logdist_upstream_heartbeats_missed_total"):
			missed += v
		case strings.HasPrefix(line, "logdist_upstream_connections_lost_total"):
			lost += v
		}
	}
	return missed, lost
}

func (s *system) stop() {
	if s.sink != nil {
		s.sink.Close()
	}
	for _, p := range append(append([]*proc{s.haproxy, s.logdist, s.logdistTLS2, s.logdistTrace0, s.logdistTrace1, s.logdistSpool, s.direct}, s.analyzers...), s.tlsAnalyzers...) {
		if p != nil {
			p.stop()
		}
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// measurement is one logbench run on one path.
type measurement struct {
	path   string
	rate   float64
	res    bench.Result
	cpu    float64  // CPU seconds of the proxy (logdist or HAProxy) during the run; <0 unknown
	anCPU  float64  // CPU seconds of the analyzers that received the run; <0 unknown
	shares []uint64 // packets per analyzer (a1..a4) from their /stats
}

// analyzerCPUPerPacket is the analyzers' CPU seconds per acknowledged
// packet, or -1.
func (m measurement) analyzerCPUPerPacket() float64 {
	if m.anCPU < 0 || m.res.PacketsAcked == 0 {
		return -1
	}
	return m.anCPU / float64(m.res.PacketsAcked)
}

func (m measurement) cpuPerPacket() float64 {
	if m.cpu < 0 || m.res.PacketsAcked == 0 {
		return -1
	}
	return m.cpu / float64(m.res.PacketsAcked)
}

func (m measurement) cpuPerPacketString() string {
	if v := m.cpuPerPacket(); v >= 0 {
		return fmt.Sprintf("%.2f µs", v*1e6)
	}
	return "-"
}

func (s *system) target(path string) (string, *proc) {
	switch path {
	case "direct":
		return s.direct.fields["listen"], nil
	case "logdist":
		return s.logdist.fields["listen"], s.logdist
	case pathTLSAgent:
		return s.logdist.fields["tls"], s.logdist
	case pathTLSBoth:
		return s.logdistTLS2.fields["tls"], s.logdistTLS2
	case pathTrace0:
		return s.logdistTrace0.fields["listen"], s.logdistTrace0
	case pathTrace1:
		return s.logdistTrace1.fields["listen"], s.logdistTrace1
	case pathSpool:
		return s.logdistSpool.fields["listen"], s.logdistSpool
	default:
		return s.hapAddr, s.haproxy
	}
}

// behind returns the analyzers path forwards to.
func (s *system) behind(path string) []*proc {
	switch path {
	case "direct":
		return []*proc{s.direct}
	case pathTLSBoth:
		return s.tlsAnalyzers
	}
	return s.analyzers
}

func (s *system) analyzerCounts(path string) ([]uint64, error) {
	as := s.behind(path)
	out := make([]uint64, len(as))
	for i, a := range as {
		var st analyzerStats
		if err := getJSON("http://"+a.fields["admin"]+"/stats", &st); err != nil {
			return nil, err
		}
		out[i] = st.received()
	}
	return out, nil
}

// logbench runs logbench with args plus --json -q and parses its result.
func (s *system) logbench(ctx context.Context, limit time.Duration, args ...string) (bench.Result, error) {
	var res bench.Result
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if s.cfg.fastDecode {
		args = append(args, "--fast-decode")
	}
	out, err := runCmd(cctx, s.bin("logbench"), append(args, "--json", "-q")...)
	if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
		err = fmt.Errorf("logbench output: %v", jerr)
	}
	return res, err
}

// analyzerCPU sums the CPU seconds of the analyzers path sends to.
func (s *system) analyzerCPU(path string) (float64, error) {
	sum := 0.0
	for _, p := range s.behind(path) {
		v, err := cpuSeconds(p.pid())
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// measure runs logbench on path at rate (0: as fast as the window allows).
func (s *system) measure(ctx context.Context, path string, rate float64, d time.Duration) (measurement, error) {
	m := measurement{path: path, rate: rate, cpu: -1, anCPU: -1}
	target, proxy := s.target(path)
	an0, anErr := s.analyzerCPU(path)
	before, err := s.analyzerCounts(path)
	if err != nil {
		return m, err
	}
	var cpu0 float64
	cpuErr := error(nil)
	if proxy != nil {
		cpu0, cpuErr = cpuSeconds(proxy.pid())
	}
	args := []string{"--target", target, "--conns", strconv.Itoa(s.cfg.conns),
		"--window", strconv.Itoa(s.cfg.window), "--duration", d.String(), "--rate", strconv.FormatFloat(rate, 'f', -1, 64)}
	if path == pathTLSAgent || path == pathTLSBoth {
		args = append(args, "--tls-ca", s.tlsCA)
	}
	m.res, err = s.logbench(ctx, d+2*time.Minute, args...)
	if err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	if proxy != nil && cpuErr == nil {
		if cpu1, err := cpuSeconds(proxy.pid()); err == nil {
			m.cpu = cpu1 - cpu0
		}
	}
	if an1, err := s.analyzerCPU(path); err == nil && anErr == nil {
		m.anCPU = an1 - an0
	}
	after, err := s.analyzerCounts(path)
	if err != nil {
		return m, err
	}
	if path != "direct" {
		m.shares = make([]uint64, len(after))
		for i := range after {
			m.shares[i] = after[i] - before[i]
		}
	}
	return m, nil
}

type profileRun struct {
	name string
	res  bench.Result
}

func (s *system) profile(ctx context.Context, name string, scale float64) (bench.Result, error) {
	sc, err := bench.Profile(name, scale)
	if err != nil {
		return bench.Result{}, err
	}
	res, err := s.logbench(ctx, sc.Duration()+2*time.Minute, "--target", s.logdist.fields["listen"], "--conns", strconv.Itoa(s.cfg.conns),
		"--window", strconv.Itoa(s.cfg.window), "--profile", name, "--scale", strconv.FormatFloat(scale, 'f', -1, 64),
		"--admin", "http://"+s.logdist.fields["admin"])
	if err != nil {
		// A profile beyond capacity leaves packets unresolved (exit 1) but
		// its result is still the measurement.
		if res.PacketsSent == 0 {
			return res, fmt.Errorf("profile %s: %w", name, err)
		}
		logf("profile %s: %v", name, err)
	}
	return res, nil
}

type idleResult struct {
	conns       int
	held        int
	rssBefore   float64
	rssHolding  float64
	rssErr      error
	openSeconds float64
}

// measureIdle starts a fresh logdist (and its analyzers), opens the idle
// connections with logbench, and reads logdist's RSS while they are held.
func measureIdle(ctx context.Context, cfg config) (*idleResult, error) {
	r := &idleResult{conns: cfg.idleConns}
	var as []*proc
	for i := range weights {
		a, err := startAnalyzerd(filepath.Join(cfg.bin, "analyzerd"), fmt.Sprintf("idle-a%d", i+1))
		if err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	ld, err := startLogdist(filepath.Join(cfg.bin, "logdist"), as, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		ld.stop()
		for _, a := range as {
			a.stop()
		}
	}()
	r.rssBefore, r.rssErr = rssMiB(ld.pid())
	began := time.Now()
	lb, err := start("logbench", filepath.Join(cfg.bin, "logbench"), "logbench idle",
		"--target", ld.fields["listen"], "--conns", "0", "--idle-conns", strconv.Itoa(cfg.idleConns), "--duration", "10m", "-q")
	if err != nil {
		return nil, err
	}
	defer lb.stop()
	r.openSeconds = time.Since(began).Seconds()
	r.held, _ = strconv.Atoi(lb.fields["conns"])
	// Let logdist settle (GC, buffers), then take the larger of a few
	// readings a little apart.
	for range 5 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		if v, err := rssMiB(ld.pid()); err == nil {
			r.rssHolding = max(r.rssHolding, v)
		} else {
			r.rssErr = err
		}
	}
	return r, nil
}

// cpuProfileTop loads logdist as fast as the window allows and returns
// `go tool pprof -top` of a CPU profile taken in the middle of the run.
func (s *system) cpuProfileTop(ctx context.Context, d time.Duration) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command on PATH for go tool pprof")
	}
	load := make(chan error, 1)
	go func() {
		_, err := s.logbench(ctx, d+2*time.Minute, "--target", s.logdist.fields["listen"], "--conns", strconv.Itoa(s.cfg.conns),
			"--window", strconv.Itoa(s.cfg.window), "--duration", (d + 6*time.Second).String())
		load <- err
	}()
	// logbench builds its packets first (about 2 s on 2 busy cores).
	select {
	case <-time.After(4 * time.Second):
	case err := <-load:
		return "", fmt.Errorf("load for the profile: %v", err)
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.logdist.fields["admin"], int(d.Seconds()))
	out, perr := runCmd(ctx, goBin, "tool", "pprof", "-top", "-nodecount=25", url)
	if err := <-load; err != nil && perr == nil {
		return "", fmt.Errorf("load for the profile: %v", err)
	}
	if perr != nil {
		return "", perr
	}
	return "go tool pprof -top " + url + "\n" + string(out), nil
}

// haproxyConfig is the HAProxy configuration of the haproxy path: TCP
// mode, round robin over the analyzers at weights 4/3/2/1 (weights ×
// 10), two threads, no health checks. tools/pipeline.sh runs the same
// (benchcmp --haproxy-config).
func haproxyConfig(bind string, analyzers []string) string {
	conf := fmt.Sprintf(`global
    maxconn 4096
    nbthread 2

defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m

frontend logbench
    bind %s
    default_backend analyzers

backend analyzers
    balance roundrobin
`, bind)
	for i, a := range analyzers {
		conf += fmt.Sprintf("    server a%d %s weight %d\n", i+1, a, int(weights[i]*10+0.5))
	}
	return conf
}

// tmpT lets tlstest write its files into a directory of the run, and
// fail the run (a certificate that cannot be made is a bug).
type tmpT struct{ dir string }

func (tmpT) Helper()           {}
func (t tmpT) TempDir() string { return t.dir }
func (tmpT) Fatal(args ...any) {
	panic(fmt.Sprint(append([]any{"benchcmp: making test certificates: "}, args...)...))
}

// startSink serves an OTLP/HTTP trace receiver that discards what it gets
// (its cost is the collector's, not logdist's) and returns its URL.
func (s *system) startSink() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	s.sink = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.sink.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}
