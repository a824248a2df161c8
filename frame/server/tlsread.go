package server

import (
	"crypto/tls"
	"errors"
	"net"
)

// How a TLS connection is read. crypto/tls returns one record (at most 16
// KiB) per Read, and reads the socket in pieces of about a record. The
// frame reader's buffer would then hold one record at a time, and a frame
// cut by the record's end would look incomplete: the connection would
// answer (one write, one wake-up of the client) every 16 KiB instead of
// every buffer's worth, as it does in plaintext. So under the record
// layer a readAhead reads the socket in large pieces, and above it a
// tlsSource returns every record already received in one Read.

// readAheadSize is how much of the socket one read takes.
const readAheadSize = 64 << 10

// readAhead is the net.Conn under a server's tls.Conn: it reads the socket
// readAheadSize at a time. While its tlsSource gathers records, a read
// with nothing buffered answers errWouldBlock instead of waiting.
type readAhead struct {
	net.Conn
	buf     []byte // received, not yet taken: buf[off:]
	off     int
	gather  bool // set by tlsSource: do not block
	scratch []byte
}

// errWouldBlock is temporary: crypto/tls keeps a partial record for the
// next read instead of failing the connection (conn.go, readRecordOrCCS).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "frame/server: no TLS input buffered" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (r *readAhead) Read(p []byte) (int, error) {
	if r.off < len(r.buf) {
		n := copy(p, r.buf[r.off:])
		r.off += n
		return n, nil
	}
	if r.gather {
		return 0, errWouldBlock
	}
	if len(p) >= readAheadSize {
		return r.Conn.Read(p)
	}
	if r.scratch == nil {
		r.scratch = make([]byte, readAheadSize)
	}
	n, err := r.Conn.Read(r.scratch)
	r.buf, r.off = r.scratch[:n], 0
	m := copy(p, r.buf)
	r.off = m
	return m, err
}

// CloseWrite half-closes the socket (crypto/tls's CloseWrite sends
// close_notify, then the caller may half-close).
func (r *readAhead) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// tlsSource is what the frame reader of a TLS connection reads: a Read
// waits for the first record, then takes every record already received
// that fits.
type tlsSource struct {
	tc *tls.Conn
	ra *readAhead
}

func (s *tlsSource) Read(p []byte) (int, error) {
	n, err := s.tc.Read(p)
	if err != nil || n == 0 {
		return n, err
	}
	s.ra.gather = true
	for n < len(p) {
		m, err := s.tc.Read(p[n:])
		n += m
		if err != nil {
			// errWouldBlock: nothing more received yet. Any other error
			// (crypto/tls keeps it) comes back at the next Read.
			break
		}
	}
	s.ra.gather = false
	return n, nil
}
