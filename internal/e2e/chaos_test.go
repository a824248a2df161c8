package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The chaos suite: four analyzerd (0.4/0.3/0.2/0.1) behind Toxiproxy
// (in-process, one proxy per analyzer), logdist in front, two agents
// sending 1,000 packets/s each with unique ids. Each scenario injects a
// fault for faultFor, heals it, runs on for afterFor, then checks that
// every acknowledged packet is at an analyzer, and reports duplicates,
// detection time, the longest stretch without acknowledgements, recovery
// time and the shares over the last 1.5 s (a recovered analyzer ramps back
// over --slow-start, 1 s here): one row of docs/RELIABILITY.md. The
// timeline is sampled every 50 ms.
//
// make test runs the short subset; make chaos (LOGDIST_CHAOS=full) runs
// every scenario and writes the table to $LOGDIST_CHAOS_OUT.

type chaosEnv struct {
	c      *cluster
	tox    []*toxiproxy.Proxy
	ldArgs []string
	agents []*agent
}

type scenario struct {
	name string
	// target is the analyzer hurt (for detection and recovery), "" for
	// none or several.
	target string
	fault  func(t *testing.T, e *chaosEnv)
	heal   func(t *testing.T, e *chaosEnv)
	short  bool // in make test's subset
}

const (
	chaosRate = 1000 // packets/s per agent
	faultFor  = 3 * time.Second
	afterFor  = 3 * time.Second
)

func toxic(t *testing.T, p *toxiproxy.Proxy, js string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("toxic %s: %v", js, err)
	}
}

func clearToxics(p *toxiproxy.Proxy) { p.Toxics.ResetToxics(context.Background()) }

func idx(name string) int { return int(name[1] - '1') }

