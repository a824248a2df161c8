package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
)

// Version is the client's software version, sent in HELLO as
// "logdist-client/<Version>".
const Version = "0.1.0"

// Config configures a Client. Start from DefaultConfig and change what you
// need; New calls Validate and refuses an invalid Config. Zero values are not
// replaced by defaults.
type Config struct {
	// Addrs lists one or more logdist (or analyzer) addresses, host:port.
	// The client connects to the first and moves round-robin to the next one
	// after a lost connection, a failed dial or a GOAWAY.
	Addrs []string

	// AgentID identifies this agent in HELLO and in every packet; packet ids
	// are unique per agent id. 1-255 bytes, at most Limits.MaxField.
	AgentID string

	// Token is the auth token sent in HELLO (empty: none). A server that
	// rejects it makes the client fail for good (see ErrAuth).
	Token string

	// Window is the number of DATA frames the client wants unresolved at
	// once on a connection. The server may grant fewer in WELCOME; the
	// client never exceeds the granted window.
	Window int

	// BatchMessages is the most messages put in one packet.
	BatchMessages int

	// BatchBytes seals a packet once its messages' encoded size (before
	// compression) reaches this many bytes. A packet is also split further
	// when its compressed frame exceeds the server's max frame.
	BatchBytes int

	// Linger is how long a packet that is not full waits for more messages
	// before it is sent. 0 sends a packet as soon as Send returns.
	Linger time.Duration

	// Compress enables zstd compression of DATA payloads (used only if the
	// server grants the zstd capability).
	Compress bool

	// Level is the zstd level used when Compress is set.
	Level zstd.EncoderLevel

	// Dicts are zstd dictionaries (frame.LoadDicts) the client may
	// compress with, in order of preference. With Compress and at least
	// one, HELLO offers the dict capability, and packets are compressed
	// with the first dictionary the server's WELCOME lists (with none when
	// it lists none: a server without dictionaries gets packets as
	// today). Small packets gain most: see docs/PERFORMANCE.md, "zstd
	// dictionaries". Nil: no dictionary.
	Dicts frame.Dicts

	// DictLevel is the zstd level used when compressing with a dictionary.
	// With one, SpeedFastest compresses logs about as well as SpeedDefault
	// (better for 1-message packets, 2-4% worse for larger ones) in a
	// quarter to a half of its time: the encoder restores the
	// dictionary's match tables for every packet, which costs more with
	// the larger tables of the higher levels (docs/PERFORMANCE.md).
	DictLevel zstd.EncoderLevel

	// FastDecode, with Compress, compresses without entropy-coding the
	// literals (frame.Encoder.FastDecode): any zstd decoder reads the
	// packets, and decodes them several times faster, for more bytes on
	// the wire. Without a dictionary, 10-message packets of log text come
	// out about a quarter larger and decode about 3× faster; with one
	// they stay smaller than without a dictionary (docs/PERFORMANCE.md,
	// "Literals without entropy coding"). For analyzers whose CPU is
	// scarcer than the network.
	FastDecode bool

	// MaxPending bounds the memory the client holds, in bytes: the encoded
	// (uncompressed) size of every message accepted by Send and not yet
	// resolved — still batching, queued, or in flight. When the next
	// message would exceed it, Send blocks or fails (see Block). A single
	// message is always accepted when nothing is pending.
	MaxPending int

	// Block makes Send wait, when MaxPending is reached, until there is room
	// or its context is done. Without it Send returns ErrFull at once.
	Block bool

	// TLS, if not nil, makes every connection TLS (tlsconf.NewClient builds
	// one from PEM files: a CA to verify the server with, and a client
	// certificate for mTLS). With no ServerName, the host of the address
	// dialled is the name the server's certificate must have.
	TLS *tls.Config

	// DialTimeout bounds connecting to an address and the HELLO/WELCOME
	// handshake.
	DialTimeout time.Duration

	// BackoffMin and BackoffMax bound the exponential backoff, with jitter,
	// between reconnect attempts. The delay doubles after every failed
	// attempt and starts again from BackoffMin once a connection has
	// proved useful (an ACK, or it lived longer than BackoffMax). Each
	// wait is drawn from [d/2, d], so a fleet that lost its server comes
	// back spread over half the cap rather than all at once. The default
	// cap, 2 s, brings agents back within 2 s of a restarted server (it
	// was 10 s: agents came back up to 8 s after logdist did).
	BackoffMin, BackoffMax time.Duration

	// Limits are the receiver's limits; every message is checked against
	// them in Send, so that a packet the server would reject as malformed
	// is refused locally instead. MaxFrame also caps the frames sent (the
	// server's WELCOME may lower it further).
	Limits frame.Limits

	// PingInterval is how often an idle connection is pinged when the
	// server announces no idle timeout. With an idle timeout the client
	// pings after a third of it without sending anything.
	PingInterval time.Duration

	// PongTimeout is how long the client waits for the PONG to its PING,
	// and for one write to complete, before it treats the connection as
	// dead and reconnects.
	PongTimeout time.Duration

	// CloseTimeout bounds how long Close waits for the pending messages to
	// be resolved before it drops them and closes. 0: Close does not wait.
	CloseTimeout time.Duration

	// OnResult, if set, is called once for every packet when it is
	// resolved: acknowledged (Result.Err nil) or rejected for good. It runs
	// on a connection goroutine, so it must not block, nor call Flush or a
	// blocking Send (they wait for that goroutine); Stats is fine.
	OnResult func(Result)

	// Trace, if set, is called once for each packet as it is encoded
	// (before its first send) with the packet's id; when it returns true
	// the packet carries that W3C trace context (PROTOCOL.md 4.7), for
	// logdist and the analyzer to continue the trace. A server that does
	// not grant the trace capability gets the packet without it. Nil: no
	// packet carries one, at no cost.
	Trace func(packetID uint64) (frame.TraceContext, bool)

	// Logger receives connection events (connects, losses, GOAWAY,
	// rejections). Nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a Config for one logdist on 127.0.0.1:7400: window
// 64, 100 messages or 256 KiB per packet, 5 ms linger, zstd on (default
// level; fastest with a dictionary), 64 MiB
// pending, Send fails with ErrFull when full, 5 s dial timeout, backoff
// 100 ms to 10 s, the default frame limits.
func DefaultConfig() Config {
	return Config{
		Addrs:         []string{"127.0.0.1:7400"},
		AgentID:       "agent",
		Window:        64,
		BatchMessages: 100,
		BatchBytes:    256 << 10,
		Linger:        5 * time.Millisecond,
		Compress:      true,
		Level:         zstd.SpeedDefault,
		DictLevel:     zstd.SpeedFastest,
		MaxPending:    64 << 20,
		DialTimeout:   5 * time.Second,
		BackoffMin:    100 * time.Millisecond,
		BackoffMax:    2 * time.Second,
		Limits:        frame.DefaultLimits(),
		PingInterval:  30 * time.Second,
		PongTimeout:   10 * time.Second,
		CloseTimeout:  5 * time.Second,
	}
}

// Validate reports the first invalid field of c.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.Dicts.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if len(c.Addrs) == 0 {
		return bad("no address: set Addrs to at least one host:port")
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("address %q is not host:port: %v", a, err)
		}
	}
	switch {
	case len(c.AgentID) == 0 || len(c.AgentID) > frame.MaxAgentID || len(c.AgentID) > int(c.Limits.MaxField):
		return bad("agent id %q must be 1-%d bytes", c.AgentID, min(frame.MaxAgentID, int(c.Limits.MaxField)))
	case len(c.Token) > frame.MaxToken:
		return bad("token longer than %d bytes", frame.MaxToken)
	case c.Window < 1:
		return bad("window %d must be at least 1", c.Window)
	case c.BatchMessages < 1 || uint64(c.BatchMessages) > uint64(c.Limits.MaxMessages):
		return bad("batch messages %d not in [1, %d]", c.BatchMessages, c.Limits.MaxMessages)
	case c.BatchBytes < 1 || c.BatchBytes+packetOverhead+len(c.AgentID) > int(c.Limits.MaxRaw):
		return bad("batch bytes %d not in [1, max raw %d minus the packet header]", c.BatchBytes, c.Limits.MaxRaw)
	case c.Linger < 0:
		return bad("linger %v is negative", c.Linger)
	case c.Compress && (c.Level < zstd.SpeedFastest || c.Level > zstd.SpeedBestCompression):
		return bad("zstd level %d not in [%d, %d]", c.Level, zstd.SpeedFastest, zstd.SpeedBestCompression)
	case c.Compress && len(c.Dicts) > 0 && (c.DictLevel < zstd.SpeedFastest || c.DictLevel > zstd.SpeedBestCompression):
		return bad("zstd dictionary level %d not in [%d, %d]", c.DictLevel, zstd.SpeedFastest, zstd.SpeedBestCompression)
	case c.FastDecode && !c.Compress:
		return bad("fast decode is a way to compress: set Compress too")
	case c.MaxPending < 1:
		return bad("max pending %d must be at least 1 byte", c.MaxPending)
	case c.DialTimeout <= 0:
		return bad("dial timeout %v must be positive", c.DialTimeout)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return bad("backoff [%v, %v] must satisfy 0 < min <= max", c.BackoffMin, c.BackoffMax)
	case c.PingInterval <= 0:
		return bad("ping interval %v must be positive", c.PingInterval)
	case c.PongTimeout <= 0:
		return bad("pong timeout %v must be positive", c.PongTimeout)
	case c.CloseTimeout < 0:
		return bad("close timeout %v is negative", c.CloseTimeout)
	}
	return nil
}
