// Package e2e runs the real binaries — logdist and four analyzerd — as
// processes on 127.0.0.1 and drives them with the agent client library:
// the original design's integration scenarios, made strict.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/proxy/status"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type analyzerProc struct {
	*proc
	name   string
	listen string
	admin  string
	out    string
	extra  []string // more analyzerd flags (--delay 5ms)
}

type analyzerStats struct {
	Name       string `json:"name"`
	Packets    uint64 `json:"packets"`
	Messages   uint64 `json:"messages"`
	Duplicates uint64 `json:"duplicates"`
}

func (a *analyzerProc) stats(t *testing.T) analyzerStats {
	var s analyzerStats
	getJSON(t, "http://"+a.admin+"/stats", &s)
	return s
}

// analyzerRow is one row of logdist's GET /api/v1/analyzers.
type analyzerRow = status.Analyzer

type cluster struct {
	t         *testing.T
	dir       string
	weights   []float64
	analyzers []*analyzerProc
	logdist   *proc
	listen    string
	admin     string
	// ldArgs are the flags logdist was started with (listen: port 0),
	// for a second instance or a restart (startLogdist).
	ldArgs []string
}

// newCluster starts len(weights) analyzerd and a logdist over them.
func newCluster(t *testing.T, weights []float64, logdistArgs ...string) *cluster {
	return newClusterWith(t, weights, nil, logdistArgs...)
}

// newClusterWith is newCluster with analyzerArgs added to every analyzerd.
func newClusterWith(t *testing.T, weights []float64, analyzerArgs []string, logdistArgs ...string) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), weights: weights}
	for i := range weights {
		c.analyzers = append(c.analyzers, &analyzerProc{name: fmt.Sprintf("a%d", i+1), listen: "127.0.0.1:0", extra: analyzerArgs})
		c.startAnalyzer(i)
	}
	args := []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--syslog-udp", "127.0.0.1:0", "--loops", "2",
		"--heartbeat-interval", "100ms", "--heartbeat-timeout", "400ms",
		"--breaker-backoff", "100ms", "--breaker-max-backoff", "300ms", "--log-level", "warn"}
	for i, a := range c.analyzers {
		args = append(args, "--analyzer", fmt.Sprintf("name=%s,addr=%s,weight=%g", a.name, a.listen, weights[i]))
	}
	args = append(args, logdistArgs...)
	c.ldArgs = args
	c.logdist = start(t, binary(t, "logdist"), args...)
	c.listen, c.admin = c.logdist.fields["listen"], c.logdist.fields["admin"]
	c.waitHealthy()
	return c
}

// waitHealthy waits until every analyzer logdist has is healthy.
func (c *cluster) waitHealthy() {
	c.t.Helper()
	waitFor(c.t, "every analyzer healthy", 10*time.Second, func() bool {
		for _, r := range c.rows() {
			if !r.Healthy {
				return false
			}
		}
		return true
	})
}

// startAnalyzer (re)starts analyzer i on its address, appending to its
// JSON-lines file.
func (c *cluster) startAnalyzer(i int) {
	a := c.analyzers[i]
	a.out = filepath.Join(c.dir, a.name+".jsonl")
	a.proc = start(c.t, binary(c.t, "analyzerd"), append([]string{"--name", a.name, "--listen", a.listen, "--admin", "127.0.0.1:0", "--out", a.out, "--log-level", "warn"}, a.extra...)...)
	a.listen, a.admin = a.fields["listen"], a.fields["admin"]
}

// downEvent returns the event logdist logged as the cause when it last
// marked the named analyzer down.
func (c *cluster) downEvent(name string) string {
	ev := ""
	for _, line := range strings.Split(c.logdist.logs(), "\n") {
		if strings.Contains(line, `msg="analyzer down"`) && strings.Contains(line, " analyzer="+name+" ") {
			if _, rest, ok := strings.Cut(line, " event="); ok {
				ev, _, _ = strings.Cut(rest, " ")
			}
		}
	}
	return ev
}

func (c *cluster) rows() []analyzerRow {
	var rows []analyzerRow
	getJSON(c.t, "http://"+c.admin+"/api/v1/analyzers", &rows)
	return rows
}

func (c *cluster) row(name string) analyzerRow {
	for _, r := range c.rows() {
		if r.Name == name {
			return r
		}
	}
	c.t.Fatalf("analyzer %s not in the admin API", name)
	return analyzerRow{}
}

