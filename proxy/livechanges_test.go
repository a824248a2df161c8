package proxy_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/proxy"
)

// agentLoad is an agent (the Go client) sending over a real socket, paced,
// and remembering which packets logdist acknowledged.
type agentLoad struct {
	c     *client.Client
	id    string
	mu    sync.Mutex
	acked map[uint64]bool
	// gate is held while a message is being sent; pausing takes it, so
	// that no Send is under way or starts once pause returns.
	gate   sync.Mutex
	paused bool
	stop   chan struct{}
	done   chan struct{}
}

func startAgentLoad(t *testing.T, addr, id string, perSecond int) *agentLoad {
	t.Helper()
	a := &agentLoad{id: id, acked: map[uint64]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	cfg := client.DefaultConfig()
	cfg.Addrs = []string{addr}
	cfg.AgentID = id
	cfg.BatchMessages = 4
	cfg.Linger = time.Millisecond
	cfg.Compress = false // zstd under -race would be most of the test's time
	cfg.Block = true
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	cfg.OnResult = func(r client.Result) {
		if r.Err == nil {
			a.mu.Lock()
			a.acked[r.PacketID] = true
			a.mu.Unlock()
		}
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	go func() {
		defer close(a.done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond)) // load pacing, not a test wait
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-a.stop:
				return
			case <-tick.C:
			}
			a.gate.Lock()
			if !a.paused {
				_ = c.Send(context.Background(), frame.Message{Body: []byte(fmt.Sprintf("%s message %d", id, i))})
			}
			a.gate.Unlock()
		}
	}()
	return a
}

func (a *agentLoad) pause(p bool) {
	a.gate.Lock()
	a.paused = p
	a.gate.Unlock()
}

// finish stops sending, waits for every packet to be resolved and closes.
func (a *agentLoad) finish(t *testing.T) {
	close(a.stop)
	<-a.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.c.Flush(ctx); err != nil {
		t.Errorf("agent %s: %v", a.id, err)
	}
	a.c.Close()
}

