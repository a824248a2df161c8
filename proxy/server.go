// Package proxy is the logdist distributor: a gnet event-loop server that
// takes DATA frames from agents and forwards each one to an analyzer picked
// by the balancer, over persistent connections that logdist keeps to every
// analyzer.
//
// # Threading model
//
// Everything about a packet happens on one event loop. An agent connection
// lives on the loop gnet accepted it on; each loop keeps its own upstream
// connection to every analyzer (registered on that same loop with
// EventLoop.Enroll), its own balancer cursor, its own ledger of packets and
// its own free lists. So the per-packet path — parse the header, copy the
// frame into a record, pick, write, track, ack — takes no lock, touches no
// shared cache line except uncontended per-loop counters, and allocates
// nothing once the free lists are warm. Work from other goroutines (dial
// results, timer ticks, configuration changes, shutdown) reaches a loop
// through EventLoop.Execute.
//
// # A system that changes while it runs
//
// The analyzer set and the configuration change while traffic flows
// (analyzers.go): the balancer publishes immutable snapshots the cursors
// pick from, the server publishes the analyzer registry and the settings
// as immutable values, and each loop takes the new ones on its own
// goroutine (reconcile.go, settings.go).
//
// # Files
//
//	server.go      lifecycle: New, Start, Stop
//	config.go      Config, validation
//	settings.go    the running configuration, swapped whole
//	analyzers.go   the live analyzer set: add, remove, re-weight, drain
//	reconcile.go   a loop's connections follow the analyzer set
//	loop.go        one event loop: flush batching, timers, SACK scheduling
//	ledger.go      the records a loop holds and their states; dispatch
//	agent.go       an agent connection
//	upstream.go    a connection to an analyzer
//	syslog*.go     syslog ingest: UDP datagrams, TCP streams, batching
//	transport.go   connections wrapped off the loops (TLS) and bridged in
//	looptls.go     TLS connections whose record layer runs on the loops
//	worker.go      blocking work off the loops, results handed back
//	handler.go     gnet's callbacks
//	statusview.go  the status the admin API serves
//
// # Delivery
//
// A packet is acknowledged to its agent only after an analyzer acknowledged
// it. Packets in flight on an analyzer connection that dies, or that wait
// longer than the ack timeout, are re-dispatched to another analyzer. When
// no analyzer can take a packet it waits in the loop's bounded queue; when
// the queue is full the agent gets BUSY and resends later.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
)

// Server is a running distributor. Build it with New, then Start it.
type Server struct {
	log  *slog.Logger
	set  *balancer.Set
	mset *metrics.Set

	// syslogLog is the log of the syslog listeners (component=syslog).
	syslogLog *slog.Logger
	// pktLog throttles the log lines about one packet (pktlog.go).
	pktLog *packetLog

	// conf is the running configuration and reg the analyzer registry,
	// each replaced whole under ctl (analyzers.go).
	conf atomic.Pointer[settings]
	reg  atomic.Pointer[registry]
	ctl  sync.Mutex

	eng    gnet.Engine
	addr   net.Addr
	runErr chan error
	// batchWake: a loop opened its first syslog batch; the ticker moves to
	// the linger interval.
	batchWake chan struct{}
	udp       *syslogUDP // nil when disabled
	tcp       *syslogTCP // nil when disabled
	tlsSyslog *syslogTCP // syslog over TLS; nil when disabled
	wrapped   *transportListener
	draining  atomic.Bool
	// dur is the disk spool and the dead letters; nil without DataDir.
	dur *durable
	// stopping is set once the engine stopped: jobs that finish after it
	// touch no connection.
	stopping atomic.Bool
	// ownPorts holds the local ports of discoverLoops' dials to our own
	// listener while it runs (bindOwnDial).
	ownPorts sync.Map
	started  atomic.Bool // Start succeeded: Stop has engines to stop
	created  time.Time   // when New built it (the status's start time)
	loopsDir string      // without a plaintext listener: the loops' private socket directory

	// transportFailures counts agents' TLS (transport) handshakes that
	// failed: plaintext clients, bad certificates, timeouts.
	transportFailures *metrics.Counter
	allowRefused      allowRefused
	accepted          atomic.Int64 // agent connections opened, ever
	stopOnce          sync.Once

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loop
	order []*loop
	next  int // nextLoop's round robin
	// loopsRO is a copy of loops for lock-free lookups on the datagram
	// path, replaced (never modified) when a loop is added.
	loopsRO atomic.Pointer[map[gnet.EventLoop]*loop]

	// queuedPackets and queuedBytes count the packets waiting in every
	// loop's queue, to enforce the global queue bounds; touched only when
	// a packet is queued or leaves the queue, never on the normal path.
	queuedPackets atomic.Int64
	queuedBytes   atomic.Int64
	// queueAlert: the Config.QueueAlert level the queue's depth is at.
	queueAlert fillAlert
	// partial counts the bytes agents hold in half-sent frames
	// (Config.MaxPartialBytes).
	partial atomic.Int64
	// shares samples the analyzers' packet counts at scrape time for
	// their shares over the last minute.
	shares shareWindow
	// agentAckLatency is receive to the agent's ACK, for sampled packets.
	agentAckLatency *metrics.PrometheusHistogram
	// Agent connections, for MaxConns and MaxConnsPerIP.
	connMu sync.Mutex
	conns  int
	perIP  map[netip.Addr]int

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // ticker, dial, bridge and syslog goroutines
}