// outLine is one message an analyzerd wrote with --out.
type outLine struct {
	Agent    string `json:"agent"`
	PacketID uint64 `json:"packet_id"`
	Msg      string `json:"msg"`
}

// eachOut calls fn with every message every analyzer wrote.
func (c *cluster) eachOut(fn func(outLine)) {
	for _, a := range c.analyzers {
		f, err := os.Open(a.out)
		if err != nil {
			c.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line outLine
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				c.t.Fatalf("%s: bad JSON line %q: %v", a.out, sc.Text(), err)
			}
			fn(line)
		}
		f.Close()
	}
}

// received reads every analyzer's JSON lines: packet id → message bodies.
func (c *cluster) received() map[uint64]int {
	got := map[uint64]int{}
	c.eachOut(func(l outLine) { got[l.PacketID]++ })
	return got
}

// agent wraps the client library, one message per packet, recording the
// packet ids acknowledged.
type agent struct {
	*client.Client
	mu       sync.Mutex
	acked    map[uint64]bool
	firstErr error // the first packet that resolved with an error
}

// failure returns the first error a packet resolved with, or nil.
func (a *agent) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.firstErr
}

func newAgent(t *testing.T, addr, id string) *agent {
	return newAgentWith(t, addr, id, nil)
}

type clientConfig = client.Config

// newAgentWith is newAgent with edit applied to the client's config.
func newAgentWith(t *testing.T, addr, id string, edit func(*clientConfig)) *agent {
	a := &agent{acked: map[uint64]bool{}}
	cfg := client.DefaultConfig()
	cfg.Addrs = []string{addr}
	cfg.AgentID = id
	cfg.BatchMessages = 1
	cfg.Window = 128
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.OnResult = func(r client.Result) {
		a.mu.Lock()
		if r.Err == nil {
			a.acked[r.PacketID] = true
		} else if a.firstErr == nil {
			a.firstErr = r.Err
		}
		a.mu.Unlock()
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Client = c
	t.Cleanup(func() { c.Close() })
	return a
}

func (a *agent) send(t *testing.T, n int, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		m := frame.Message{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, Facility: 1,
			Hostname: []byte("e2e-host"), App: []byte("e2e"), Body: []byte(fmt.Sprintf("%s %d", body, i))}
		if err := a.Send(ctx, m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

func (a *agent) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (stats %+v)", err, a.Stats())
	}
	// Flush returns once OnResult has run for every packet it waited
	// for (frame/client promises it), so ackedIDs is complete here.
}

func (a *agent) ackedIDs() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]uint64, 0, len(a.acked))
	for id := range a.acked {
		ids = append(ids, id)
	}
	return ids
}

// checkNoLoss fails if a packet the agent saw acknowledged is at no
// analyzer.
func (c *cluster) checkNoLoss(a *agent) {
	c.t.Helper()
	got := c.received()
	lost := 0
	for _, id := range a.ackedIDs() {
		if got[id] == 0 {
			lost++
		}
	}
	if lost > 0 {
		c.t.Fatalf("%d of %d acknowledged packets are at no analyzer", lost, len(a.ackedIDs()))
	}
}

// 1. A packet sent with the client arrives intact and is acked back.
func TestEndToEnd(t *testing.T) {
	c := newCluster(t, []float64{1})
	ag := newAgent(t, c.listen, "agent-e2e")
	ctx := context.Background()
	m := frame.Message{Timestamp: 1764115200123456789, Severity: frame.SevWarning, Facility: 4,
		Hostname: []byte("web-7"), App: []byte("nginx"), Body: []byte("GET /checkout 502 upstream timed out"),
		Attrs: []frame.Attr{{Key: []byte("req"), Value: []byte("a1b2")}}}
	if err := ag.Send(ctx, m); err != nil {
		t.Fatal(err)
	}
	ag.flush(t)
	if st := ag.Stats(); st.PacketsAcked != 1 {
		t.Fatalf("client stats %+v, want 1 packet acked", st)
	}
	b, err := os.ReadFile(c.analyzers[0].out)
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		Agent, Severity, Host, App, Msg, TS string
		Facility                            int
		Attrs                               map[string]string
	}
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatalf("analyzer wrote %q: %v", b, err)
	}
	if line.Agent != "agent-e2e" || line.Severity != "warning" || line.Facility != 4 || line.Host != "web-7" ||
		line.App != "nginx" || line.Msg != string(m.Body) || line.Attrs["req"] != "a1b2" || line.TS != "2025-11-26T00:00:00.123456789Z" {
		t.Fatalf("analyzer got %+v", line)
	}
}

