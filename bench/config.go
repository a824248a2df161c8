// Package bench is the load generator and measurer behind cmd/logbench. It
// speaks the agent side of the protocol over many connections, paces DATA
// frames to a rate or a load profile (or sends as fast as the window
// allows), measures send → ACK latency end to end, and, given logdist's
// admin API, reports how the packets were spread over the analyzers.
//
// The generator is built not to be the bottleneck: packet bodies are built
// and compressed before the clock starts, a pool of them per connection,
// and sending only copies a frame into a batched writer and stamps the
// copy: the header's sequence number, a packet id of its own (every packet
// sent is a new one to the receiver) and the checksum. One writer and one
// reader goroutine serve each connection.
//
// Latency is measured from the time a packet was due: at a fixed rate that
// is its place in the schedule, not when the writer got round to it, so a
// stalled system shows up in the percentiles instead of slowing the
// generator down with it (no coordinated omission). At rate 0 (as fast as
// the window allows) it is the time the frame was handed to the socket.
package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/logdist/logdist/frame"
)

// Config configures a Run. Start from DefaultConfig; Run calls Validate.
type Config struct {
	// Target is the host:port of logdist, an analyzer, or anything else
	// that speaks the protocol's server side; several, comma-separated,
	// spread the connections over them (connection i starts on the i-th,
	// round robin) and a connection that loses its server, or is told to
	// go away, reconnects to the next (several logdist instances).
	Target string

	// Conns is the number of connections sending DATA. 0 is allowed only
	// with IdleConns (a memory measurement without traffic).
	Conns int

	// Rate is the total send rate in packets/s over all connections; 0
	// sends as fast as the window allows. Ignored when Profile is set.
	Rate float64

	// Duration is how long to send. Used when Packets is 0 and there is no
	// Profile (the profile has its own length).
	Duration time.Duration

	// Packets, if not 0, is the number of distinct packets to send (split
	// over the connections); the run ends when all are resolved.
	Packets int64

	// MsgsPerPacket is the number of messages in every packet.
	MsgsPerPacket int

	// MsgSize is the length of every message body in bytes: generated log
	// text with timestamps, levels, hosts, ids and varied values.
	MsgSize int

	// Compress sends zstd-compressed payloads (the server must grant zstd).
	Compress bool

	// Dict, with Compress, compresses the payloads with this zstd
	// dictionary (the server must list it in WELCOME).
	Dict *frame.Dict

	// FastDecode, with Compress, compresses without entropy-coding the
	// literals (frame.Encoder.FastDecode): larger packets that the
	// receiver decodes several times faster.
	FastDecode bool

	// Sack offers selective ACKs (frame.CapSack): packets are acknowledged
	// as their analyzer acknowledges them, each one's latency its own. A
	// server may not grant it; then cumulative ACKs resolve in order.
	Sack bool

	// TraceSample is the share of the pool's packets (0-1) that carry a
	// sampled W3C trace context (PROTOCOL.md 4.7), each its own trace:
	// what logdist and the analyzers do with traced packets is measured
	// (logbench exports no spans). The server must grant the trace
	// capability.
	TraceSample float64

	// Window is the window asked for in HELLO; the server may grant less,
	// and the granted window is what each connection keeps in flight.
	Window int

	// Profile, if not nil, paces the run by a load shape instead of Rate
	// and Duration.
	Profile *Schedule

	// ProfileName is reported with the result.
	ProfileName string

	// IdleConns is the number of extra connections that complete the
	// handshake and then only PING, held open for the whole run.
	IdleConns int

	// AgentID is sent in HELLO and in every packet. Empty: "logbench-<pid>".
	AgentID string

	// Admin is logdist's admin base URL (http://host:port); if set, the
	// per-analyzer counters are fetched before and after the run and the
	// result reports each analyzer's share of the run against its weight.
	Admin string

	// DrainTimeout bounds the wait for outstanding ACKs once sending
	// stops; packets still unresolved then are reported as unresolved.
	DrainTimeout time.Duration

	// DialTimeout bounds each connect and handshake.
	DialTimeout time.Duration

	// TLS, if not nil, makes every connection TLS (idle ones included).
	TLS *tls.Config

	// Progress, if not nil, receives a progress line every
	// ProgressInterval.
	Progress         io.Writer
	ProgressInterval time.Duration

	// OnIdleReady, if not nil, is called once every idle connection is
	// handshaken (or failed), before traffic starts, with the number open.
	OnIdleReady func(open int)

	// Limits bounds the frames read from the server.
	Limits frame.Limits

	// PoolSize is the number of packet bodies built per connection before
	// the clock starts (0: up to 2,048, about 64 Ki over all connections,
	// fewer if the run sends fewer). Bodies are reused; packet ids are not:
	// every packet sent carries an id of its own, stamped into the frame
	// as it is written.
	PoolSize int

	// Seed makes the generated text reproducible; 0 uses a fixed seed.
	Seed uint64
}

