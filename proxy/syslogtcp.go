package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
)

// TCP syslog (RFC 6587) on SyslogTCP. Each connection is read by a
// goroutine of its own, off the event loops: it frames the stream (both
// framings, told apart by each frame's first byte as RFC 6587 section 3.4
// says: a digit starts octet counting, "LEN SP MSG"; anything else is
// non-transparent framing, "MSG LF") and hands the messages, a read's
// worth at a time, to one event loop, which parses and batches them as it
// does datagrams. When the loop's wait queue has no room for another
// batch, the loop takes no more and the goroutine stops reading until it
// has: TCP's flow control slows the sender down, and nothing is dropped
// (UDP senders, which cannot be slowed, are dropped and counted instead).
// The goroutine is also where syslog over TLS (RFC 5425) plugs in.

// maxSyslogFrame bounds one TCP syslog message, like a datagram.
const maxSyslogFrame = maxDatagram

// syslogPause is how long a connection waits before offering messages
// again to a loop whose queue was full.
const syslogPause = 20 * time.Millisecond

// Errors that close a TCP syslog connection.
var (
	errSyslogOctetCount = errors.New("proxy: syslog octet count malformed or above 65536")
)

// nextSyslogFrame finds the first complete RFC 6587 frame in b. It returns
// the message, the bytes the frame occupies, or n == 0 when more bytes are
// needed. A non-transparent frame longer than max is cut at max (the caller
// counts it); a malformed octet count is an error.
func nextSyslogFrame(b []byte, max int) (msg []byte, n int, clipped bool, err error) {
	if len(b) == 0 {
		return nil, 0, false, nil
	}
	if b[0] >= '1' && b[0] <= '9' {
		length, i := 0, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			length = length*10 + int(b[i]-'0')
			if length > max {
				return nil, 0, false, errSyslogOctetCount
			}
		}
		if i == len(b) {
			return nil, 0, false, nil // the count goes on in the next read
		}
		if b[i] != ' ' {
			return nil, 0, false, errSyslogOctetCount
		}
		end := i + 1 + length
		if len(b) < end {
			return nil, 0, false, nil
		}
		return b[i+1 : end], end, false, nil
	}
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 {
		if len(b) >= max {
			return b[:max], max, true, nil
		}
		return nil, 0, false, nil
	}
	msg = b[:lf]
	if len(msg) > max {
		msg, clipped = msg[:max], true
	}
	return bytes.TrimSuffix(msg, []byte{'\r'}), lf + 1, clipped, nil
}

// syslogTCP is a TCP syslog listener and its connections: plaintext
// (SyslogTCP) or TLS (SyslogTLS, RFC 5425: the same octet-counted frames
// inside TLS, wrapped by the agents' transport).
type syslogTCP struct {
	s         *Server
	ac        *acceptor
	transport Transport // nil: plaintext
	failures  *metrics.Counter

	messages, bytes, framing, clipped *metrics.Counter
	paused                            *metrics.Counter
	shutdownDropped                   atomic.Uint64
	shutdownDroppedCounter            *metrics.Counter
}

// listenSyslogTCP listens for syslog streams on addr, through transport
// when not nil (TLS). The TLS listener's metrics carry transport="tls".
func listenSyslogTCP(s *Server, addr string, transport Transport) (*syslogTCP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		kind := "tcp"
		if transport != nil {
			kind = "tls"
		}
		return nil, fmt.Errorf("proxy: cannot listen for syslog on %s %s: %w", kind, addr, err)
	}
	t := &syslogTCP{s: s, transport: transport}
	what, scheme, lbl := "syslog", "tcp://", `{transport="tcp"}`
	if transport != nil {
		what, scheme, lbl = "syslog over TLS", "tls://", `{transport="tls"}`
		t.failures = s.mset.GetOrCreateCounter("logdist_syslog_tls_handshake_failures_total")
	}
	t.ac = newAcceptor(what, s.syslogLog, ln, t.serve)
	refused := s.allowRefused.syslogTCP
	if transport != nil {
		refused = s.allowRefused.syslogTLS
	}
	t.ac.admit = func(nc net.Conn) bool {
		if s.conf.Load().allowsConn(nc) {
			return true
		}
		refused.Inc()
		return false
	}
	set := s.mset
	t.messages = set.GetOrCreateCounter("logdist_syslog_tcp_messages_total" + lbl)
	t.bytes = set.GetOrCreateCounter("logdist_syslog_tcp_bytes_total" + lbl)
	t.framing = set.GetOrCreateCounter("logdist_syslog_tcp_framing_errors_total" + lbl)
	t.clipped = set.GetOrCreateCounter("logdist_syslog_tcp_clipped_total" + lbl)
	t.paused = set.GetOrCreateCounter("logdist_syslog_tcp_paused_total" + lbl)
	t.shutdownDroppedCounter = set.GetOrCreateCounter("logdist_syslog_tcp_shutdown_dropped_total" + lbl)
	set.GetOrCreateGauge("logdist_syslog_tcp_connections"+lbl, func() float64 { return float64(t.ac.active.Load()) })
	s.syslogLog.Info("listening for syslog", "addr", scheme+ln.Addr().String())
	return t, nil
}

