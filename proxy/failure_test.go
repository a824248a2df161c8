package proxy_test

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/proxy"
)

// An analyzer that goes away mid-stream (GOAWAY, then close) loses no
// packet: what it did not acknowledge is re-dispatched to the others.
func TestAnalyzerLeavesMidStream(t *testing.T) {
	s, as := startCluster(t, 1, 1, 1)

	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendAll(t, c, "agent-1", 1, 500, 64)
	done := make(chan struct{})
	go func() { as[1].srv.Close(); close(done) }()
	sendAll(t, c, "agent-1", 501, 1500, 64)
	<-done
	for id := uint64(1); id <= 2000; id++ {
		key := fmt.Sprintf("agent-1/%d", id)
		if !as[0].has(key) && !as[1].has(key) && !as[2].has(key) {
			t.Fatalf("packet %s was acknowledged but no analyzer has it", key)
		}
	}
}

// With every analyzer down, packets wait in the bounded queue; past it the
// agent gets BUSY; when an analyzer comes back the queue drains to it.
func TestAllDownQueueBusyRecover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet
	down := &analyzer{name: "a1"}
	s := startProxyAddrs(t, []string{"a1"}, []string{addr}, func(c *proxy.Config) {
		c.QueueMaxPackets = 10
		c.Balancer.BreakerBackoff = 50 * time.Millisecond
		c.Balancer.BreakerMaxBackoff = 100 * time.Millisecond
		c.RedialMax = 100 * time.Millisecond
	})
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf []byte
	for i := uint64(1); i <= 20; i++ {
		buf = c.AppendData(buf, pkt("agent-1", i), true)
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	busy := map[uint64]bool{}
	for len(busy) < 10 {
		f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != frame.TypeBusy {
			t.Fatalf("got %s, want BUSY while every analyzer is down", f)
		}
		busy[f.Seq] = true
	}
	for seq := uint64(11); seq <= 20; seq++ {
		if !busy[seq] {
			t.Fatalf("BUSY for %v, want 11..20 (the queue holds 10)", busy)
		}
	}
	// The analyzer comes up: the 10 queued packets reach it and are acked.
	a := startAnalyzer(t, "a1", addr)
	down.srv = a.srv
	defer a.srv.Close()
	defer s.Stop(t.Context())
	if err := c.WaitAck(20); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if !a.has(fmt.Sprintf("agent-1/%d", i)) {
			t.Errorf("queued packet %d did not reach the analyzer", i)
		}
	}
}

func startProxyAddrs(t *testing.T, names, addrs []string, edit func(*proxy.Config)) *proxy.Server {
	t.Helper()
	return startProxy(t, nil, nil, func(c *proxy.Config) {
		for i := range names {
			c.Analyzers = append(c.Analyzers, proxy.AnalyzerConfig{Name: names[i], Addr: addrs[i], Weight: 1})
		}
		if edit != nil {
			edit(c)
		}
	})
}

// 200 agents at once: no race, no loss, counts add up.
func TestManyAgents(t *testing.T) {
	s, as := startCluster(t, 0.4, 0.3, 0.2, 0.1)
	const agents, each = 200, 25
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	for i := 0; i < agents; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("agent-%d", i)
			c, err := servertest.DialRaw(s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.Timeout = 30 * time.Second // 200 agents under -race on 2 shared cores are slow, not stuck
			if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: each, MaxFrame: 1 << 20, AgentID: []byte(name)}); err != nil {
				errs <- fmt.Errorf("%s: handshake: %w", name, err)
				return
			}
			var buf []byte
			for j := uint64(1); j <= each; j++ {
				buf = c.AppendData(buf, pkt(name, j), true)
			}
			if err := c.Write(buf); err != nil {
				errs <- err
				return
			}
			if err := c.WaitAck(each); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	nerr := 0
	for err := range errs {
		if nerr++; nerr <= 3 {
			t.Error(err)
		}
	}
	total := 0
	for _, a := range as {
		total += a.unique()
	}
	if total != agents*each {
		t.Fatalf("analyzers hold %d unique packets, want %d", total, agents*each)
	}
	var picked uint64
	for _, v := range s.Balancer().View().Analyzers {
		picked += v.Packets
	}
	if picked != agents*each {
		t.Fatalf("balancer accounted %d packets, want %d", picked, agents*each)
	}
}

