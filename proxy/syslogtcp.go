package proxy

import (
	"bytes"
	"errors"
	"net"
	"net/netip"

	"github.com/panjf2000/gnet/v2"
)

// TCP syslog (RFC 6587) on SyslogTCP: the agent engine's second listener.
// A connection's messages go through the same parser and per-sender
// batches as datagrams, on the loop that accepted it. Both framings are
// accepted, told apart by each frame's first byte as RFC 6587 section 3.4
// says: a digit starts octet counting ("LEN SP MSG"), anything else is
// non-transparent framing (MSG LF). Syslog over TCP has no acknowledgement
// either: gnet keeps reading, so a full queue drops packets (counted) as it
// does for UDP.

// maxSyslogFrame bounds one TCP syslog message, like a datagram.
const maxSyslogFrame = maxDatagram

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

// syslogConn is a TCP syslog connection's state.
type syslogConn struct {
	lp   *loop
	addr netip.Addr
}

// openSyslogConn sets up a TCP syslog connection; during shutdown it is
// closed at once (see Server.stop).
func (lp *loop) openSyslogConn(c gnet.Conn) gnet.Action {
	if lp.syslog == nil {
		lp.syslog = newSyslogIngest(lp.s)
		lp.maxBuf = max(lp.maxBuf, lp.s.cfg.SyslogBatchBytes+64+64)
	}
	sc := &syslogConn{lp: lp}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		sc.addr = ta.AddrPort().Addr().Unmap()
	}
	c.SetContext(sc)
	lp.m.syslogTCPConns.Add(1)
	if lp.s.draining.Load() {
		return gnet.Close
	}
	return gnet.None
}

func (sc *syslogConn) onTraffic(c gnet.Conn) gnet.Action {
	lp := sc.lp
	m := lp.m
	action := gnet.None
	for {
		buf, _ := c.Peek(-1)
		msg, n, clipped, err := nextSyslogFrame(buf, maxSyslogFrame)
		if err != nil {
			m.syslogTCPFraming.Inc()
			lp.s.log.Debug("closing syslog TCP connection", "remote", c.RemoteAddr().String(), "err", err)
			action = gnet.Close
			break
		}
		if n == 0 {
			break
		}
		if clipped {
			m.syslogClipped.Inc()
		}
		m.syslogTCPMessages.Inc()
		m.syslogBytes.Add(n)
		switch {
		case len(msg) == 0:
			m.syslogEmpty.Inc()
		case lp.s.draining.Load():
			// Shutting down (see Server.stop): count what was read and
			// close, so the sender queues the rest for its next connection.
			m.syslogShutdownDropped.Inc()
			action = gnet.Close
		default:
			lp.ingestSyslog(msg, sc.addr)
		}
		_, _ = c.Discard(n)
	}
	lp.requestFlush()
	return action
}
