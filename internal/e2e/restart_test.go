package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/bench"
	"github.com/logdist/logdist/frame"
)

// freeTCPPort returns a port nothing listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// After kill -9 logdist binds its agent port again at once, though the
// dead process's connections left the port's sockets in TIME_WAIT (it
// took about 60 s without SO_REUSEADDR: a supervisor's 1 s restart was a
// minute's outage). Five times: agents connected, kill -9, restart within
// a second.
func TestRestartAfterKillBindsAtOnce(t *testing.T) {
	c := newCluster(t, []float64{1})
	an := c.analyzers[0].listen
	agentPort, tcpPort := strconv.Itoa(freeTCPPort(t)), strconv.Itoa(freeTCPPort(t))
	args := []string{"--listen", "127.0.0.1:" + agentPort, "--syslog-tcp", "127.0.0.1:" + tcpPort, "--syslog-udp", "",
		"--admin", "", "--analyzer", "name=a1,addr=" + an, "--log-level", "warn"}
	for round := 1; round <= 5; round++ {
		p := start(t, binary(t, "logdist"), args...)
		// Connections the kill will close from logdist's side: their
		// sockets end in TIME_WAIT on logdist's ports.
		var conns []net.Conn
		for _, port := range []string{agentPort, agentPort, tcpPort} {
			nc, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, nc)
		}
		if _, err := conns[0].Write(frame.AppendHello(nil, &frame.Hello{Window: 8, MaxFrame: 1 << 20, AgentID: []byte("restart")})); err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, frame.HeaderSize)
		if _, err := io.ReadFull(conns[0], hdr); err != nil {
			t.Fatalf("round %d: no WELCOME: %v", round, err)
		}
		p.kill()
		killed := time.Now()
		for _, nc := range conns { // read the FIN, then close: logdist's side is in TIME_WAIT
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, nc)
			nc.Close()
		}
		began := time.Now()
		q := start(t, binary(t, "logdist"), args...) // fails at once on "address already in use"
		d := time.Since(began)
		t.Logf("round %d: restarted %v after kill -9, ready %v later", round, began.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))
		// Its start-up takes ~100 ms; the bound leaves room for a loaded CI
		// machine without letting a 60 s TIME_WAIT wait through.
		if d > 3*time.Second {
			t.Fatalf("round %d: logdist took %v to be ready again after kill -9", round, d)
		}
		if round == 5 { // SO_REUSEADDR does not let a second logdist share a live port
			other := startNoReady(t, binary(t, "logdist"), args...)
			if code := other.wait(10 * time.Second); code == 0 || !strings.Contains(other.logs(), "address already in use") {
				t.Fatalf("a second logdist on a live port: exit %d\n%s", code, other.logs())
			}
		}
		q.kill() // the next round starts a fresh one on the same ports
	}
}