// The analyzer set changes while agents send over real sockets: analyzers
// are added, removed, re-weighted, drained, forced down and given new
// addresses, 200 times in a seeded random order. No acknowledged packet is
// lost, nothing panics, and after every change the shares over the next
// packets are those of the new weights, within the balancer's bound: for
// a window of picks that does not start at a snapshot's beginning, 2 per
// loop (balancer/doc.go).
func TestLiveAnalyzerChanges(t *testing.T) {
	const (
		changes = 200
		loops   = 2
		measure = 200 // packets per share check
	)
	rng := rand.New(rand.NewPCG(20261206, 11))
	var all []*analyzer
	nextName := 0
	newAnalyzer := func() *analyzer {
		nextName++
		a := startAnalyzer(t, fmt.Sprintf("a%d", nextName), "127.0.0.1:0")
		all = append(all, a)
		return a
	}
	var first []*analyzer
	for i := 0; i < 4; i++ {
		first = append(first, newAnalyzer())
	}
	s := startProxy(t, first, []float64{0.4, 0.3, 0.2, 0.1}, func(c *proxy.Config) {
		c.Loops = loops
		c.HeartbeatInterval = 50 * time.Millisecond
	})
	defer func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		for _, a := range all {
			a.srv.Close()
		}
	}()
	byName := map[string]*analyzer{}
	for _, a := range all {
		byName[a.name] = a
	}
	addr := s.Addr().String()
	agents := []*agentLoad{startAgentLoad(t, addr, "bg-1", 400), startAgentLoad(t, addr, "bg-2", 400)}

	mcfg := client.DefaultConfig()
	mcfg.Addrs = []string{addr}
	mcfg.AgentID = "measure"
	mcfg.BatchMessages = 1 // one packet per message: one pick each
	mcfg.Linger = 0
	mcfg.Compress = false
	mcfg.Block = true
	var measureAcked sync.Map
	mcfg.OnResult = func(r client.Result) {
		if r.Err == nil {
			measureAcked.Store(r.PacketID, true)
		}
	}
	meas, err := client.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer meas.Close()

	selectable := func(cfg proxy.Config) int {
		n := 0
		for _, a := range cfg.Analyzers {
			if a.Weight > 0 && (a.Admin == balancer.Enabled || a.Admin == balancer.ForcedUp) {
				n++
			}
		}
		return n
	}
	ops := map[string]int{}
	for change := 0; change < changes; {
		cfg := s.Config()
		i := rng.IntN(len(cfg.Analyzers))
		victim := cfg.Analyzers[i]
		var op string
		var err error
		switch k := rng.IntN(10); {
		case k < 2 && len(cfg.Analyzers) < 10:
			op = "add"
			a := newAnalyzer()
			byName[a.name] = a
			err = s.AddAnalyzer(proxy.AnalyzerConfig{Name: a.name, Addr: a.srv.Addr().String(), Weight: []float64{0.5, 1, 2, 3}[rng.IntN(4)]})
		case k < 4 && len(cfg.Analyzers) > 1:
			op = "remove"
			next := cfg
			next.Analyzers = append(append([]proxy.AnalyzerConfig(nil), cfg.Analyzers[:i]...), cfg.Analyzers[i+1:]...)
			if selectable(next) == 0 {
				continue
			}
			// Half the time it is removed with packets in flight: it holds
			// them until it has been removed, then answers.
			held := victim.Weight > 0 && victim.Admin == balancer.Enabled && rng.IntN(2) == 0
			if held {
				byName[victim.Name].hold()
				waitFor(t, victim.Name+" holding packets", 10*time.Second, func() bool { return inFlight(s, victim.Name) > 0 })
			}
			err = s.RemoveAnalyzer(victim.Name)
			if held {
				byName[victim.Name].release()
				ops["remove-in-flight"]++
			}
		case k < 7:
			op = "weight"
			w := []float64{0, 0.1, 1, 2.5, 4}[rng.IntN(5)]
			cfg.Analyzers[i].Weight = w
			if selectable(cfg) == 0 {
				continue
			}
			err = s.SetWeight(victim.Name, w)
		case k < 8:
			op = "admin"
			st := []balancer.AdminState{balancer.Enabled, balancer.Drained, balancer.ForcedDown}[rng.IntN(3)]
			cfg.Analyzers[i].Admin = st
			if selectable(cfg) == 0 {
				continue
			}
			err = s.SetAdmin(victim.Name, st)
		default:
			op = "readdress"
			a := startAnalyzer(t, victim.Name, "127.0.0.1:0")
			all = append(all, a)
			byName[victim.Name] = a
			cfg.Analyzers[i].Addr = a.srv.Addr().String()
			err = s.Reconfigure(cfg)
		}
		if err != nil {
			t.Fatalf("change %d (%s %s): %v", change, op, victim.Name, err)
		}
		ops[op]++
		change++
		checkShares(t, s, meas, agents, byName, loops, measure, fmt.Sprintf("after change %d (%s %s)", change, op, victim.Name))
	}
	t.Logf("changes: %v", ops)

	for _, a := range agents {
		a.finish(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := meas.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Zero acknowledged packets lost: every packet logdist acknowledged to
	// an agent is at some analyzer, removed ones included.
	have := func(key string) bool {
		for _, a := range all {
			if a.has(key) {
				return true
			}
		}
		return false
	}
	total, lost := 0, 0
	for _, ag := range agents {
		ag.mu.Lock()
		for id := range ag.acked {
			total++
			if !have(fmt.Sprintf("%s/%d", ag.id, id)) {
				lost++
			}
		}
		ag.mu.Unlock()
	}
	measureAcked.Range(func(k, _ any) bool {
		total++
		if !have(fmt.Sprintf("measure/%d", k.(uint64))) {
			lost++
		}
		return true
	})
	if lost > 0 || total < changes*measure {
		t.Fatalf("%d of %d acknowledged packets lost", lost, total)
	}
	t.Logf("%d acknowledged packets, none lost", total)
}

func inFlight(s *proxy.Server, name string) int {
	for _, a := range s.Status().Analyzers {
		if a.Name == name {
			return a.InFlight
		}
	}
	return 0
}

// checkShares waits until the selection matches the configuration (every
// selectable analyzer connected on every loop, the others out), pauses
// the background agents until all they sent is resolved, sends n packets
// through meas, and checks what each analyzer received of them against its
// weight's share. A window of consecutive picks that does not start at a
// snapshot's beginning is within 2 of N·share per cursor (balancer/doc.go);
// a health change during the window (a new snapshot) makes it measure
// again.
func checkShares(t *testing.T, s *proxy.Server, meas *client.Client, agents []*agentLoad, byName map[string]*analyzer, loops, n int, when string) {
	t.Helper()
	cfg := s.Config()
	want := map[string]float64{}
	var sum float64
	for _, a := range cfg.Analyzers {
		if a.Weight > 0 && (a.Admin == balancer.Enabled || a.Admin == balancer.ForcedUp) {
			want[a.Name] = a.Weight
			sum += a.Weight
		}
	}
	for name, w := range want {
		want[name] = w / sum
	}
	settled := func() bool {
		conns := map[string]int{}
		for _, a := range s.Status().Analyzers {
			conns[a.Name] = a.Connections
		}
		v := s.Balancer().View()
		if len(v.Analyzers) != len(cfg.Analyzers) {
			return false
		}
		for _, a := range v.Analyzers {
			share, ok := want[a.Name]
			if a.Selectable != ok || ok && (conns[a.Name] != loops || math.Abs(a.TargetShare-share) > 1e-4) {
				return false
			}
		}
		return true
	}
	waitFor(t, "the selection "+when, 10*time.Second, settled)
	for _, a := range agents {
		a.pause(true)
	}
	defer func() {
		for _, a := range agents {
			a.pause(false)
		}
	}()
	flush := func(c *client.Client) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Flush(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	for _, a := range agents {
		flush(a.c)
	}
	received := func() map[string]int {
		m := map[string]int{}
		for _, a := range cfg.Analyzers {
			m[a.Name] = byName[a.Name].unique()
		}
		return m
	}
	for attempt := 0; ; attempt++ {
		epoch := s.Balancer().View().Epoch
		before := received()
		for i := 0; i < n; i++ {
			if err := meas.Send(context.Background(), frame.Message{Body: []byte("measure")}); err != nil {
				t.Fatal(err)
			}
		}
		flush(meas) // every packet acknowledged: every analyzer has what it got
		if s.Balancer().View().Epoch != epoch && attempt < 3 {
			continue // the selection changed under the window: measure again
		}
		after := received()
		got := 0
		for name := range after {
			d := after[name] - before[name]
			got += d
			if dev := math.Abs(float64(d) - float64(n)*want[name]); dev >= float64(2*loops)+0.1 {
				t.Fatalf("%s: %s got %d of %d packets, want %.1f (share %.4f) within %d", when, name, d, n, float64(n)*want[name], want[name], 2*loops)
			}
		}
		if got != n {
			t.Fatalf("%s: analyzers got %d new packets, %d were sent", when, got, n)
		}
		return
	}
}
