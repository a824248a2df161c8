// Package server is the analyzer side of the logdist wire protocol (see
// package frame and docs/PROTOCOL.md): it accepts TCP connections, does the
// HELLO/WELCOME handshake, reads and validates DATA frames, hands each
// decoded packet to a Handler and resolves it on the wire — ACK, BUSY or
// ERROR — answers PING, enforces the sequence, window, idle and handshake
// rules, and drains with GOAWAY on Close.
//
// A connection is served by one goroutine. Answers are batched: the server
// processes every frame already buffered, then writes one cumulative ACK
// (after any BUSY and ERROR frames it covers) and flushes, so a burst of
// DATA frames costs one write back. Nothing waits on a timer to ACK.
//
// By default (Config.Concurrency 1) that goroutine calls the Handler too,
// one packet at a time: a handler taking 5 ms serves at most 200 packets a
// second per connection, however idle the CPU. With Concurrency N, the
// reading goroutine decodes each DATA into one of N slots and hands it to
// the slot's goroutine, which calls the Handler and resolves the packet;
// with all N busy it stops reading (backpressure: the client's window
// fills). Packets complete in any order; the cumulative ACK covers a
// packet once every earlier one is resolved. A worker that finishes while
// the reader waits (on the socket or for a slot) writes the answers, the
// last of several finishing together writing for all; otherwise the
// reader writes them with its next batch. When the connection ends — the
// peer hangs up, a drain completes — reading stops, the handlers in
// flight finish and their answers are written before it closes; a kill
// (drain timeout) cancels their context first.
//
// The server keeps no process-wide state; its metrics live on the
// *metrics.Set returned by Metrics.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/logthrottle"
	"github.com/logdist/logdist/internal/promexp"
)

// ErrClosed is returned by Serve, ListenAndServe and Start once Close has
// been called.
var ErrClosed = errors.New("server: closed")

// Server is a frame protocol server. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg     Config
	sess    session.ServerConfig // shared by every connection's session
	handler Handler
	log     *slog.Logger
	m       *serverMetrics
	// rejectLog throttles per-packet logs (rejects, handler errors), per
	// message and code.
	rejectLog *logthrottle.Keyed[logKey]

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	conns     map[*conn]struct{}

	serveWG   sync.WaitGroup // Serve loops
	connWG    sync.WaitGroup // connection goroutines
	closeOnce sync.Once
	closeErr  error // set by shutdown when handlers did not return
}

// New returns a server that calls h for every packet. It checks cfg with
// Validate.
func New(cfg Config, h Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("server: cannot create server: nil Handler")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Server{
		cfg:       cfg,
		sess:      cfg.sessionConfig(),
		handler:   h,
		log:       lg.With("component", "frame/server"),
		m:         newServerMetrics(cfg.MetricsPrefix),
		rejectLog: logthrottle.NewKeyed[logKey](time.Second),
		conns:     make(map[*conn]struct{}),
	}, nil
}

// Metrics returns the set holding the server's metrics
// (Config.MetricsPrefix_*), for an admin endpoint to write out with
// other sets; WriteMetrics writes them alone.
func (s *Server) Metrics() *metrics.Set { return s.m.set }

// WriteMetrics writes the server's metrics and the process's in the
// Prometheus text format, with HELP and TYPE (what GET /metrics serves).
func (s *Server) WriteMetrics(w io.Writer) error {
	c := promexp.NewCatalog(MetricFamilies(s.cfg.MetricsPrefix), promexp.Runtime)
	return promexp.Write(w, c, s.m.set.WritePrometheus, promexp.WriteProcess)
}

// Start listens on Config.Addr and serves in the background until Close.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Addr, err)
	}
	if err := s.register(ln); err != nil {
		return err
	}
	go s.serve(ln)
	return nil
}

// ListenAndServe listens on Config.Addr and serves until Close, then
// returns ErrClosed.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Close, then returns ErrClosed. It
// closes ln. It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.register(ln); err != nil {
		return err
	}
	return s.serve(ln)
}

// Run listens on Config.Addr, serves until ctx is done, then closes the
// server as Close does. It returns nil after a shutdown caused by ctx, or
// the error that stopped it.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// Addr returns the address of the first listener, or nil before Start or
// Serve. With port 0 in Config.Addr it tells the port picked.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// register adds ln to the listeners Close will close, and counts the Serve
// loop that is about to run on it.
func (s *Server) register(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		return ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.serveWG.Add(1)
	s.log.Info("listening", "addr", ln.Addr().String())
	return nil
}

func (s *Server) serve(ln net.Listener) error {
	defer s.serveWG.Done()
	addr := ln.Addr().String()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as
				// net/http does, instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("cannot accept connection; retrying", "addr", addr, "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			s.log.Error("cannot accept connections; listener stopped", "addr", addr, "err", err)
			return fmt.Errorf("cannot accept on %s: %w", addr, err)
		}
		backoff = 0
		c := newConn(s, nc, addr)
		if !s.track(c) {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a new connection; false once the server is closing.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.m.connections.Inc()
	s.m.active.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.active.Add(-1)
	s.connWG.Done()
}

// Close shuts the server down gracefully: it closes the listeners, sends
// GOAWAY on every connection, lets connections resolve what they have
// (DATA arriving after GOAWAY gets BUSY retry-after 0) until their peers
// hang up or Config.DrainTimeout passes, then closes the rest, cancels
// running handlers' contexts and waits for every goroutine it started —
// for at most DrainTimeout more (at least a second): a Handler that
// ignores its context (blocked writing to a full pipe, say) does not hold
// Close forever. Close then returns an error saying how many are still
// running, and leaves them. Later calls wait for the first one and return
// what it returned.
func (s *Server) Close() error {
	s.closeOnce.Do(s.shutdown)
	s.serveWG.Wait()
	if s.closeErr == nil {
		s.connWG.Wait()
	}
	return s.closeErr
}

func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	lns := s.listeners
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, ln := range lns {
		s.log.Info("closing listener", "addr", ln.Addr().String())
		ln.Close()
	}
	s.serveWG.Wait()
	addr := s.addrString(lns)

	s.log.Info("sending GOAWAY", "addr", addr, "connections", len(conns))
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.goAway()
		}()
	}
	wg.Wait()

	drained := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(drained)
	}()
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-drained:
		s.log.Info("connections drained", "addr", addr)
	case <-t.C:
		s.mu.Lock()
		left := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			left = append(left, c)
		}
		s.mu.Unlock()
		s.log.Warn("drain timeout; closing connections", "addr", addr, "connections", len(left), "drain_timeout", s.cfg.DrainTimeout)
		for _, c := range left {
			c.kill()
		}
		grace := max(s.cfg.DrainTimeout, time.Second)
		t.Reset(grace)
		select {
		case <-drained:
		case <-t.C:
			s.mu.Lock()
			n := len(s.conns)
			s.mu.Unlock()
			s.closeErr = fmt.Errorf("server: %d connections' handlers still running %v after their connections were closed and their contexts cancelled; not waiting for them", n, grace)
			s.log.Error("handlers ignore their cancelled context; stopping without them", "addr", addr, "connections", n, "waited", grace)
			return
		}
	}
	s.log.Info("server stopped", "addr", addr)
}

func (s *Server) addrString(lns []net.Listener) string {
	if len(lns) == 0 {
		return s.cfg.Addr
	}
	return lns[0].Addr().String()
}