// 2. 10,000 packets over 0.4/0.3/0.2/0.1: each analyzer's count, from its
// own /stats, is exact to within the two event loops' cursors.
func TestWeights(t *testing.T) {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	c := newCluster(t, weights)
	ag := newAgent(t, c.listen, "agent-w")
	const n = 10000
	ag.send(t, n, "weights")
	ag.flush(t)
	var total uint64
	for i, a := range c.analyzers {
		st := a.stats(t)
		total += st.Packets
		want := weights[i] * n
		if d := math.Abs(float64(st.Packets) - want); d > 0.01*want {
			t.Errorf("%s: %d packets, want %.0f within 1%%", a.name, st.Packets, want)
		} else {
			t.Logf("%s: %d packets (want %.0f, off by %.0f)", a.name, st.Packets, want, d)
		}
	}
	if total != n {
		t.Errorf("analyzers hold %d unique packets, want %d", total, n)
	}
}

// 3 and 4. kill -9 an analyzer mid-stream: marked down within a second,
// gets nothing while down, zero loss; restarted, it is healthy again, slow
// start ramps it, and its share returns to its weight.
func TestKillAndRecover(t *testing.T) {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	c := newCluster(t, weights, "--slow-start", "1s")
	ag := newAgent(t, c.listen, "agent-k")
	ag.send(t, 1000, "before")
	victim := c.analyzers[2]
	victim.signal(syscall.SIGKILL)
	took := waitFor(t, "a3 marked down", 10*time.Second, func() bool { return !c.row("a3").Healthy })
	t.Logf("a3 marked down %v after SIGKILL", took)
	// Down because its connections were lost and refused, not after
	// heartbeats went unanswered: the behaviour, not a wall-clock bound,
	// which a loaded machine can miss.
	if ev := c.downEvent("a3"); ev != "write-error" && ev != "connect-failed" {
		t.Errorf("a3 marked down on %q, want on its lost connections (write-error or connect-failed)", ev)
	}
	pickedAtDown := c.row("a3").Packets
	ag.send(t, 2000, "during")
	ag.flush(t)
	if p := c.row("a3").Packets; p != pickedAtDown {
		t.Errorf("a3 was picked %d times while down", p-pickedAtDown)
	}
	c.checkNoLoss(ag)

	// Recovery: restart on the same port.
	c.startAnalyzer(2)
	waitFor(t, "a3 healthy again", 10*time.Second, func() bool { return c.row("a3").Healthy })
	minEff := c.row("a3").EffectiveWeight
	waitFor(t, "a3 ramped to its full weight", 10*time.Second, func() bool {
		r := c.row("a3")
		minEff = min(minEff, r.EffectiveWeight)
		return r.EffectiveWeight == r.Weight
	})
	waitFor(t, "every loop connected to a3 again", 10*time.Second, func() bool { return c.row("a3").Connections >= 2 })
	if minEff >= weights[2] {
		t.Errorf("a3 came back at full weight %v: no slow start seen", minEff)
	}
	t.Logf("slow start: a3 seen at effective weight %v of %v", minEff, weights[2])
	before := map[string]uint64{}
	for _, r := range c.rows() {
		before[r.Name] = r.Packets
	}
	const n = 4000
	ag.send(t, n, "after")
	ag.flush(t)
	for i, r := range c.rows() {
		got := float64(r.Packets-before[r.Name]) / n
		if math.Abs(got-weights[i]) > 0.01 {
			t.Errorf("after recovery %s got share %.4f, want %.2f", r.Name, got, weights[i])
		}
	}
	c.checkNoLoss(ag)
}