// Stop sends GOAWAY to agents, DATA after it gets BUSY retry-after 0, and
// what was in flight is acknowledged before the connections close.
func TestStopSendsGoAway(t *testing.T) {
	a := startAnalyzer(t, "a1", "127.0.0.1:0")
	defer a.srv.Close()
	s := startProxy(t, []*analyzer{a}, []float64{1}, nil)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	c, err := servertest.Dial(s.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendAll(t, c, "agent-1", 1, 10, 8)
	a.setDelay(300 * time.Millisecond) // keep the next packet in flight
	if _, err := c.Send(pkt("agent-1", 11), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packet 11 at the analyzer", 5*time.Second, func() bool { return a.handling() })
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(t.Context()) }()
	f, err := c.Next()
	if err != nil || f.Type != frame.TypeGoAway {
		t.Fatalf("got %v %v, want GOAWAY", f, err)
	}
	seq, err := c.Send(pkt("agent-1", 12), true)
	if err != nil {
		t.Fatal(err)
	}
	f, err = c.Next()
	if err != nil || f.Type != frame.TypeBusy || f.Seq != seq || f.RetryAfter != 0 {
		t.Fatalf("got %v %v, want BUSY seq=%d retry-after=0", f, err, seq)
	}
	// Packet 11 is still acknowledged: the drain waits for it.
	f, err = c.Next()
	if err != nil || f.Type != frame.TypeAck || f.Seq != seq {
		t.Fatalf("got %v %v, want ACK %d", f, err, seq)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !a.has("agent-1/11") {
		t.Fatal("in-flight packet 11 not at the analyzer")
	}
}

// More than IOV_MAX (1024) frames queued for one analyzer go out in one
// flush when it comes back: they must be written in chunks, not fail the
// connection with EINVAL.
func TestDrainMoreThanIOVMax(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := startProxyAddrs(t, []string{"a1"}, []string{addr}, func(c *proxy.Config) {
		c.Loops = 1
		c.Balancer.BreakerBackoff = 50 * time.Millisecond
		c.Balancer.BreakerMaxBackoff = 100 * time.Millisecond
		c.RedialMax = 100 * time.Millisecond
	})
	defer s.Stop(t.Context())
	const agents, each = 8, 250 // 2,000 packets wait in the queue
	var clients []*servertest.Client
	for i := 0; i < agents; i++ {
		c, err := servertest.Dial(s.Addr().String(), fmt.Sprintf("q%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Timeout = 30 * time.Second
		var buf []byte
		for j := uint64(1); j <= each; j++ {
			buf = c.AppendData(buf, pkt(fmt.Sprintf("q%d", i), j), false)
		}
		if err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// The analyzer grants a window large enough to take the whole queue
	// in one flush.
	a := &analyzer{name: "a1", seen: map[string]int{}}
	cfg := server.DefaultConfig()
	cfg.Addr = addr
	cfg.Window = 4096
	cfg.Logger = testLogger(t)
	srv, err := server.New(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i, c := range clients {
		if err := c.WaitAck(each); err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
	}
	if got := a.unique(); got != agents*each {
		t.Fatalf("analyzer has %d unique packets, want %d", got, agents*each)
	}
	if lost := metricSum(s, "logdist_upstream_connections_lost_total"); lost != 0 {
		t.Fatalf("%v analyzer connections lost while draining", lost)
	}
}

// metricSum adds up a metric over its labels (every loop).
func metricSum(s *proxy.Server, name string) float64 {
	var m bytes.Buffer
	s.Metrics().WritePrometheus(&m)
	var sum float64
	for _, line := range strings.Split(m.String(), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// While every analyzer is down, the packets of an agent that disconnects
// stop holding queue budget, even behind packets of agents still there:
// the agent resends them on its next connection, and the old copies would
// otherwise fill the queue and get the new ones BUSY. They are dropped
// (and counted), never forwarded.
func TestQueuedOrphansReleaseBudget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet
	s := startProxyAddrs(t, []string{"a1"}, []string{addr}, func(c *proxy.Config) {
		c.Loops = 1 // one queue, so that the orphans are behind the live packets
		c.QueueMaxPackets = 10
		c.Balancer.BreakerBackoff = 50 * time.Millisecond
		c.Balancer.BreakerMaxBackoff = 100 * time.Millisecond
		c.RedialMax = 100 * time.Millisecond
	})
	defer s.Stop(t.Context())
	dial := func(agent string) *servertest.Client {
		t.Helper()
		c, err := servertest.Dial(s.Addr().String(), agent)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	send := func(c *servertest.Client, agent string, from, to uint64) {
		t.Helper()
		var buf []byte
		for i := from; i <= to; i++ {
			buf = c.AppendData(buf, pkt(agent, i), true)
		}
		if err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	queued := func() float64 { return metricSum(s, "logdist_queue_packets") }

	live := dial("live")
	defer live.Close()
	send(live, "live", 1, 2) // at the head of the queue, and staying
	waitFor(t, "2 packets queued", 5*time.Second, func() bool { return queued() == 2 })
	gone := dial("gone")
	send(gone, "gone", 1, 8)
	waitFor(t, "10 packets queued", 5*time.Second, func() bool { return queued() == 10 })
	gone.Close()
	waitFor(t, "the closed agent's packets dropped from the queue", 5*time.Second, func() bool { return queued() == 2 })
	if n := metricSum(s, `logdist_dropped_total{reason="agent_gone"}`); n != 8 {
		t.Fatalf("logdist_dropped_total{reason=agent_gone} %v, want 8", n)
	}

	// The agent comes back and resends: the queue takes all eight again.
	back := dial("gone")
	defer back.Close()
	send(back, "gone", 1, 8)
	waitFor(t, "10 packets queued again", 5*time.Second, func() bool { return queued() == 10 })
	if busy := metricSum(s, "logdist_agent_busy_total"); busy != 0 {
		t.Fatalf("%v BUSY answers", busy)
	}
	a := startAnalyzer(t, "a1", addr)
	defer a.srv.Close()
	if err := live.WaitAck(2); err != nil {
		t.Fatal(err)
	}
	if err := back.WaitAck(8); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 1; i <= 8; i++ {
		if n := a.seen[fmt.Sprintf("gone/%d", i)]; n != 1 {
			t.Errorf("packet gone/%d reached the analyzer %d times, want once (the orphaned copy is not forwarded)", i, n)
		}
	}
}

// An agent that never reads its answers and keeps sending PINGs is
// disconnected once 1 MiB of answers waits for it: logdist's output to it
// was unbounded.
func TestAgentThatDoesNotReadIsClosed(t *testing.T) {
	s := startProxyAddrs(t, []string{"a1"}, []string{"127.0.0.1:1"}, nil)
	defer s.Stop(t.Context())
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096) // and never read
	if _, err := nc.Write(frame.AppendHello(nil, &frame.Hello{Caps: frame.CapZstd, Window: 16, AgentID: []byte("mute")})); err != nil {
		t.Fatal(err)
	}
	var pings []byte
	for k := 0; k < 4096; k++ {
		pings = frame.AppendPing(pings, uint64(k))
	}
	const limit = 256 << 20 // the PONGs for this much would be 256 MiB
	nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
	sent := 0
	for ; sent < limit; sent += len(pings) {
		if _, err := nc.Write(pings); err != nil {
			break // closed by logdist
		}
	}
	if sent >= limit {
		t.Fatalf("logdist took %d MiB of PINGs from an agent that reads nothing and kept the connection", sent>>20)
	}
	waitFor(t, "the overload counted", 5*time.Second, func() bool {
		return metricSum(s, `logdist_protocol_errors_total{code="overloaded"}`) >= 1
	})
}

// After a total outage the backlog is spread by weight over the analyzers
// that come back, not handed to the first one whose breaker happens to
// reopen: when one is back, the others are probed at once and the backlog
// waits (at most 2 s) until they answer. All four analyzers are back at the
// same moment, their breakers backed off for up to 3 s.
func TestBacklogSpreadAfterTotalOutage(t *testing.T) {
	t.Run("2 loops, 100 ms heartbeats, 1 agent", func(t *testing.T) { backlogSpread(t, 2, 100*time.Millisecond, 1) })
	// Several loops at the default heartbeat: a half-open breaker lets one
	// loop probe; the others wait for it rather than end their wait.
	t.Run("4 loops, 500 ms heartbeats, 8 agents", func(t *testing.T) { backlogSpread(t, 4, 500*time.Millisecond, 8) })
}

func backlogSpread(t *testing.T, loops int, heartbeat time.Duration, agents int) {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	names := []string{"a1", "a2", "a3", "a4"}
	var addrs []string
	for range weights {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close() // nothing listens there yet
	}
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		for i := range names {
			c.Analyzers = append(c.Analyzers, proxy.AnalyzerConfig{Name: names[i], Addr: addrs[i], Weight: weights[i]})
		}
		c.Balancer.BreakerBackoff = 1500 * time.Millisecond
		c.Balancer.BreakerMaxBackoff = 3 * time.Second
		c.QueueMaxPackets = 10_000
		c.Loops = loops
		c.HeartbeatInterval, c.HeartbeatTimeout = heartbeat, 2*heartbeat
	})
	defer s.Stop(t.Context())
	const each = 200
	n := each * agents
	var clients []*servertest.Client
	for a := range agents {
		name := fmt.Sprintf("agent-%d", a)
		c, err := servertest.Dial(s.Addr().String(), name)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var buf []byte
		for i := uint64(1); i <= each; i++ {
			buf = c.AppendData(buf, pkt(name, i), true)
		}
		if err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// Every breaker opens (three failed dials each), then backs off.
	waitFor(t, "every breaker open", 10*time.Second, func() bool {
		for _, a := range s.Balancer().View().Analyzers {
			if a.Breaker != balancer.Open {
				return false
			}
		}
		return true
	})
	var as []*analyzer
	for i := range names {
		as = append(as, startAnalyzer(t, names[i], addrs[i]))
	}
	defer func() {
		for _, a := range as {
			a.srv.Close()
		}
	}()
	for _, c := range clients {
		if err := c.WaitAck(each); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range as {
		share := float64(a.unique()) / float64(n)
		t.Logf("%s (weight %.1f): %d of %d packets", names[i], weights[i], a.unique(), n)
		if share < weights[i]-0.1 || share > weights[i]+0.1 {
			t.Errorf("%s took %.2f of the backlog, weight %.1f", names[i], share, weights[i])
		}
	}
}