// A slow analyzer that is alive is not a dead one: four analyzerd taking
// 5 ms per packet, loaded past what they can take at 2,500 packets/s (one
// connection each: --loops 1), with logdist's tight test heartbeats (100
// ms, timeout 400 ms). None is marked
// down, no connection is lost, nothing is re-dispatched (the only way
// logdist makes a duplicate; analyzerd's own duplicate count means nothing
// here, logbench cycling a pool of packets whose ids repeat). Before
// frame/server answered during a backlog, a4 went down here (33 missed
// heartbeats, 10 connections lost, 2,331 packets re-dispatched).
func TestSlowAnalyzerIsNotDead(t *testing.T) {
	c := newClusterWith(t, []float64{0.4, 0.3, 0.2, 0.1}, []string{"--delay", "5ms"}, "--loops", "1")
	// Small packets (one 50-byte message): many fit in the analyzer's read
	// buffer, which is what kept it silent.
	out, err := exec.Command(binary(t, "logbench"), "--target", c.listen, "--conns", "4", "--window", "64", "--msgs-per-packet", "1", "--msg-size", "50",
		"--rate", "2500", "--duration", "3s", "--json", "-q").Output()
	var res bench.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("logbench: %v %v\n%s", err, jerr, out)
	}
	t.Logf("logbench: %d sent, %d acked, %.0f packets/s, p99 %.1f ms, %d BUSY", res.PacketsSent, res.PacketsAcked, res.PacketsPerSec, res.LatencyMs.P99, res.Busy)
	for _, a := range c.analyzers {
		if ev := c.downEvent(a.name); ev != "" {
			t.Errorf("%s marked down (%s) while alive and answering", a.name, ev)
		}
	}
	m := metricsText(t, c.admin)
	t.Logf("hedged: %v", sumMetric(m, "logdist_hedged_packets_total"))
	for _, name := range []string{"logdist_upstream_connections_lost_total", "logdist_redispatched_packets_total", "logdist_upstream_heartbeats_missed_total"} {
		if v := sumMetric(m, name); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
	for _, a := range c.analyzers {
		if d := a.stats(t).Duplicates; d != 0 {
			t.Errorf("%s counted %d duplicates with nothing re-dispatched, want 0", a.name, d)
		}
	}
}

// slowScenario runs the slow-analyzer load (logbench as in
// TestSlowAnalyzerIsNotDead) against c and returns logbench's result.
func slowScenario(t *testing.T, c *cluster) bench.Result {
	t.Helper()
	out, err := exec.Command(binary(t, "logbench"), "--target", c.listen, "--conns", "4", "--window", "64", "--msgs-per-packet", "1", "--msg-size", "50",
		"--rate", "2500", "--duration", "3s", "--json", "-q").Output()
	var res bench.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("logbench: %v %v\n%s", err, jerr, out)
	}
	return res
}

// The slow-analyzer scenario with analyzerd --concurrency 8: each of the
// four, still taking 5 ms per packet, handles 8 packets of its one
// connection at once (1,600 packets/s where one at a time capped it at
// 200), so it keeps up with its share of 2,500 packets/s. Beyond what
// TestSlowAnalyzerIsNotDead asks (none down, nothing lost or
// re-dispatched), latency is the analyzer's own: p99 within 3 × 5 ms of
// the p99 of the same load on the same kind of cluster without the delay,
// measured first in this test (so the allowance for "normal latency"
// follows the machine, -race or a loaded CI runner included).
func TestSlowAnalyzerWithConcurrency(t *testing.T) {
	const delay = 5 * time.Millisecond
	fast := newClusterWith(t, []float64{0.4, 0.3, 0.2, 0.1}, nil, "--loops", "1")
	c := newClusterWith(t, []float64{0.4, 0.3, 0.2, 0.1}, []string{"--delay", delay.String(), "--concurrency", "8"}, "--loops", "1")
	// The latency bound is measured against the p99 of the same load
	// without the delay, taken just before. On a shared runner one 3 s
	// run can catch a burst of other work in either half: the pair is
	// measured up to three times, and the bound must hold in one of them
	// (every other check holds in all).
	var why []string
	for attempt := 1; attempt <= 3; attempt++ {
		normal := slowScenario(t, fast)
		t.Logf("attempt %d, no delay: %d sent, %d acked, %.0f packets/s, p50 %.1f ms, p99 %.1f ms", attempt, normal.PacketsSent, normal.PacketsAcked, normal.PacketsPerSec, normal.LatencyMs.P50, normal.LatencyMs.P99)
		res := slowScenario(t, c)
		t.Logf("attempt %d, --delay 5ms --concurrency 8: %d sent, %d acked, %.0f packets/s, p50 %.1f ms, p99 %.1f ms, %d BUSY", attempt, res.PacketsSent, res.PacketsAcked, res.PacketsPerSec, res.LatencyMs.P50, res.LatencyMs.P99, res.Busy)
		for _, a := range c.analyzers {
			if ev := c.downEvent(a.name); ev != "" {
				t.Fatalf("%s marked down (%s) while alive and answering", a.name, ev)
			}
		}
		m := metricsText(t, c.admin)
		for _, name := range []string{"logdist_upstream_connections_lost_total", "logdist_redispatched_packets_total",
			"logdist_upstream_heartbeats_missed_total", "logdist_hedged_packets_total"} {
			if v := sumMetric(m, name); v != 0 {
				t.Fatalf("%s = %v, want 0", name, v)
			}
		}
		if res.Errors != 0 || res.Busy != 0 || res.Unresolved != 0 {
			t.Fatalf("logbench: %d errors, %d BUSY, %d unresolved; want none", res.Errors, res.Busy, res.Unresolved)
		}
		// Keeping up: the schedule was met (a capacity-bound run acks far fewer).
		if res.PacketsScheduled > 0 && float64(res.PacketsAcked) < 0.95*float64(res.PacketsScheduled) {
			t.Fatalf("%d packets acked of %d scheduled: the analyzers did not keep up", res.PacketsAcked, res.PacketsScheduled)
		}
		limit := 3*float64(delay.Milliseconds()) + normal.LatencyMs.P99
		t.Logf("attempt %d: p99 %.1f ms; allowed 3 × %s + normal p99 %.1f ms = %.1f ms", attempt, res.LatencyMs.P99, delay, normal.LatencyMs.P99, limit)
		if res.LatencyMs.P99 <= limit {
			return
		}
		why = append(why, fmt.Sprintf("p99 %.1f ms > %.1f ms", res.LatencyMs.P99, limit))
	}
	t.Errorf("p99 with a %s analyzer above 3 × delay + the p99 without delay in every attempt: %s", delay, strings.Join(why, "; "))
}