// 3b. An analyzer that hangs (SIGSTOP) is marked down within
// fall × heartbeat-interval + heartbeat-timeout, and nothing is lost.
func TestHungAnalyzer(t *testing.T) {
	c := newCluster(t, []float64{1, 1})
	ag := newAgent(t, c.listen, "agent-h")
	ag.send(t, 200, "before")
	ag.flush(t)
	c.analyzers[1].signal(syscall.SIGSTOP)
	defer c.analyzers[1].signal(syscall.SIGCONT)
	took := waitFor(t, "a2 marked down", 10*time.Second, func() bool { return !c.row("a2").Healthy })
	t.Logf("a2 marked down %v after SIGSTOP (fall × interval + timeout is %v)", took, 3*100*time.Millisecond+400*time.Millisecond)
	// A hung analyzer keeps its connections: it is marked down by its
	// missed heartbeats (or the ack timeout), not by a connection error.
	if ev := c.downEvent("a2"); ev != "heartbeat-missed" && ev != "ack-timeout" {
		t.Errorf("a2 marked down on %q, want on missed heartbeats", ev)
	}
	ag.send(t, 500, "during")
	ag.flush(t)
	c.checkNoLoss(ag)
}

// 6. Every analyzer down: agents get BUSY, not errors or silent drops;
// bring one back and every acked packet arrives.
func TestAllDown(t *testing.T) {
	c := newCluster(t, []float64{1, 1}, "--queue-max-packets", "50")
	for _, a := range c.analyzers {
		a.kill()
	}
	waitFor(t, "both marked down", 5*time.Second, func() bool {
		for _, r := range c.rows() {
			if r.Healthy {
				return false
			}
		}
		return true
	})
	ag := newAgent(t, c.listen, "agent-d")
	ag.send(t, 300, "while down")
	waitFor(t, "BUSY at the client", 10*time.Second, func() bool { return ag.Stats().Busy > 0 })
	if st := ag.Stats(); st.PacketsRejected != 0 {
		t.Fatalf("packets rejected while analyzers were down: %+v", st)
	}
	c.startAnalyzer(0)
	ag.flush(t)
	if st := ag.Stats(); st.PacketsAcked != 300 {
		t.Fatalf("client stats %+v, want 300 acked", st)
	}
	c.checkNoLoss(ag)
}

// SIGTERM: logdist drains and exits 0; bad flags exit 2 with one line.
func TestSignalsAndFlags(t *testing.T) {
	c := newCluster(t, []float64{1})
	ag := newAgent(t, c.listen, "agent-s")
	ag.send(t, 100, "x")
	ag.flush(t)
	c.logdist.signal(syscall.SIGTERM)
	if code := c.logdist.wait(15 * time.Second); code != 0 {
		t.Fatalf("logdist exited %d after SIGTERM\n%s", code, c.logdist.logs())
	}
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--analyzer", "name=a,addr=nohostport"},
		{"--analyzer", "name=a,addr=127.0.0.1:1,weight=-1"},
		{"--balance", "fastest", "--analyzer", "addr=127.0.0.1:1"},
		{"--analyzer", "addr=127.0.0.1:1", "--admin", "256.0.0.1:99999"},
	} {
		p := startNoReady(t, binary(t, "logdist"), args...)
		if code := p.wait(10 * time.Second); code != 2 {
			t.Errorf("logdist %v exited %d, want 2\n%s", args, code, p.logs())
		}
		if lines := p.logs(); len(lines) == 0 || countLines(lines) != 1 {
			t.Errorf("logdist %v printed %q, want one line", args, lines)
		}
	}
}

func countLines(s string) int {
	n := 0
	for _, c := range s {
		if c == '\n' {
			n++
		}
	}
	return n
}

// sendPaced sends rate packets/s (in bursts every 10 ms), bodies label and
// a counter, until ctx ends; it reports on t if Send fails before that.
// Run it on its own goroutine; wg is done when it returns.
func (a *agent) sendPaced(ctx context.Context, t *testing.T, wg *sync.WaitGroup, rate int, label string) {
	defer wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range rate / 100 {
			if err := a.Send(ctx, frame.Message{Timestamp: time.Now().UnixNano(), Body: []byte(label + " " + strconv.Itoa(n))}); err != nil {
				if ctx.Err() == nil {
					t.Errorf("agent stopped sending: %v", err)
				}
				return
			}
			n++
		}
	}
}

// ackRates samples a's acknowledged count every 100 ms for d and returns
// the acknowledgements in each interval.
func (a *agent) ackRates(t *testing.T, d time.Duration) []uint64 {
	var out []uint64
	last := a.Stats().PacketsAcked
	for end := time.Now().Add(d); time.Now().Before(end); {
		next := time.Now().Add(100 * time.Millisecond)
		waitFor(t, "the next 100 ms", time.Second, func() bool { return !time.Now().Before(next) })
		now := a.Stats().PacketsAcked
		out = append(out, now-last)
		last = now
	}
	return out
}