func scenarios() []scenario {
	sig := func(name string, s syscall.Signal) func(*testing.T, *chaosEnv) {
		return func(t *testing.T, e *chaosEnv) { e.c.analyzers[idx(name)].signal(s) }
	}
	kill := func(names ...string) func(*testing.T, *chaosEnv) {
		return func(t *testing.T, e *chaosEnv) {
			for _, n := range names {
				e.c.analyzers[idx(n)].kill()
			}
		}
	}
	restart := func(names ...string) func(*testing.T, *chaosEnv) {
		return func(t *testing.T, e *chaosEnv) {
			for _, n := range names {
				e.c.startAnalyzer(idx(n))
			}
		}
	}
	both := func(name, js string) func(*testing.T, *chaosEnv) {
		return func(t *testing.T, e *chaosEnv) {
			for _, stream := range []string{"upstream", "downstream"} {
				toxic(t, e.tox[idx(name)], strings.ReplaceAll(js, "STREAM", stream))
			}
		}
	}
	heal := func(name string) func(*testing.T, *chaosEnv) {
		return func(t *testing.T, e *chaosEnv) { clearToxics(e.tox[idx(name)]) }
	}
	var starving sync.WaitGroup
	var stopStarve chan struct{}
	return []scenario{
		{name: "kill -9 one analyzer (a2), restart it", target: "a2", fault: kill("a2"), heal: restart("a2"), short: true},
		{name: "kill -9 two analyzers at once (a1, a3), restart them", fault: kill("a1", "a3"), heal: restart("a1", "a3")},
		{name: "network partition of a1 (black hole both ways)", target: "a1", short: true,
			fault: both("a1", `{"name":"hole-STREAM","type":"timeout","stream":"STREAM","attributes":{"timeout":0}}`), heal: heal("a1")},
		{name: "slow network to a2 (100 ms ± 20 ms latency)", target: "a2",
			fault: both("a2", `{"name":"lat-STREAM","type":"latency","stream":"STREAM","attributes":{"latency":100,"jitter":20}}`), heal: heal("a2")},
		{name: "narrow link to a1 (64 KB/s towards it)", target: "a1",
			fault: func(t *testing.T, e *chaosEnv) {
				toxic(t, e.tox[0], `{"name":"bw","type":"bandwidth","stream":"upstream","attributes":{"rate":64}}`)
			}, heal: heal("a1")},
		{name: "packet slicing to a3 (64-byte segments, 1 ms apart)", target: "a3",
			fault: func(t *testing.T, e *chaosEnv) {
				toxic(t, e.tox[2], `{"name":"slice","type":"slicer","stream":"upstream","attributes":{"average_size":64,"size_variation":32,"delay":1000}}`)
			}, heal: heal("a3")},
		{name: "connections to a4 reset (proxy down, then up)", target: "a4",
			fault: func(t *testing.T, e *chaosEnv) { e.tox[3].Stop() },
			heal: func(t *testing.T, e *chaosEnv) {
				if err := e.tox[3].Start(); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "hung analyzer (SIGSTOP a1)", target: "a1", fault: sig("a1", syscall.SIGSTOP), heal: sig("a1", syscall.SIGCONT), short: true},
		{name: "CPU-starved analyzer (a2 stopped 40 ms of every 50)", target: "a2",
			fault: func(t *testing.T, e *chaosEnv) {
				stopStarve = make(chan struct{})
				p := e.c.analyzers[1]
				starving.Add(1)
				go func() {
					defer starving.Done()
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for i := 0; ; i++ {
						select {
						case <-stopStarve:
							p.signal(syscall.SIGCONT)
							return
						case <-tick.C:
						}
						switch i % 5 {
						case 0:
							p.signal(syscall.SIGSTOP)
						case 4:
							p.signal(syscall.SIGCONT)
						}
					}
				}()
			},
			heal: func(t *testing.T, e *chaosEnv) { close(stopStarve); starving.Wait() }},
		{name: "logdist kill -9, restarted at once", short: true,
			fault: func(t *testing.T, e *chaosEnv) {
				e.c.logdist.kill()
				e.c.logdist = start(t, binary(t, "logdist"), e.ldArgs...)
			}, heal: func(*testing.T, *chaosEnv) {}},
		{name: "logdist SIGTERM (drain), restarted",
			fault: func(t *testing.T, e *chaosEnv) {
				e.c.logdist.signal(syscall.SIGTERM)
				e.c.logdist.wait(30 * time.Second)
				e.c.logdist = start(t, binary(t, "logdist"), e.ldArgs...)
			}, heal: func(*testing.T, *chaosEnv) {}},
		{name: "every analyzer down, then back", fault: kill("a1", "a2", "a3", "a4"), heal: restart("a1", "a2", "a3", "a4")},
	}
}

func TestChaos(t *testing.T) {
	full := os.Getenv("LOGDIST_CHAOS") == "full"
	rows := []string{
		"| scenario | acked | lost | duplicates | detected down after | longest stretch without acks | healthy again after heal | shares after (a1 a2 a3 a4; weights .4 .3 .2 .1) |",
		"|---|---:|---:|---:|---:|---:|---:|---|",
	}
	for _, sc := range scenarios() {
		if !full && !sc.short {
			continue
		}
		t.Run(sc.name, func(t *testing.T) { rows = append(rows, runScenario(t, sc)) })
	}
	table := strings.Join(rows, "\n") + "\n"
	t.Logf("chaos table:\n%s", table)
	if out := os.Getenv("LOGDIST_CHAOS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runScenario(t *testing.T, sc scenario) string {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	c := &cluster{t: t, dir: t.TempDir(), weights: weights}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	e := &chaosEnv{c: c}
	for i := range weights {
		c.analyzers = append(c.analyzers, &analyzerProc{name: fmt.Sprintf("a%d", i+1), listen: "127.0.0.1:0"})
		c.startAnalyzer(i)
		p := toxiproxy.NewProxy(srv, c.analyzers[i].name, "127.0.0.1:0", c.analyzers[i].listen)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		e.tox = append(e.tox, p)
	}
	e.ldArgs = []string{"--listen", "127.0.0.1:" + fmt.Sprint(freeTCPPort(t)), "--admin", "127.0.0.1:" + fmt.Sprint(freeTCPPort(t)),
		"--syslog-udp", "", "--loops", "2", "--heartbeat-interval", "100ms", "--heartbeat-timeout", "400ms",
		"--breaker-backoff", "100ms", "--breaker-max-backoff", "300ms", "--slow-start", "1s", "--log-level", "warn"}
	for i, p := range e.tox {
		e.ldArgs = append(e.ldArgs, "--analyzer", fmt.Sprintf("name=%s,addr=%s,weight=%g", c.analyzers[i].name, p.Listen, weights[i]))
	}
	c.logdist = start(t, binary(t, "logdist"), e.ldArgs...)
	c.listen, c.admin = c.logdist.fields["listen"], c.logdist.fields["admin"]
	c.waitHealthy()

	// Load: two agents, chaosRate packets/s each, unique ids.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		ag := newAgentWith(t, c.listen, fmt.Sprintf("chaos-%d", i), func(cfg *clientConfig) { cfg.Window = 256; cfg.MaxPending = 8 << 20; cfg.Block = true })
		e.agents = append(e.agents, ag)
		wg.Add(1)
		go ag.sendPaced(ctx, t, &wg, chaosRate, sc.name)
	}
	acked := func() (n uint64) {
		for _, a := range e.agents {
			n += a.Stats().PacketsAcked
		}
		return n
	}
	// The timeline: acknowledgements per 50 ms, and the target's health.
	type point struct {
		at      time.Time
		acked   uint64
		healthy bool
	}
	var (
		mu       sync.Mutex
		timeline []point
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				p := point{at: now, acked: acked(), healthy: true}
				if sc.target != "" {
					var rows []analyzerRow
					if getJSONQuiet("http://"+c.logdist.fields["admin"]+"/api/v1/analyzers", &rows) == nil {
						for _, r := range rows {
							if r.Name == sc.target {
								p.healthy = r.Healthy
							}
						}
					}
				}
				mu.Lock()
				timeline = append(timeline, p)
				mu.Unlock()
			}
		}
	}()
	pause := func(d time.Duration) {
		end := time.Now().Add(d)
		waitFor(t, "the scenario's next phase", d+time.Second, func() bool { return !time.Now().Before(end) })
	}
	waitFor(t, "traffic", 10*time.Second, func() bool { return acked() > 1000 })
	pause(time.Second)
	faultAt := time.Now()
	sc.fault(t, e)
	pause(faultFor)
	healAt := time.Now()
	sc.heal(t, e)
	c.listen, c.admin = c.logdist.fields["listen"], c.logdist.fields["admin"]
	pause(afterFor / 2)
	before := map[string]uint64{}
	for _, r := range c.rows() {
		before[r.Name] = r.Packets
	}
	pause(afterFor / 2)
	after := c.rows()
	cancel()
	wg.Wait()
	for _, a := range e.agents {
		a.flush(t)
	}

	// Loss and duplicates, by packet id across the analyzers.
	got := c.received()
	var total, lost int
	for _, a := range e.agents {
		for _, id := range a.ackedIDs() {
			total++
			if got[id] == 0 {
				lost++
			}
		}
	}
	dups := 0
	for _, n := range got {
		dups += max(n-1, 0)
	}
	if lost > 0 {
		t.Errorf("%s: %d of %d acknowledged packets are at no analyzer", sc.name, lost, total)
	}
	mu.Lock()
	defer mu.Unlock()
	detect, recover := "-", "-"
	if sc.target != "" {
		for _, p := range timeline {
			if p.at.After(faultAt) && !p.healthy {
				detect = p.at.Sub(faultAt).Round(10 * time.Millisecond).String()
				break
			}
		}
		if detect != "-" {
			recover = "not within " + afterFor.String()
			for i := len(timeline) - 1; i >= 0 && timeline[i].at.After(healAt) && timeline[i].healthy; i-- {
				recover = timeline[i].at.Sub(healAt).Round(10 * time.Millisecond).String()
			}
		} else {
			detect = "not marked down"
		}
	}
	var longest time.Duration
	for i, j := 0, 0; i < len(timeline); i = j {
		for j = i + 1; j < len(timeline) && timeline[j].acked == timeline[i].acked; j++ {
		}
		longest = max(longest, timeline[j-1].at.Sub(timeline[i].at))
	}
	var sum uint64
	for _, r := range after {
		sum += r.Packets - before[r.Name]
	}
	shares := make([]string, 0, len(after))
	slices.SortFunc(after, func(a, b analyzerRow) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range after {
		shares = append(shares, fmt.Sprintf("%.2f", float64(r.Packets-before[r.Name])/float64(max(sum, 1))))
	}
	stall := "< 50ms"
	if longest > 0 {
		stall = longest.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %s | %s | %s | %s |", sc.name, total, lost, dups, detect,
		stall, recover, strings.Join(shares, " "))
}

// getJSONQuiet is getJSON that returns its error instead of failing the
// test (logdist may be restarting).
func getJSONQuiet(url string, v any) error {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