// sumMetric adds up a metric's series in a /metrics text.
func sumMetric(text, name string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// One analyzer SIGSTOPped under load, logdist's default heartbeats (500 ms,
// timeout 1 s), an agent sending 5,000 packets/s: its acknowledgement
// rate stays above half its normal rate but for at most 300 ms (the hung
// analyzer's packets are copied to the others once it has been silent
// 150 ms, and it gets no new ones), where it used to stop for the whole
// detection time. Nothing
// acknowledged is lost.
func TestStoppedAnalyzerDoesNotStallAgents(t *testing.T) {
	c := newCluster(t, []float64{0.4, 0.3, 0.2, 0.1}, "--heartbeat-interval", "500ms", "--heartbeat-timeout", "1s")
	ag := newAgentWith(t, c.listen, "steady", func(cfg *clientConfig) { cfg.Window = 64; cfg.Compress = false })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go ag.sendPaced(ctx, t, &wg, 5000, "steady")
	waitFor(t, "traffic", 10*time.Second, func() bool { return ag.Stats().PacketsAcked > 2000 })
	var normal uint64
	before := ag.ackRates(t, time.Second)
	for _, r := range before {
		normal += r
	}
	normal /= uint64(len(before))
	c.analyzers[0].signal(syscall.SIGSTOP)
	after := ag.ackRates(t, 3*time.Second)
	c.analyzers[0].signal(syscall.SIGCONT)
	cancel()
	wg.Wait()
	run, worst := 0, 0
	for _, r := range after {
		if r*2 < normal {
			run++
			worst = max(worst, run)
		} else {
			run = 0
		}
	}
	t.Logf("acks per 100 ms: normal %d; after SIGSTOP of a1 (weight 0.4): %v", normal, after)
	if worst > 3 {
		t.Errorf("acknowledgements below half their normal rate for %d00 ms in a row; want at most 300 ms", worst)
	}
	ag.flush(t)
	c.checkNoLoss(ag)
	t.Logf("copied from the stopped analyzer: %v", sumMetric(metricsText(t, c.admin), "logdist_hedged_packets_total"))
}