// New checks cfg and builds a Server. It does not listen yet.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.clone() // applyAnalyzers records ramps in it
	set, err := balancer.New(cfg.Balancer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	syslogLog := log.With("component", "syslog")
	log = log.With("component", "proxy")
	mset := cfg.Metrics
	if mset == nil {
		mset = metrics.NewSet()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:       log,
		syslogLog: syslogLog,
		pktLog:    newPacketLog(),
		set:       set,
		mset:      mset,
		runErr:    make(chan error, 1),
		batchWake: make(chan struct{}, 1),
		loops:     map[gnet.EventLoop]*loop{},
		perIP:     map[netip.Addr]int{},
		ctx:       ctx,
		cancel:    cancel,
		created:   time.Now().UTC().Truncate(time.Second),
	}
	s.reg.Store(&registry{})
	s.applyAnalyzers(nil, cfg.Analyzers)
	s.warnIfNoTraffic(cfg.Analyzers)
	s.conf.Store(newSettings(cfg, 1))
	s.agentAckLatency = mset.NewPrometheusHistogramExt("logdist_agent_ack_latency_seconds", ackBuckets)
	mset.RegisterMetricsWriter(s.writeLoopMetrics)
	mset.RegisterMetricsWriter(s.writeAnalyzerMetrics)
	s.transportFailures = mset.NewCounter("logdist_transport_handshake_failures_total")
	s.allowRefused = newAllowRefused(mset)
	return s, nil
}

// Balancer returns the analyzer set: its view, health and counters.
// Change the set through the Server (AddAnalyzer, SetWeight...), which
// keeps the configuration, the connections and the metrics in step.
func (s *Server) Balancer() *balancer.Set { return s.set }

// Metrics returns the metrics set the server registers its metrics in.
func (s *Server) Metrics() *metrics.Set { return s.mset }

// Addr returns the address agents connect to, once Start has returned.
func (s *Server) Addr() net.Addr {
	if s.loopsDir != "" {
		return nil // plaintext off: the loops' socket is not for agents
	}
	return s.addr
}

// Draining reports whether a graceful shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// readBufferCap is each event loop's read buffer (see Start).
const readBufferCap = 256 << 10