// DefaultConfig returns the defaults of cmd/logbench: 8 connections, as
// fast as the window allows for 10 s, 10 messages of 200 bytes per packet,
// zstd, a window of 256, 10 s drain and 5 s dial timeouts.
func DefaultConfig() Config {
	return Config{
		Target:           "127.0.0.1:7400",
		Conns:            8,
		Duration:         10 * time.Second,
		MsgsPerPacket:    10,
		MsgSize:          200,
		Compress:         true,
		Sack:             true,
		Window:           256,
		DrainTimeout:     10 * time.Second,
		DialTimeout:      5 * time.Second,
		ProgressInterval: time.Second,
		Limits:           frame.DefaultLimits(),
	}
}

// ErrConfig wraps every error Validate returns.
var ErrConfig = errors.New("bench: invalid config")

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Target == "":
		return bad("no target: give host:port of logdist or an analyzer")
	case c.Conns < 0 || c.IdleConns < 0:
		return bad("connection counts must not be negative")
	case c.Conns == 0 && c.IdleConns == 0:
		return bad("nothing to do: --conns and --idle-conns are both 0")
	case c.Rate < 0:
		return bad("rate %g is negative (0 means as fast as the window allows)", c.Rate)
	case c.Packets < 0:
		return bad("packets %d is negative", c.Packets)
	case c.Packets > 0 && c.Profile != nil:
		return bad("a profile sets its own length: drop --packets")
	case c.Packets == 0 && c.Profile == nil && c.Duration <= 0:
		return bad("give a positive duration or a packet count")
	case c.MsgsPerPacket < 1 || uint32(c.MsgsPerPacket) > c.Limits.MaxMessages:
		return bad("messages per packet %d not in [1, %d]", c.MsgsPerPacket, c.Limits.MaxMessages)
	case c.MsgSize < 1 || uint32(c.MsgSize) > c.Limits.MaxBody:
		return bad("message size %d not in [1, %d]", c.MsgSize, c.Limits.MaxBody)
	case uint64(c.MsgsPerPacket)*uint64(c.MsgSize+64) > uint64(c.Limits.MaxRaw):
		return bad("a packet of %d messages of %d bytes exceeds the %d-byte raw limit", c.MsgsPerPacket, c.MsgSize, c.Limits.MaxRaw)
	case c.Dict != nil && !c.Compress:
		return bad("a dictionary needs compression: drop --dict or --compress none")
	case c.FastDecode && !c.Compress:
		return bad("fast decode is a way to compress: drop --fast-decode or --compress none")
	case c.TraceSample < 0 || c.TraceSample > 1:
		return bad("trace sample must be from 0 to 1")
	case c.PoolSize < 0:
		return bad("pool size must not be negative")
	case c.Window < 1:
		return bad("window must be at least 1")
	case c.DrainTimeout < 0 || c.DialTimeout <= 0:
		return bad("timeouts must be positive")
	case len(c.AgentID) > frame.MaxAgentID:
		return bad("agent id longer than %d bytes", frame.MaxAgentID)
	}
	if c.Profile != nil {
		if err := c.Profile.validate(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}
