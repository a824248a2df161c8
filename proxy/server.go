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
// EventLoop.Enroll), its own balancer cursor, its own waiting queue and its
// own free lists. So the per-packet path — parse the header, copy the frame
// into a record, pick, write, track, ack — takes no lock, touches no shared
// cache line except uncontended per-loop counters, and allocates nothing
// once the free lists are warm. Work from other goroutines (dial results,
// timer ticks, shutdown) reaches a loop through EventLoop.Execute.
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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
)

// Server is a running distributor. Build it with New, then Start it.
type Server struct {
	cfg  Config
	log  *slog.Logger
	set  *balancer.Set
	mset *metrics.Set
	m    *serverMetrics

	eng    gnet.Engine
	addr   net.Addr
	runErr chan error
	// batchWake: a loop opened its first syslog batch; the ticker moves to
	// the linger interval.
	batchWake chan struct{}
	udpEng    gnet.Engine // the syslog engine, when SyslogUDP is set
	udpAddr   *net.UDPAddr
	// syslogTCPAddr is the bound TCP syslog listener, when SyslogTCP is set.
	syslogTCPAddr *net.TCPAddr
	udpErr        chan error
	draining      atomic.Bool
	started       atomic.Bool  // Start succeeded: Stop has engines to stop
	accepted      atomic.Int64 // agent connections opened, ever
	stopOnce      sync.Once

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loop
	order []*loop
	// loopsRO is a copy of loops for lock-free lookups on the datagram
	// path, replaced (never modified) when a loop is added.
	loopsRO atomic.Pointer[map[gnet.EventLoop]*loop]

	// queued counts packets and bytes waiting in every loop's queue, to
	// enforce the global queue bounds. Touched only when a packet is queued
	// or leaves the queue, never on the normal path.
	// readyConns counts, per analyzer ID, the loops whose connection to it
	// is ready (for the admin API: an analyzer only some loops reach is
	// skipped by the others).
	readyConns []atomic.Int32

	queuedPackets atomic.Int64
	queuedBytes   atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // ticker and dial goroutines
}

// New checks cfg and builds a Server. It does not listen yet.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	set, err := balancer.New(cfg.Balancer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, a := range cfg.Analyzers {
		if _, err := set.Add(balancer.AnalyzerConfig{Name: a.Name, Addr: a.Addr, Weight: a.Weight}); err != nil {
			return nil, fmt.Errorf("%w: analyzer %q: %v", ErrConfig, a.Name, err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "proxy")
	mset := cfg.Metrics
	if mset == nil {
		mset = metrics.NewSet()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       log,
		set:       set,
		mset:      mset,
		runErr:    make(chan error, 1),
		batchWake: make(chan struct{}, 1),
		udpErr:    make(chan error, 1),
		loops:     map[gnet.EventLoop]*loop{},
		ctx:       ctx,
		cancel:    cancel,
	}
	s.readyConns = make([]atomic.Int32, set.IDLimit())
	s.m = newServerMetrics(s)
	return s, nil
}

// Balancer returns the analyzer set, for the admin API.
func (s *Server) Balancer() *balancer.Set { return s.set }

// Metrics returns the metrics set the server registers its metrics in.
func (s *Server) Metrics() *metrics.Set { return s.mset }

// Addr returns the address agents connect to, once Start has returned.
func (s *Server) Addr() net.Addr { return s.addr }