// Start listens and runs the event loops in the background. It returns
// once every listener is bound, or with the reason one could not be (and
// then nothing is left running).
func (s *Server) Start() (err error) {
	conf := s.conf.Load()
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	if conf.DataDir != "" {
		if s.dur, err = openDurable(s, conf); err != nil {
			return err
		}
		cleanup = append(cleanup, func() { s.dur.close() })
	}
	if conf.SyslogTCP != "" {
		if s.tcp, err = listenSyslogTCP(s, conf.SyslogTCP, nil); err != nil {
			return err
		}
		cleanup = append(cleanup, s.tcp.close)
	}
	if conf.SyslogTLS != "" {
		if s.tlsSyslog, err = listenSyslogTCP(s, conf.SyslogTLS, conf.AgentTransport); err != nil {
			return err
		}
		cleanup = append(cleanup, s.tlsSyslog.close)
	}
	if conf.TransportListen != "" {
		if s.wrapped, err = listenTransport(s, conf.TransportListen); err != nil {
			return err
		}
		cleanup = append(cleanup, s.wrapped.close)
	}
	// The event loops run on gnet's listener. Without a plaintext agent
	// listener they listen on a Unix socket in a private directory, which
	// only loop discovery dials: no plaintext port is open.
	gnetAddr, network, listenAddr := "tcp://"+conf.Listen, "tcp", conf.Listen
	if conf.Listen == "" {
		dir, derr := os.MkdirTemp("", "logdist-loops-")
		if derr != nil {
			return fmt.Errorf("proxy: cannot make the loops' private socket directory: %w", derr)
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		s.loopsDir = dir
		listenAddr = filepath.Join(dir, "loops.sock")
		gnetAddr, network = "unix://"+listenAddr, "unix"
	}
	h := &handler{s: s, booted: make(chan struct{})}
	go func() {
		s.runErr <- gnet.Run(h, gnetAddr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(conf.loops()),
			gnet.WithReusePort(false),
			// SO_REUSEADDR, as Go's own listeners have: a restart after
			// kill -9 binds at once, not after the dead process's
			// connections leave TIME_WAIT (about 60 s).
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			// One read per ready connection per wake-up, into the loop's
			// buffer (one per loop, not per connection): 256 KiB takes
			// what ten busy agents leave in their sockets between two
			// wake-ups, where 64 KiB split it over more wake-ups, each with
			// its epoll_pwait, flush and writevs (9% less CPU per packet in
			// make bench-proxy; PERFORMANCE.md).
			gnet.WithReadBufferCap(readBufferCap),
			gnet.WithLogger(gnetLogger{s.log}),
			gnet.WithLoadBalancing(gnet.RoundRobin),
		)
	}()
	select {
	case <-h.booted:
	case err := <-s.runErr:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("proxy: cannot listen on %s: %w", listenAddr, err)
	}
	cleanup = append(cleanup, func() { _ = s.eng.Stop(context.Background()); <-s.runErr })
	if s.addr, err = listenerAddr(s.eng, network, listenAddr); err != nil {
		return fmt.Errorf("proxy: cannot read the bound address of %s: %w", listenAddr, err)
	}
	if conf.SyslogUDP != "" {
		if s.udp, err = startSyslogUDP(s, conf); err != nil {
			return err
		}
	}
	s.started.Store(true)
	s.bg.Add(1)
	go s.ticker()
	if s.loopsDir != "" {
		s.log.Info("no plaintext agent listener (listen is empty): agents connect over TLS only", "loops", conf.loops(), "inspect", conf.Inspect.String())
	} else {
		s.log.Info("listening", "addr", s.addr.String(), "loops", conf.loops(), "inspect", conf.Inspect.String())
	}
	s.discoverLoops()
	if s.tcp != nil {
		s.tcp.start()
	}
	if s.tlsSyslog != nil {
		s.tlsSyslog.start()
	}
	if s.wrapped != nil {
		s.wrapped.start()
	}
	return nil
}

// loopFor returns the state of event loop el, creating it the first time;
// syslog says it belongs to the syslog engine.
func (s *Server) loopFor(el gnet.EventLoop, syslog bool) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lp, ok := s.loops[el]; ok {
		return lp
	}
	lp := newLoop(s, el, len(s.order))
	if syslog {
		lp.initSyslog()
		lp.syslog.udp = true
	}
	s.loops[el] = lp
	s.order = append(s.order, lp)
	ro := make(map[gnet.EventLoop]*loop, len(s.loops))
	for k, v := range s.loops {
		ro[k] = v
	}
	s.loopsRO.Store(&ro)
	s.log.Debug("event loop set up", "loop", lp.idx)
	lp.reconcile()
	return lp
}

