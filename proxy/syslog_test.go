package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/proxy"
)

// collector is an analyzer that keeps every message body it receives.
type collector struct {
	mu     sync.Mutex
	bodies []string
	agents map[string]int
	srv    *server.Server
	delay  atomic.Int64 // per packet, to make a slow analyzer
}

func (c *collector) HandlePacket(_ context.Context, _ *server.Meta, p *frame.Packet) error {
	time.Sleep(time.Duration(c.delay.Load()))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.agents[string(p.AgentID)]++
	for _, m := range p.Messages {
		c.bodies = append(c.bodies, string(m.Body))
	}
	return nil
}

// startCollector starts an in-process analyzer that keeps every body.
func startCollector(t *testing.T) (*collector, *server.Server) {
	t.Helper()
	return startCollectorAt(t, "127.0.0.1:0")
}

func startCollectorAt(t *testing.T, addr string) (*collector, *server.Server) {
	t.Helper()
	col := &collector{agents: map[string]int{}}
	cfg := server.DefaultConfig()
	cfg.Addr = addr
	cfg.Logger = testLogger(t)
	srv, err := server.New(cfg, col)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	col.srv = srv
	return col, srv
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bodies)
}

// Bad datagrams — empty, 64 KiB of garbage, invalid UTF-8, NUL bytes,
// absurd PRI — never crash anything: each is counted and, unless empty,
// carried as a raw message; good ones arrive parsed.
func TestSyslogBadDatagrams(t *testing.T) {
	col, srv := startCollector(t)
	defer srv.Close()
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{{Name: "c", Addr: srv.Addr().String(), Weight: 1}}
		c.SyslogUDP = "127.0.0.1:0"
		c.SyslogLinger = 2 * time.Millisecond
	})
	defer s.Stop(context.Background())
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))

	conn, err := net.Dial("udp", s.SyslogAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	garbage := make([]byte, 65000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	datagrams := [][]byte{
		[]byte("<34>1 2026-11-26T21:00:00.123Z gw.example.com sshd 811 ID47 [exampleSDID@32473 iut=\"3\"] good 5424"),
		[]byte("<13>Nov 26 21:00:00 web-1 nginx[42]: good 3164"),
		{},
		garbage,
		[]byte("\xff\xfe invalid utf-8 \xc3\x28"),
		[]byte("nul\x00bytes\x00inside"),
		[]byte("<999>absurd pri"),
		[]byte("<-1>negative pri"),
	}
	for _, d := range datagrams {
		if _, err := conn.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	want := len(datagrams) - 1 // the empty one is dropped (counted)
	waitFor(t, fmt.Sprintf("%d messages at the analyzer", want), 10*time.Second, func() bool { return col.count() >= want })
	col.mu.Lock()
	joined := strings.Join(col.bodies, "\n")
	col.mu.Unlock()
	for _, sub := range []string{"good 5424", "good 3164", "absurd pri", "negative pri", "bytes"} {
		if !strings.Contains(joined, sub) {
			t.Errorf("no message contains %q", sub)
		}
	}
	var metrics bytes.Buffer
	s.Metrics().WritePrometheus(&metrics)
	for _, name := range []string{"logdist_syslog_datagrams_total", "logdist_syslog_empty_total", `format="unparsed"`, "logdist_syslog_kernel_drops_total"} {
		if !strings.Contains(metrics.String(), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	for agent := range col.agents {
		if agent != "syslog/127.0.0.1" {
			t.Errorf("packet agent id %q, want syslog/127.0.0.1", agent)
		}
	}
}

// TCP syslog (RFC 6587): octet-counted and newline-framed messages arrive;
// a malformed octet count closes that connection only.
func TestSyslogTCP(t *testing.T) {
	col, srv := startCollector(t)
	defer srv.Close()
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{{Name: "c", Addr: srv.Addr().String(), Weight: 1}}
		c.SyslogTCP = "127.0.0.1:0"
		c.SyslogLinger = 2 * time.Millisecond
	})
	defer s.Stop(context.Background())
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	conn, err := net.Dial("tcp", s.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m1 := "<13>Nov 26 21:00:00 web-1 app[1]: octet counted"
	m2 := "<13>Nov 26 21:00:00 web-1 app[1]: newline framed"
	if _, err := fmt.Fprintf(conn, "%d %s%s\n", len(m1), m1, m2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 messages", 10*time.Second, func() bool { return col.count() >= 2 })
	col.mu.Lock()
	got := strings.Join(col.bodies, "|")
	col.mu.Unlock()
	if got != "octet counted|newline framed" && got != "newline framed|octet counted" {
		t.Fatalf("bodies %q", got)
	}
	bad, err := net.Dial("tcp", s.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Write([]byte("99999999 overlong count")); err != nil {
		t.Fatal(err)
	}
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection with a malformed octet count still open")
	}
	if _, err := fmt.Fprintf(conn, "%s\n", m2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good connection still works", 10*time.Second, func() bool { return col.count() >= 3 })
}

// Stop under a steady syslog stream (UDP and TCP) ends once the packets in
// flight are acknowledged, not at the drain timeout: syslog that arrives
// during the drain is dropped and counted instead of forwarded.
func TestStopUnderSteadySyslog(t *testing.T) {
	col, srv := startCollector(t)
	defer srv.Close()
	// An analyzer taking 5 ms per packet, and batches sealed every 5 ms:
	// there is always a packet in flight.
	col.delay.Store(int64(5 * time.Millisecond))
	const drainTimeout = 30 * time.Second
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{{Name: "c", Addr: srv.Addr().String(), Weight: 1}}
		c.SyslogUDP = "127.0.0.1:0"
		c.SyslogTCP = "127.0.0.1:0"
		c.SyslogLinger = 5 * time.Millisecond
		c.DrainTimeout = drainTimeout
	})
	stopped := false
	defer func() {
		if !stopped {
			s.Stop(context.Background())
		}
	}()
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	udp, err := net.Dial("udp", s.SyslogAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Dial("tcp", s.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the stream: ~2,000 messages/s each way until the end
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			_, _ = fmt.Fprintf(udp, "<13>Nov 27 02:00:00 web-1 app[1]: udp %d", i)
			_, _ = fmt.Fprintf(tcp, "<13>Nov 27 02:00:00 web-1 app[1]: tcp %d\n", i)
			time.Sleep(500 * time.Microsecond) // pacing, not waiting
		}
	}()
	defer func() { close(done); wg.Wait() }()
	waitFor(t, "syslog flowing", 10*time.Second, func() bool { return col.count() >= 200 })

	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if took := time.Since(start); took > drainTimeout/3 {
		t.Fatalf("Stop took %v under a steady syslog stream (drain timeout %v)", took, drainTimeout)
	}
	var out bytes.Buffer
	s.Metrics().WritePrometheus(&out)
	if !strings.Contains(out.String(), `logdist_dropped_total{reason="syslog_draining"}`) {
		t.Fatal("no logdist_dropped_total{reason=syslog_draining} in the metrics")
	}
}

// TCP has flow control, so TCP syslog is not dropped when the wait queue
// is full (every analyzer down): logdist stops reading the connection
// until the queue has room, and every message arrives once an analyzer
// is back. They used to be dropped and counted, as UDP datagrams are.
func TestSyslogTCPBackpressure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the analyzer's address, down for now
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{{Name: "c", Addr: addr, Weight: 1}}
		c.SyslogTCP = "127.0.0.1:0"
		c.SyslogLinger = 2 * time.Millisecond
		c.SyslogBatchMessages = 10
		c.QueueMaxPackets = 4
	})
	defer s.Stop(context.Background())
	conn, err := net.Dial("tcp", s.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 2000
	sent := make(chan error, 1)
	go func() {
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			m := fmt.Sprintf("<13>Nov 26 21:00:00 web-1 app[1]: message %d", i)
			fmt.Fprintf(&b, "%d %s", len(m), m)
		}
		_, err := conn.Write(b.Bytes())
		sent <- err
	}()
	waitFor(t, "logdist to stop reading", 10*time.Second, func() bool {
		return metricSum(s, "logdist_syslog_tcp_paused_total") > 0
	})
	col, srv := startCollectorAt(t, addr)
	defer srv.Close()
	waitFor(t, "every message", 20*time.Second, func() bool { return col.count() >= n })
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if d := metricSum(s, `logdist_dropped_total{reason="syslog_queue_full"}`); d != 0 || col.count() != n {
		t.Fatalf("%d syslog packets dropped, %d of %d messages delivered", int(d), col.count(), n)
	}
}

// A UDP syslog port another process holds is refused: with SO_REUSEPORT
// a second logdist would silently join the port and take part of the
// datagrams. A busy TCP syslog port is refused with its own address in the
// error (it used to name the agent listener).
func TestSyslogPortsMustBeFree(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	other, err := lc.ListenPacket(context.Background(), "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f := func(edit func(*proxy.Config), want string) {
		t.Helper()
		cfg := proxy.DefaultConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.SyslogUDP = ""
		cfg.Logger = testLogger(t)
		cfg.Analyzers = []proxy.AnalyzerConfig{{Name: "a", Addr: "127.0.0.1:1", Weight: 1}}
		edit(&cfg)
		s, err := proxy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start()
		if err == nil {
			s.Stop(context.Background())
			t.Fatalf("started on a busy port; want an error saying %q", want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q, want it to say %q", err, want)
		}
	}
	f(func(c *proxy.Config) { c.SyslogUDP = other.LocalAddr().String() }, "cannot listen for syslog on udp "+other.LocalAddr().String())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f(func(c *proxy.Config) { c.SyslogTCP = busy.Addr().String() }, "cannot listen for syslog on tcp "+busy.Addr().String())
}