// SyslogTCPAddr returns the TCP syslog address, or nil when disabled.
func (s *Server) SyslogTCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.ac.ln.Addr()
}

// SyslogTLSAddr returns the syslog-over-TLS address, or nil when disabled.
func (s *Server) SyslogTLSAddr() net.Addr {
	if s.tlsSyslog == nil {
		return nil
	}
	return s.tlsSyslog.ac.ln.Addr()
}

func (t *syslogTCP) start() { t.ac.start() }

// close stops accepting, closes every connection (their senders queue the
// rest for their next connection) and waits for the goroutines.
func (t *syslogTCP) close() { t.ac.close() }

// serve reads one connection until it ends, handing its messages to an
// event loop.
func (t *syslogTCP) serve(nc net.Conn) {
	defer nc.Close()
	if t.transport != nil {
		ctx, cancel := context.WithTimeout(t.s.ctx, t.s.conf.Load().HandshakeTimeout)
		w, err := t.transport.Server(ctx, nc)
		cancel()
		if err != nil {
			t.failures.Inc()
			t.s.syslogLog.Debug("syslog TLS handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
			return
		}
		defer w.Close()
		nc = w
	}
	lp := t.s.nextLoop()
	if lp == nil {
		return
	}
	addr := addrOf(nc.RemoteAddr())
	buf := make([]byte, 0, 2*maxSyslogFrame)
	var msgs [][]byte
	done := make(chan int, 1)
	for {
		n, rerr := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		t.bytes.Add(n)
		msgs = msgs[:0]
		off := 0
		for {
			msg, k, clipped, err := nextSyslogFrame(buf[off:], maxSyslogFrame)
			if err != nil {
				t.framing.Inc()
				t.s.syslogLog.Debug("closing syslog TCP connection", "remote", nc.RemoteAddr().String(), "err", err)
				rerr = err
				break
			}
			if k == 0 {
				break
			}
			if clipped {
				t.clipped.Inc()
			}
			msgs = append(msgs, msg)
			off += k
		}
		t.messages.Add(len(msgs))
		if !t.hand(lp, msgs, addr, done) {
			return
		}
		buf = buf[:copy(buf, buf[off:])]
		if rerr != nil {
			return
		}
	}
}

// hand gives msgs to the loop, waiting (and not reading) while its queue
// is full; false when the connection must end (shutdown).
func (t *syslogTCP) hand(lp *loop, msgs [][]byte, addr netip.Addr, done chan int) bool {
	for len(msgs) > 0 {
		rest := msgs
		err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			done <- lp.ingestTCP(rest, addr, t)
			return nil
		}))
		if err != nil {
			return false // the engine is stopping
		}
		msgs = msgs[<-done:]
		if len(msgs) == 0 {
			break
		}
		t.paused.Inc()
		time.Sleep(syslogPause) // the queue drains on the loop's timer; nothing to wait on but time
		if t.ac.isClosed() {
			t.shutdownDropped.Add(uint64(len(msgs)))
			t.shutdownDroppedCounter.Add(len(msgs))
			return false
		}
	}
	return true
}

// ingestTCP takes messages from a TCP syslog connection, on the loop, and
// returns how many it took: all of them, or those before the wait queue
// ran out of room.
func (lp *loop) ingestTCP(msgs [][]byte, addr netip.Addr, t *syslogTCP) int {
	lp.initSyslog()
	lp.clock()
	defer lp.flush()
	for i, msg := range msgs {
		if lp.s.draining.Load() {
			// Shutting down (see Server.stop): count what was read; the
			// connection closes and the sender keeps the rest.
			t.shutdownDropped.Add(uint64(len(msgs) - i))
			t.shutdownDroppedCounter.Add(len(msgs) - i)
			return len(msgs)
		}
		if lp.syslogQueueFull() {
			return i
		}
		if len(msg) == 0 {
			lp.m.syslogEmpty.Inc()
			continue
		}
		lp.ingestSyslog(msg, addr)
	}
	return len(msgs)
}
