package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/tlsconf"
)

// TLSTransport is the Transport of TLS hops (crypto/tls, TLS 1.2 at
// least). ServerConfig and ClientConfig return the configuration in force
// at each handshake (tlsconf.Config's Get), so that a reload of the
// certificates reaches new connections while the open ones go on.
type TLSTransport struct {
	ServerConfig func() *tls.Config // agents' hop; nil: none
	ClientConfig func() *tls.Config // analyzers' hop; nil: none
}

// Server runs the server side of the handshake. A plaintext client is told
// so in its own protocol: ERROR bad_handshake, in the clear.
func (t TLSTransport) Server(ctx context.Context, nc net.Conn) (net.Conn, error) {
	if t.ServerConfig == nil {
		return nil, errors.New("no TLS server configuration")
	}
	tc := tls.Server(&recordConn{Conn: nc}, t.ServerConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil {
			rh.Conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = rh.Conn.Write(frame.AppendError(nil, 0, frame.CodeBadHandshake, "this port speaks TLS: connect with TLS"))
			// Half-close and drain a little before the caller closes, so
			// that the reset of unread input does not destroy the ERROR.
			if cw, ok := rh.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				_, _ = io.CopyN(io.Discard, rh.Conn, 64<<10)
			}
			return nil, fmt.Errorf("a plaintext client on the TLS port (answered ERROR bad_handshake): %w", err)
		}
		return nil, err
	}
	return tc, nil
}

// Client runs the client side of the handshake with the analyzer at addr,
// whose certificate must name serverName (empty: the host of addr).
func (t TLSTransport) Client(ctx context.Context, nc net.Conn, addr, serverName string) (net.Conn, error) {
	if t.ClientConfig == nil {
		return nil, errors.New("no TLS client configuration")
	}
	cfg := t.ClientConfig()
	if serverName != "" {
		cfg = cfg.Clone()
		cfg.ServerName = serverName
	}
	return tlsconf.Handshake(ctx, &recordConn{Conn: nc}, cfg, addr)
}