// Start listens and runs the event loops in the background. It returns
// once the listener is bound, or with the reason it could not be.
func (s *Server) Start() error {
	if s.cfg.SyslogTCP != "" {
		// The port is fixed before the engine starts, so that the loops,
		// which tell syslog connections from agents by it, never see it
		// change.
		ta, err := reservePort("tcp", s.cfg.SyslogTCP)
		if err != nil {
			return fmt.Errorf("proxy: cannot listen for syslog on tcp %s: %w", s.cfg.SyslogTCP, err)
		}
		s.syslogTCPAddr = ta.(*net.TCPAddr)
	}
	h := &handler{s: s, booted: make(chan struct{})}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.loops()),
		gnet.WithReusePort(false),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReadBufferCap(64 << 10),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithLoadBalancing(gnet.RoundRobin),
	}
	go func() {
		addrs := []string{"tcp://" + s.cfg.Listen}
		if s.syslogTCPAddr != nil {
			addrs = append(addrs, "tcp://"+s.syslogTCPAddr.String())
		}
		err := gnet.Rotate(h, addrs, opts...)
		s.runErr <- err
	}()
	select {
	case <-h.booted:
	case err := <-s.runErr:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("proxy: cannot listen on %s: %w", s.cfg.Listen, err)
	}
	addr, err := listenerAddr(s.eng, s.cfg.Listen)
	if err != nil {
		_ = s.eng.Stop(context.Background())
		return fmt.Errorf("proxy: cannot read the bound address of %s: %w", s.cfg.Listen, err)
	}
	s.addr = addr
	if s.syslogTCPAddr != nil {
		s.log.Info("listening for syslog", "addr", "tcp://"+s.syslogTCPAddr.String())
	}
	if s.cfg.SyslogUDP != "" {
		if err := s.startSyslogUDP(); err != nil {
			_ = s.eng.Stop(context.Background())
			<-s.runErr
			return err
		}
	}
	s.started.Store(true)
	s.bg.Add(1)
	go s.ticker()
	s.log.Info("listening", "addr", addr.String(), "loops", s.cfg.loops(), "inspect", inspectName(s.cfg.Inspect))
	s.discoverLoops()
	return nil
}

// reservePort resolves addr, and when its port is 0 asks the kernel for a
// free one (bind, read, close) so that a listener gnet opens later gets a
// known port.
func reservePort(network, addr string) (net.Addr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if port != "0" {
		if network == "udp" {
			return net.ResolveUDPAddr(network, addr)
		}
		return net.ResolveTCPAddr(network, addr)
	}
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		return net.ResolveUDPAddr(network, net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)))
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	return net.ResolveTCPAddr(network, net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
}

// listenerAddr reads the bound address from a duplicate of the listener's
// socket (gnet does not expose it; with port 0 it is the only way to learn
// the port).
func listenerAddr(eng gnet.Engine, addr string) (net.Addr, error) {
	fd, err := eng.DupListener("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	}
	return nil, fmt.Errorf("unexpected socket address %T", sa)
}

// discoverLoops makes sure every event loop has its upstream connections
// (and so heartbeats and health) before the first agent arrives. gnet hands
// out loops only through connections, and its round-robin balancer gives
// consecutive connections consecutive loops, so a few short connections to
// our own listener reach every loop. A failure here is harmless: a loop
// also sets itself up when its first agent connects.
func (s *Server) discoverLoops() {
	addr := s.addr.(*net.TCPAddr)
	dial := &net.TCPAddr{IP: addr.IP, Port: addr.Port}
	if dial.IP == nil || dial.IP.IsUnspecified() {
		dial.IP = net.IPv4(127, 0, 0, 1)
	}
	want := s.cfg.loops()
	for i := 0; i < 4*want && s.loopCount() < want; i++ {
		n0 := s.accepted.Load()
		c, err := net.DialTimeout("tcp", dial.String(), time.Second)
		if err != nil {
			s.log.Debug("loop discovery: cannot dial own listener; loops will set up on first agent", "addr", dial.String(), "err", err)
			return
		}
		// Wait until gnet has opened it on a loop, then close it.
		deadline := time.Now().Add(time.Second)
		for s.accepted.Load() == n0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_ = c.Close()
	}
}

func (s *Server) loopCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// isSyslogTCP reports whether an accepted connection came in on the TCP
// syslog listener (the ports differ: Validate sees to it). It asks the
// socket: gnet reports the listener's configured address as the local
// one, which says port 0 when the port was picked by the kernel. One
// system call per accepted connection, not per packet.
func (s *Server) isSyslogTCP(c gnet.Conn) bool {
	if s.syslogTCPAddr == nil {
		return false
	}
	sa, err := syscall.Getsockname(c.Fd())
	if err != nil {
		return false
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return a.Port == s.syslogTCPAddr.Port
	case *syscall.SockaddrInet6:
		return a.Port == s.syslogTCPAddr.Port
	}
	return false
}

// SyslogTCPAddr returns the TCP syslog address, or nil when disabled.
func (s *Server) SyslogTCPAddr() net.Addr {
	if s.syslogTCPAddr == nil {
		return nil
	}
	return s.syslogTCPAddr
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
		lp.syslog = newSyslogIngest(s)
		lp.maxBuf = max(lp.maxBuf, s.cfg.SyslogBatchBytes+frame.HeaderSize+64)
	}
	s.loops[el] = lp
	s.order = append(s.order, lp)
	ro := make(map[gnet.EventLoop]*loop, len(s.loops))
	for k, v := range s.loops {
		ro[k] = v
	}
	s.loopsRO.Store(&ro)
	s.log.Debug("event loop set up", "loop", lp.idx)
	lp.startAll()
	return lp
}

