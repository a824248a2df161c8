package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/logdist/logdist/internal/tlsconf"
	"golang.org/x/sys/unix"
)

// Transport wraps the connections of one hop before the event loops serve
// them: TLS is a Transport. The handshake runs on a goroutine per
// connection, off the loops.
//
// A TLS connection of the TLSTransport (crypto/tls over a recordConn over
// a TCP socket) is handed over to a loop, which runs its record layer on
// gnet's buffers (looptls.go): no goroutine, no copy through the kernel
// beyond the socket's own. Any other wrapped connection is bridged:
//
//	peer ⇄ [wrapped conn]  goroutine pump ⇄ socketpair ⇄ event loop
//
// Two goroutines per bridged connection (pumps) copy plaintext to and from
// one end of a Unix socketpair; the other end is enrolled on an event loop
// and served exactly like a plain TCP connection. The kernel's socket
// buffers carry the backpressure both ways. The cost is two more copies
// and system calls per direction per read (measured in
// docs/PERFORMANCE.md). Either way nothing on the per-packet path knows
// about the transport.
type Transport interface {
	// Server wraps a connection accepted on Config.TransportListen and
	// completes its handshake; ctx bounds it (HandshakeTimeout).
	Server(ctx context.Context, nc net.Conn) (net.Conn, error)
	// Client wraps a connection dialed to the analyzer at addr, whose
	// identity must be serverName (empty: the host of addr), and completes
	// its handshake; ctx bounds it (DialTimeout).
	Client(ctx context.Context, nc net.Conn, addr, serverName string) (net.Conn, error)
}

// bridgedAgent is the gnet context of an agent connection from the
// transport listener (bridged, or inside a loop-native tlsConn), until
// OnOpen replaces it: the peer's address and its verified certificate's
// identity ("" if none).
type bridgedAgent struct {
	remote   net.Addr
	identity string
}

// bridge connects wrapped to a new socketpair and returns the pair's
// other end, to be enrolled on a loop. Two goroutines pump bytes between
// wrapped and the pair until either side closes; then both are closed.
func (s *Server) bridge(wrapped net.Conn) (*net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proxy: cannot create a socketpair for a wrapped connection: %w", err)
	}
	loopEnd, err := fileConn(fds[0], "bridge-loop")
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	pumpEnd, err := fileConn(fds[1], "bridge-pump")
	if err != nil {
		loopEnd.Close()
		return nil, err
	}
	p := &pump{wrapped: wrapped, pair: pumpEnd}
	s.bg.Add(2)
	go p.run(s, wrapped, pumpEnd, true)
	go p.run(s, pumpEnd, wrapped, false)
	return loopEnd, nil
}

func fileConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // dups the descriptor
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("proxy: cannot use a socketpair end: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// pump copies one direction of a bridged connection.
type pump struct {
	wrapped net.Conn
	pair    *net.UnixConn
	once    sync.Once
}

func (p *pump) run(s *Server, from, to net.Conn, inbound bool) {
	defer s.bg.Done()
	buf := make([]byte, 32<<10)
	var err error
	if tc, ok := from.(*tls.Conn); ok {
		err = copyRecords(to, tc, buf)
	} else {
		_, err = io.CopyBuffer(to, from, buf)
	}
	if inbound && err == nil {
		// The peer finished sending: pass the end of stream on and let the
		// loop's answers still flow out until it closes.
		if p.pair.CloseWrite() == nil {
			return
		}
	}
	p.closeBoth()
}

// copyRecords copies from a TLS connection to w until EOF (nil) or an
// error, writing once per batch of records rather than once per record:
// crypto/tls returns one record per Read, while one read from the socket
// often brings many (an agent writes a record per frame). After a
// blocking Read, Reads under an expired deadline take the records already
// received without waiting (crypto/tls keeps a timeout from being sticky),
// until the buffer is nearly full or none is left. One system call to the
// socketpair, and one wake-up of the loop, per batch.
func copyRecords(w io.Writer, tc *tls.Conn, buf []byte) error {
	const maxRecord = 16 << 10 // the largest plaintext a record carries
	past := time.Unix(1, 0)
	for {
		n, err := tc.Read(buf)
		if err == nil && n > 0 {
			_ = tc.SetReadDeadline(past)
			for n <= len(buf)-maxRecord {
				m, rerr := tc.Read(buf[n:])
				n += m
				if rerr != nil {
					if ne, ok := rerr.(net.Error); !ok || !ne.Timeout() {
						err = rerr
					}
					break
				}
			}
			_ = tc.SetReadDeadline(time.Time{})
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (p *pump) closeBoth() {
	p.once.Do(func() {
		p.wrapped.Close()
		p.pair.Close()
	})
}

// transportListener accepts agents on Config.TransportListen, wraps each
// connection with the agent transport on a goroutine and hands it over to
// a loop (loop-native TLS) or bridges it into one. Its acceptor tracks a
// connection only until then: close ends the handshakes in progress, and
// the connections on the loops live until the drain ends.
type transportListener struct {
	s  *Server
	ac *acceptor
}

func listenTransport(s *Server, addr string) (*transportListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: cannot listen for agents on %s: %w", addr, err)
	}
	s.log.Info("listening for wrapped agent connections", "addr", ln.Addr().String())
	t := &transportListener{s: s}
	t.ac = newAcceptor("wrapped agent", s.log, ln, t.open)
	t.ac.admit = func(nc net.Conn) bool {
		if s.conf.Load().allowsConn(nc) {
			return true
		}
		s.allowRefused.agentTLS.Inc()
		return false
	}
	return t, nil
}

// TransportAddr returns the address of the transport listener, or nil.
func (s *Server) TransportAddr() net.Addr {
	if s.wrapped == nil {
		return nil
	}
	return s.wrapped.ac.ln.Addr()
}

func (t *transportListener) start() { t.ac.start() }
func (t *transportListener) close() { t.ac.close() }

// open wraps one accepted connection and enrolls it (or its bridge) on a
// loop.
func (t *transportListener) open(nc net.Conn) {
	s := t.s
	conf := s.conf.Load()
	ctx, cancel := context.WithTimeout(s.ctx, conf.HandshakeTimeout)
	defer cancel()
	if err := t.enroll(ctx, nc, conf); err != nil {
		nc.Close()
		s.log.Debug("cannot serve wrapped agent connection", "remote", nc.RemoteAddr().String(), "err", err)
	}
}

func (t *transportListener) enroll(ctx context.Context, nc net.Conn, conf *settings) error {
	s := t.s
	w, err := conf.AgentTransport.Server(ctx, nc)
	if err != nil {
		s.transportFailures.Inc()
		return fmt.Errorf("transport handshake: %w", err)
	}
	lp := s.nextLoop()
	if lp == nil {
		w.Close()
		return errors.New("no event loop to serve it")
	}
	ba := &bridgedAgent{remote: nc.RemoteAddr()}
	if tc, ok := w.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := tc.ConnectionState()
		ba.identity = tlsconf.Identity(&cs)
	}
	if sock, x, ok := handOver(w, ba); ok {
		return s.enroll(lp.el, sock, x)
	}
	loopEnd, err := s.bridge(w)
	if err != nil {
		w.Close()
		return err
	}
	return s.enroll(lp.el, loopEnd, ba)
}