// loopFast returns the state of a syslog loop without locking, creating it
// the first time.
func (s *Server) loopFast(el gnet.EventLoop) *loop {
	if m := s.loopsRO.Load(); m != nil {
		if lp, ok := (*m)[el]; ok {
			return lp
		}
	}
	return s.loopFor(el, true)
}

func (s *Server) snapshotLoops() []*loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*loop(nil), s.order...)
}

// nextLoop returns an agent engine loop, round robin, for a connection
// accepted off the loops (TCP syslog, the transport listener); nil if
// none is known yet.
func (s *Server) nextLoop() *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.order {
		lp := s.order[s.next%len(s.order)]
		s.next++
		if lp.syslog == nil || !lp.syslog.udp {
			return lp
		}
	}
	return nil
}

func (s *Server) loopCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// admitConn takes a place for a new agent connection from ip, or reports
// that the limits are reached.
func (s *Server) admitConn(ip netip.Addr, conf *settings) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if conf.MaxConns > 0 && s.conns >= conf.MaxConns {
		return false
	}
	if conf.MaxConnsPerIP > 0 && s.perIP[ip] >= conf.MaxConnsPerIP {
		return false
	}
	s.conns++
	if conf.MaxConnsPerIP > 0 || s.perIP[ip] > 0 {
		s.perIP[ip]++
	}
	return true
}

func (s *Server) releaseConn(ip netip.Addr) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.conns--
	if n, ok := s.perIP[ip]; ok {
		if n <= 1 {
			delete(s.perIP, ip)
		} else {
			s.perIP[ip] = n - 1
		}
	}
}

func (s *Server) ticker() {
	defer s.bg.Done()
	// Every loop runs its timers every timer interval. While a loop has
	// syslog batches open the ticker runs at the linger and wakes that
	// loop too, to close them on time; a loop opening the first batch
	// signals batchWake. An idle logdist with syslog enabled used to wake
	// every loop every linger (5 ms): 14% of a core doing nothing.
	conf := s.conf.Load()
	cur := conf.timer
	t := time.NewTicker(cur)
	defer t.Stop()
	lastAll := time.Now()
	var mem memWatch
	for {
		var now time.Time
		select {
		case <-s.ctx.Done():
			return
		case <-s.batchWake:
			now = time.Now()
		case now = <-t.C:
		}
		conf = s.conf.Load()
		fast, timers := conf.tick(), conf.timer
		all := now.Sub(lastAll) >= timers-fast/2
		if all {
			lastAll = now
			s.set.Tick()
			mem.tick(s, now)
			s.checkQueueAlert(conf)
			if s.dur != nil {
				s.dur.checkAlert()
			}
		}
		open := false
		for _, lp := range s.snapshotLoops() {
			b := lp.batchesOpen.Load()
			open = open || b
			if all || b {
				lp.exec(lp.tickFn)
			}
		}
		want := timers
		if open {
			want = fast
		}
		if want != cur {
			cur = want
			t.Reset(cur)
		}
	}
}

// checkQueueAlert logs when the waiting queue's depth crosses a
// --queue-alert level (of whichever bound it is closer to).
func (s *Server) checkQueueAlert(conf *settings) {
	p, b := s.queuedPackets.Load(), s.queuedBytes.Load()
	fill := 0.0
	if conf.QueueMaxPackets > 0 {
		fill = float64(p) / float64(conf.QueueMaxPackets)
	}
	if conf.QueueMaxBytes > 0 {
		fill = max(fill, float64(b)/float64(conf.QueueMaxBytes))
	}
	s.queueAlert.check(s, "waiting queue", fill, "packets", p, "bytes", b, "max_packets", conf.QueueMaxPackets, "max_bytes", conf.QueueMaxBytes)
}