func (s *Server) snapshotLoops() []*loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*loop(nil), s.order...)
}

// timerInterval is how often every loop runs its timers (heartbeats, ack
// timeouts, redials, queue drain, connection timeouts).
func (s *Server) timerInterval() time.Duration {
	return min(max(s.cfg.HeartbeatInterval/5, time.Millisecond), 50*time.Millisecond)
}

// tickInterval is how often the ticker wakes: the timer interval, or the
// syslog linger if shorter, for loops with syslog batches open (they
// close on time).
func (s *Server) tickInterval() time.Duration {
	d := s.timerInterval()
	if (s.cfg.SyslogUDP != "" || s.cfg.SyslogTCP != "") && d > s.cfg.SyslogLinger {
		d = max(s.cfg.SyslogLinger, time.Millisecond)
	}
	return d
}

func (s *Server) ticker() {
	defer s.bg.Done()
	fast, timers := s.tickInterval(), s.timerInterval()
	// Every loop runs its timers every timerInterval. While a loop has
	// syslog batches open the ticker runs at the linger and wakes that
	// loop too, to close them on time; a loop opening the first batch
	// signals batchWake. An idle logdist with syslog enabled used to wake
	// every loop every linger (5 ms): 14% of a core doing nothing.
	cur := timers
	t := time.NewTicker(cur)
	defer t.Stop()
	lastAll := time.Now()
	for {
		var now time.Time
		select {
		case <-s.ctx.Done():
			return
		case <-s.batchWake:
			now = time.Now()
		case now = <-t.C:
		}
		all := now.Sub(lastAll) >= timers-fast/2
		if all {
			lastAll = now
			s.set.Tick()
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

// Stop shuts the server down gracefully: new connections are refused,
// every agent gets GOAWAY, and Stop waits up to DrainTimeout (or until ctx
// is done) for the packets in flight to be acknowledged, then closes every
// connection and waits for its goroutines.
//
// Syslog input stops when the drain starts: its open batches are sealed
// and drained like agent packets, and what arrives after that is dropped
// and counted (logdist_syslog_shutdown_dropped_total), and TCP syslog
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
	s.draining.Store(true)
	s.log.Info("draining: sending GOAWAY to agents", "addr", s.addr.String())
	for _, lp := range s.snapshotLoops() {
		lp.exec(lp.goAwayFn)
	}
	s.flushSyslog()
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
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
	if s.udpAddr != nil {
		if uerr := s.udpEng.Stop(context.Background()); uerr != nil && err == nil {
			err = uerr
		}
		if rerr := <-s.udpErr; rerr != nil && err == nil {
			err = rerr
		}
	}
	s.bg.Wait()
	var dropped uint64
	for _, lp := range s.snapshotLoops() {
		dropped += lp.m.syslogShutdownDropped.Get()
	}
	if dropped > 0 {
		s.log.Warn("dropped syslog messages that arrived during the shutdown", "messages", dropped)
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

func inspectName(i Inspect) string {
	if i == InspectFull {
		return "full"
	}
	return "header"
}
