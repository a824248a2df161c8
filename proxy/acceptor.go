package proxy

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// acceptor serves a listener off the event loops: it accepts on a
// goroutine and runs serve on a goroutine per connection. close stops
// accepting, closes every connection still in serve and waits for every
// goroutine. TCP syslog (a reader per connection) and the transport
// listener (a handshake per connection, then the bridge) are acceptors.
type acceptor struct {
	what  string // for logs: "syslog", "wrapped agent"
	log   *slog.Logger
	ln    net.Listener
	serve func(net.Conn)
	// admit, if set, decides each accepted connection before serve: one
	// it refuses is closed at once (the allow-list).
	admit func(net.Conn) bool

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	active atomic.Int64 // connections in serve
}

func newAcceptor(what string, log *slog.Logger, ln net.Listener, serve func(net.Conn)) *acceptor {
	return &acceptor{what: what, log: log, ln: ln, serve: serve, conns: map[net.Conn]struct{}{}}
}

func (a *acceptor) start() {
	a.wg.Add(1)
	go a.accept()
}

func (a *acceptor) accept() {
	defer a.wg.Done()
	var backoff time.Duration
	for {
		nc, err := a.ln.Accept()
		if err != nil {
			if a.isClosed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as net/http
				// does, instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				a.log.Warn("cannot accept "+a.what+" connection; retrying", "addr", a.ln.Addr().String(), "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			a.log.Error("cannot accept "+a.what+" connections; listener stopped", "addr", a.ln.Addr().String(), "err", err)
			return
		}
		backoff = 0
		if a.admit != nil && !a.admit(nc) {
			nc.Close()
			continue
		}
		if !a.track(nc) {
			nc.Close()
			return
		}
		go func() {
			defer a.untrack(nc)
			a.serve(nc)
		}()
	}
}

func (a *acceptor) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

func (a *acceptor) track(nc net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.conns[nc] = struct{}{}
	a.wg.Add(1)
	a.active.Add(1)
	return true
}

func (a *acceptor) untrack(nc net.Conn) {
	a.mu.Lock()
	delete(a.conns, nc)
	a.mu.Unlock()
	a.active.Add(-1)
	a.wg.Done()
}

// close stops accepting, closes the connections still being served and
// waits for every goroutine.
func (a *acceptor) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.ln.Close()
	for nc := range a.conns {
		nc.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}