// Stop shuts the server down gracefully: new connections are refused,
// every agent gets GOAWAY, and Stop waits up to DrainTimeout (or until ctx
// is done) for the packets in flight to be acknowledged, then closes every
// connection and waits for its goroutines.
//
// Syslog input stops when the drain starts: its open batches are sealed
// and drained like agent packets, what arrives after that is dropped and
// counted (logdist_syslog_shutdown_dropped_total), and TCP syslog
// connections are closed. Syslog senders get no acknowledgements to resend
// from, so forwarding new messages would not make them safer; it would only
// keep packets in flight and hold Stop to the full DrainTimeout under a
// steady stream.
func (s *Server) Stop(ctx context.Context) error {
	if !s.started.Load() {
		return nil // Start failed (and cleaned up) or never ran
	}
	var err error
	s.stopOnce.Do(func() { err = s.stop(ctx) })
	return err
}

func (s *Server) stop(ctx context.Context) error {
	start := time.Now()
	conf := s.conf.Load()
	s.draining.Store(true)
	s.log.Info("draining: sending GOAWAY to agents", "addr", s.addr.String())
	if s.wrapped != nil {
		s.wrapped.close()
	}
	if s.tcp != nil {
		s.tcp.close()
	}
	if s.tlsSyslog != nil {
		s.tlsSyslog.close()
	}
	for _, lp := range s.snapshotLoops() {
		lp.exec(lp.goAwayFn)
	}
	s.flushSyslog()
	dctx, cancel := context.WithTimeout(ctx, conf.DrainTimeout)
	defer cancel()
	left := s.waitDrained(dctx)
	if left > 0 {
		s.log.Warn("drain timeout: closing with packets unacknowledged; agents will resend them", "addr", s.addr.String(), "unacknowledged", left, "waited", time.Since(start).Round(time.Millisecond))
	} else {
		s.log.Info("drained: every packet acknowledged", "addr", s.addr.String(), "waited", time.Since(start).Round(time.Millisecond))
	}
	s.cancel()
	err := s.eng.Stop(context.Background())
	if rerr := <-s.runErr; rerr != nil && err == nil {
		err = rerr
	}
	if s.udp != nil {
		if uerr := s.udp.stop(); uerr != nil && err == nil {
			err = uerr
		}
	}
	// The engines closed their ends of the bridges' socketpairs: the pumps
	// end by themselves.
	s.bg.Wait()
	s.stopping.Store(true)
	for _, lp := range s.snapshotLoops() {
		if lp.sp.w != nil {
			lp.sp.w.stop() // what is queued is written; nothing is dispatched
		}
	}
	if s.dur != nil {
		if derr := s.dur.close(); derr != nil {
			s.log.Error("closing the spool", "err", derr)
		}
	}
	var dropped uint64
	for _, lp := range s.snapshotLoops() {
		dropped += lp.m.syslogShutdownDropped.Get()
	}
	if s.tcp != nil {
		dropped += s.tcp.shutdownDropped.Load()
	}
	if s.tlsSyslog != nil {
		dropped += s.tlsSyslog.shutdownDropped.Load()
	}
	if dropped > 0 {
		s.log.Warn("dropped syslog messages that arrived during the shutdown", "messages", dropped)
	}
	if s.loopsDir != "" {
		os.RemoveAll(s.loopsDir)
	}
	s.log.Info("stopped", "addr", s.addr.String())
	if err != nil {
		return fmt.Errorf("proxy: cannot stop the engine: %w", err)
	}
	return nil
}

// waitDrained polls until no loop holds a live packet or ctx is done, and
// returns the number still live.
func (s *Server) waitDrained(ctx context.Context) int64 {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		var live int64
		for _, lp := range s.snapshotLoops() {
			live += lp.live.Load()
		}
		if live == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return live
		case <-t.C:
		}
	}
}

// gnetLogger routes gnet's own logs into slog at debug level (gnet logs
// per-connection events we count as metrics instead).
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "from", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "from", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "from", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "from", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "from", "gnet") }
