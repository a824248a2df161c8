package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// Config configures a Server. Start from DefaultConfig and change what you
// need; New calls Validate.
type Config struct {
	// Addr is the TCP address Start and ListenAndServe listen on, e.g.
	// "127.0.0.1:7501"; port 0 picks a free port (see Server.Addr).
	Addr string

	// Limits bounds every frame and packet a client sends. Limits.MaxFrame
	// is the max frame size granted in WELCOME.
	Limits frame.Limits

	// MetricsPrefix starts the names of the server's metrics
	// (DefaultMetricsPrefix, "frame_server", when empty): an application
	// names them after itself, as analyzerd does with "analyzerd_server".
	MetricsPrefix string

	// Window is the most DATA frames a client may have unresolved at once.
	// A client asking for less gets what it asked for.
	Window uint32

	// Concurrency is how many packets of one connection may be handled at
	// once: up to Concurrency HandlePacket calls run concurrently per
	// connection, each on a goroutine of its own, while the connection's
	// read goroutine decodes the next DATA frames. When all are busy the
	// connection stops reading (backpressure). Packets may then complete
	// out of order; each is resolved on the wire as its handler says, and
	// the cumulative ACK moves once every earlier packet is resolved. It
	// lets an analyzer whose handler waits (a database write, say) serve
	// more than 1/latency packets a second per connection. Memory: up to
	// Concurrency decoded packets (and their frames) per connection, and
	// as many goroutines: a slot, made the first time every other one is
	// busy, keeps its goroutine until the connection ends.
	//
	// 1 (the default; 0 means 1 too) calls the handler synchronously on
	// the read goroutine, one packet at a time, in sequence order. At most
	// 1024.
	Concurrency int

	// MaxConns caps the number of open connections; a connection above it
	// gets ERROR overloaded and is closed. 0 means no cap.
	MaxConns int

	// HandshakeTimeout is how long a new connection has to deliver its
	// HELLO before it gets ERROR handshake_timeout and is closed.
	HandshakeTimeout time.Duration

	// IdleTimeout closes (ERROR idle_timeout) a connection on which no
	// complete frame arrived for this long. It is a deadline per frame, not
	// per byte, so a peer trickling a byte at a time is closed too. It is
	// announced in WELCOME so that clients PING well within it.
	IdleTimeout time.Duration

	// WriteTimeout bounds every write to a client; a client that does not
	// read its ACKs for this long is dropped.
	WriteTimeout time.Duration

	// DrainTimeout is how long Close lets connections finish after GOAWAY
	// before closing them (and cancelling the context of running handlers).
	DrainTimeout time.Duration

	// BusyRetryAfter is the retry-after sent in BUSY when a Handler returns
	// ErrBusy (or an unclassified error) without a retry-after of its own.
	BusyRetryAfter time.Duration

	// ServerID is sent in WELCOME (free text, at most 255 bytes), e.g.
	// "analyzerd/a1".
	ServerID string

	// Dicts are the zstd dictionaries (frame.LoadDicts) packets may be
	// compressed with: WELCOME lists their ids to clients that offer the
	// dict capability. A packet naming another is rejected with
	// unknown_dictionary (counted in packets_rejected_total). Nil: none.
	Dicts frame.Dicts

	// TLS, if not nil, makes every connection TLS (tlsconf.NewServer builds
	// one from PEM files, reloadable; with a client CA, clients must present
	// a certificate, whose identity the connection then acts as). The
	// handshake counts against HandshakeTimeout; a plaintext client gets
	// ERROR bad_handshake in the clear.
	TLS *tls.Config

	// Auth, if not nil, is asked about every HELLO (see session.Auth: the
	// same hook logdist uses); an error refuses the connection with ERROR
	// auth, the error's text being the reason sent. It runs on the
	// connection's goroutine: it may block, within HandshakeTimeout's
	// spirit.
	Auth session.Auth

	// Logger receives the server's logs; nil means slog.Default(). Every
	// record carries component=frame/server and the listen address.
	Logger *slog.Logger
}

// DefaultConfig returns a Config that works on one host: 127.0.0.1:7501,
// frame.DefaultLimits, a window of 1024 packets, one packet handled at a
// time per connection, 10 s handshake, 60 s idle,
// 10 s write and 10 s drain timeouts, 100 ms busy retry-after.
func DefaultConfig() Config {
	return Config{
		Addr:             "127.0.0.1:7501",
		Limits:           frame.DefaultLimits(),
		Window:           1024,
		Concurrency:      1,
		HandshakeTimeout: 10 * time.Second,
		IdleTimeout:      60 * time.Second,
		WriteTimeout:     10 * time.Second,
		DrainTimeout:     10 * time.Second,
		BusyRetryAfter:   100 * time.Millisecond,
	}
}

// MaxConcurrency is the largest Config.Concurrency.
const MaxConcurrency = 1024

// concurrency is Config.Concurrency, 0 meaning 1.
func (c *Config) concurrency() int { return max(c.Concurrency, 1) }

// ErrBadConfig is wrapped by every error Validate returns.
var ErrBadConfig = errors.New("server: invalid config")

// Validate reports the first setting that cannot work, with the fix.
func (c *Config) Validate() error {
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if err := c.Dicts.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	switch {
	case c.Window == 0:
		return fmt.Errorf("%w: window must be at least 1", ErrBadConfig)
	case c.Concurrency < 0 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("%w: concurrency %d not in [1, %d] (packets handled at once per connection)", ErrBadConfig, c.Concurrency, MaxConcurrency)
	case c.MaxConns < 0:
		return fmt.Errorf("%w: max conns %d is negative (0 means no cap)", ErrBadConfig, c.MaxConns)
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("%w: handshake timeout must be positive", ErrBadConfig)
	case c.IdleTimeout < time.Millisecond || c.IdleTimeout > time.Duration(1<<32-1)*time.Millisecond:
		return fmt.Errorf("%w: idle timeout %s not in [1ms, 49d]", ErrBadConfig, c.IdleTimeout)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("%w: write timeout must be positive", ErrBadConfig)
	case c.DrainTimeout < 0:
		return fmt.Errorf("%w: drain timeout must not be negative", ErrBadConfig)
	case c.BusyRetryAfter < 0 || c.BusyRetryAfter > time.Duration(1<<32-1)*time.Millisecond:
		return fmt.Errorf("%w: busy retry-after %s not in [0, 49d]", ErrBadConfig, c.BusyRetryAfter)
	case len(c.ServerID) > frame.MaxSoftware:
		return fmt.Errorf("%w: server id longer than %d bytes", ErrBadConfig, frame.MaxSoftware)
	}
	return nil
}

// sessionConfig is what every connection's protocol session grants and
// enforces: zstd (no SACK: with Concurrency 1 a handler resolves packets
// in order, so the cumulative ACK says everything; with more, packets
// complete at most Concurrency apart, and the cumulative ACK waits for
// the oldest of them).
func (c *Config) sessionConfig() session.ServerConfig {
	return session.ServerConfig{
		Limits:      c.Limits,
		Window:      c.Window,
		Grant:       frame.CapZstd | frame.CapTrace,
		IdleTimeout: c.IdleTimeout,
		ServerID:    c.ServerID,
		Auth:        c.Auth,
		Dicts:       c.Dicts.IDs(),
	}
}

// newDecoder returns a packet decoder under the limits, holding the
// dictionaries.
func (c *Config) newDecoder() *frame.Decoder {
	d := frame.NewDecoder(c.Limits)
	d.Dicts = c.Dicts
	return d
}
