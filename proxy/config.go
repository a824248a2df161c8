package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/ratelimit"
	"github.com/logdist/logdist/internal/redact"
	"github.com/logdist/logdist/internal/spool"
	"github.com/logdist/logdist/internal/tracing"
)

// Inspect says how much of each DATA frame logdist checks before forwarding.
type Inspect int

const (
	// InspectHeader checks the header, the limits and the payload checksum
	// and forwards the payload as it came, still compressed. Cheapest: no
	// decompression, no packet decode.
	InspectHeader Inspect = iota
	// InspectFull also decompresses and decodes every packet and rejects
	// the ones that break a limit, before an analyzer sees them.
	InspectFull
)

// ParseInspect maps "header" and "full" to an Inspect.
func ParseInspect(s string) (Inspect, error) {
	switch s {
	case "header", "":
		return InspectHeader, nil
	case "full":
		return InspectFull, nil
	}
	return 0, fmt.Errorf("proxy: unknown inspect mode %q (want header or full)", s)
}

func (i Inspect) String() string {
	if i == InspectFull {
		return "full"
	}
	return "header"
}

// AnalyzerConfig names one analyzer backend.
type AnalyzerConfig struct {
	// Name identifies the analyzer in metrics, logs and the admin API:
	// 1-64 letters, digits, '.', '_', ':' or '-'.
	Name string
	// Addr is the analyzer's host:port. Two analyzers may not share one.
	Addr string
	// Weight is its share of the packets relative to the others (any
	// non-negative number; 0 drains it).
	Weight float64
	// Ramp, while it runs, moves the weight in force from Ramp.From to
	// Weight (balancer.Ramp; absolute times). SetWeightRamp fills it in.
	Ramp balancer.Ramp
	// Admin is the administrative state: enabled (the zero value), drained,
	// forced down or forced up (see balancer.AdminState).
	Admin balancer.AdminState
	// TLS sends the analyzer's connections through Config.UpstreamTransport.
	TLS bool
	// ServerName is the name its certificate must have (TLS); empty: the
	// host of Addr.
	ServerName string
}

// Config configures a Server. Build it from DefaultConfig.
//
// Every field but those listed in restartFields can change while the
// server runs (Server.Reconfigure): the analyzers are added, removed and
// re-weighted to match, and the loops take the other settings as one
// immutable snapshot.
type Config struct {
	// Listen is the TCP address agents connect to in plaintext, e.g.
	// ":7400"; empty turns plaintext off (TransportListen must be set).
	Listen string
	// Analyzers are the backends packets are distributed over.
	Analyzers []AnalyzerConfig
	// Balancer configures the picker strategy and the health state machine
	// (rise, fall, slow start, breaker backoff).
	Balancer balancer.Config
	// Loops is the number of gnet event loops; 0 means GOMAXPROCS.
	Loops int
	// Limits bound what agents may send (frame size, decompressed size,
	// messages per packet, field lengths).
	Limits frame.Limits
	// Inspect selects header-only checks (forward as is) or full decoding.
	Inspect Inspect
	// Window is the most DATA frames an agent may keep unacknowledged; the
	// agent's HELLO may ask for fewer.
	Window uint32
	// UpstreamWindow is the window logdist asks each analyzer for.
	UpstreamWindow uint32
	// SackDelay is how long packets an analyzer accepted may wait beyond
	// an agent's cumulative ACK point (held by a packet at a slower
	// analyzer) before logdist reports them in a SACK, to agents that
	// offered SACK. Most are covered by an ACK within it; reporting each
	// at once would cost the agent a wake-up per flush and shrink every
	// batch. 0 reports them at once.
	SackDelay time.Duration
	// HandshakeTimeout closes an agent connection that has not sent HELLO.
	HandshakeTimeout time.Duration
	// IdleTimeout closes an agent connection that has sent nothing (not
	// even a PING) for this long.
	IdleTimeout time.Duration
	// MaxConnAge, if not 0, sends GOAWAY to an agent connection open for
	// about this long (±10%, per connection, so that a fleet does not
	// reconnect at once): its agent finishes what it has in flight and
	// connects again, possibly to another instance — what spreads agents
	// over instances added since (an autoscaler's), which only ever get
	// new connections otherwise.
	MaxConnAge time.Duration
	// MaxConns bounds the agent connections open at once; past it a new
	// one gets ERROR overloaded and is closed. 0: no bound.
	MaxConns int
	// MaxConnsPerIP bounds the agent connections from one source address.
	// 0: no bound.
	MaxConnsPerIP int
	// MaxPartialBytes bounds the bytes all agent connections together may
	// hold in frames they have begun and not finished sending (a slow or
	// hostile agent's half-sent 1 MiB frame): past it, the connection whose
	// partial frame would cross it is closed with ERROR overloaded. What
	// agents hold of whole frames is bounded by their windows.
	MaxPartialBytes int64
	// HeartbeatInterval is how often each upstream connection sends PING.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a PONG may take before the heartbeat
	// counts as missed.
	HeartbeatTimeout time.Duration
	// DialTimeout bounds one connection attempt to an analyzer, handshakes
	// included.
	DialTimeout time.Duration
	// RedialMin and RedialMax bound the exponential backoff (with jitter)
	// between connection attempts to an analyzer.
	RedialMin, RedialMax time.Duration
	// AckTimeout re-dispatches a packet an analyzer has not acknowledged in
	// this long, and closes that analyzer connection. A removed analyzer's
	// connections get this long to settle what they carry.
	AckTimeout time.Duration
	// LateAfter is the least silence, with packets waiting, after which an
	// analyzer connection is late: it gets no new packets and the packets
	// in flight on it are copied to the other analyzers (the connection's
	// own threshold is 10 times its recent ack latency, when higher). It
	// keeps one hung analyzer from stalling every agent for the heartbeat
	// detection time, at the cost of duplicates for what the late analyzer
	// handles in the end. 0 disables it.
	LateAfter time.Duration
	// QueueMaxPackets and QueueMaxBytes bound the packets waiting because no
	// analyzer can take them. Past either bound agents get BUSY, and TCP
	// syslog connections are not read.
	QueueMaxPackets int
	QueueMaxBytes   int64
	// BusyRetryAfter is the retry-after sent with BUSY.
	BusyRetryAfter time.Duration
	// DrainTimeout bounds how long Stop waits for in-flight packets to be
	// acknowledged after sending GOAWAY.
	DrainTimeout time.Duration
	// SyslogUDP is the UDP address syslog senders (RFC 3164 and 5424) send
	// datagrams to, e.g. ":5514"; empty disables UDP syslog. The port must
	// be free: logdist refuses one that another process holds (two
	// processes would split the datagrams between them).
	SyslogUDP string
	// SyslogTCP is the TCP address for syslog streams framed as RFC 6587
	// (octet counting or newline), e.g. ":5514"; empty disables it.
	SyslogTCP string
	// SyslogTLS is the TCP address for syslog over TLS (RFC 5425: octet-
	// counted frames inside TLS), wrapped by AgentTransport; empty
	// disables it.
	SyslogTLS string
	// SyslogBatchMessages closes a syslog batch into a packet at this many
	// messages.
	SyslogBatchMessages int
	// SyslogBatchBytes closes a syslog batch before its raw packet would
	// exceed this many bytes.
	SyslogBatchBytes int
	// SyslogLinger closes a syslog batch this long after its first message.
	SyslogLinger time.Duration
	// SyslogMaxSenders bounds the batches open at once per event loop (one
	// per sender IP); past it the oldest is closed early.
	SyslogMaxSenders int
	// SyslogRecvBuffer is the UDP socket's receive buffer (SO_RCVBUF), the
	// room for bursts; the kernel caps it at net.core.rmem_max.
	SyslogRecvBuffer int
	// SyslogCompress zstd-compresses syslog packets (fastest level).
	SyslogCompress bool
	// FastDecode compresses the packets logdist builds (syslog batches,
	// and packets it redacts, which otherwise keep their agent's choice)
	// without entropy-coding the literals (frame.Encoder.FastDecode):
	// larger packets that analyzers decode several times faster.
	FastDecode bool
	// TransportListen is a second TCP address for agents, whose
	// connections AgentTransport wraps (a TLS listener, say); empty
	// disables it. Connections are accepted and wrapped on goroutines,
	// then served by the event loops like the others (transport.go).
	TransportListen string
	// AgentTransport wraps the connections accepted on TransportListen.
	AgentTransport Transport
	// UpstreamTransport wraps the connections to analyzers whose TLS field
	// is set.
	UpstreamTransport Transport
	// Auth, if not nil, decides every agent's HELLO: the same hook the
	// analyzer library takes (session.Auth). A refusal is ERROR auth and a
	// close. It runs on an event loop, so it must not block: look tokens
	// up in memory.
	Auth session.Auth
	// Allow lists the peers the agent and syslog listeners accept (CIDR
	// prefixes); empty accepts any. Others are closed at once (TCP) or
	// dropped (UDP), and counted by listener. It may change while the
	// server runs; connections already open stay.
	Allow []netip.Prefix
	// Redactor, if not nil, redacts every message before it is forwarded:
	// agents' packets are decoded (as with InspectFull), redacted and, if
	// anything changed, encoded again (zstd at its fastest level when the
	// agent compressed); syslog messages are redacted as they are parsed.
	Redactor *redact.Redactor
	// Tracer, if not nil, records spans of the packets that arrive with a
	// sampled trace context or that its ratio picks (see trace.go); nil
	// costs nothing. Traced frames are forwarded with their context
	// either way.
	Tracer *tracing.Tracer
	// AgentLimits, if not nil, gives each agent connection the rate
	// limiter of its identity at the handshake; over its limit a DATA is
	// answered BUSY with the time until it fits (backpressure, nothing
	// dropped).
	AgentLimits AgentLimits
	// DataDir, if set, holds the disk spool (DataDir/spool) and the dead
	// letters (DataDir/dead-letters); see durable.go. Syslog batches are
	// written to the spool, agents' packets too with AckSpool, and packets
	// no analyzer can take spill to it when the waiting queue is full.
	// Empty: no spool, everything lives in memory.
	DataDir string
	// Spool sizes and syncs the spool (spool.DefaultConfig for the zero
	// value's fields: 64 MiB segments, sync every 100 ms, no cap).
	Spool SpoolConfig
	// AckMode says when an agent's packet is acknowledged: once an
	// analyzer acknowledged it (AckAnalyzer), or once it is durable in the
	// spool (AckSpool; logdist then owns its delivery).
	AckMode AckMode
	// Overflow is what happens when the spool is full (its cap, or the
	// disk): OverflowBlock (BUSY to agents, TCP syslog not read),
	// OverflowDropNewest or OverflowDropOldest, each drop counted.
	Overflow Overflow
	// QueueAlert lists fractions of the waiting queue's bound (and of the
	// spool's cap) at which a log line says the depth crossed them, up
	// and down. Empty: none.
	QueueAlert []float64
	// RetryMax bounds the attempts to deliver one packet that end with
	// its analyzer connection failing or timing out; past it the packet
	// goes to the dead letters (with a spool) or its agent gets ERROR.
	// 0: no bound. RetryBackoff is the delay before the second retry,
	// doubled for each one after (with ±50% jitter, at most
	// maxRetryBackoff); the first retry goes at once, to another
	// analyzer.
	RetryMax     int
	RetryBackoff time.Duration
	// Dicts are the zstd dictionaries agents may compress packets with
	// (dict.go, PROTOCOL.md 8.1): logdist lists their ids to agents that
	// offer the dict capability, offers dict to analyzers, and sends a
	// packet compressed with one only to an analyzer that listed it. Load
	// one here only once every analyzer holds it. Fixed at start.
	Dicts frame.Dicts
	// ServerID is sent in WELCOME; defaults to "logdist".
	ServerID string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics is where the server registers its metrics; nil means a new
	// set, reachable with Server.Metrics.
	Metrics *metrics.Set
}

// AgentLimits hands out per-identity rate limiters, shared by every
// connection and loop of one identity (agentauth.Guard). Both methods run
// on event loops at the handshake and the close, and must not block long.
type AgentLimits interface {
	Acquire(identity string) *ratelimit.Limiter
	Release(identity string)
}

// DefaultConfig returns a configuration that works on one host.
func DefaultConfig() Config {
	return Config{
		Listen:            ":7400",
		Balancer:          balancer.DefaultConfig(),
		Limits:            frame.DefaultLimits(),
		Inspect:           InspectHeader,
		Window:            256,
		UpstreamWindow:    4096,
		HandshakeTimeout:  5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxConns:          100000,
		MaxConnsPerIP:     0,
		MaxPartialBytes:   256 << 20,
		SackDelay:         time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond,
		HeartbeatTimeout:  time.Second,
		DialTimeout:       time.Second,
		RedialMin:         50 * time.Millisecond,
		RedialMax:         5 * time.Second,
		AckTimeout:        10 * time.Second,
		LateAfter:         150 * time.Millisecond,
		QueueMaxPackets:   100000,
		QueueMaxBytes:     256 << 20,
		BusyRetryAfter:    200 * time.Millisecond,
		DrainTimeout:      10 * time.Second,
		ServerID:          "logdist",
		Spool:             SpoolConfig{Sync: spool.SyncInterval(spool.DefaultSyncInterval)},
		Overflow:          OverflowBlock,
		QueueAlert:        []float64{0.5, 0.8, 0.95},
		RetryMax:          20,
		RetryBackoff:      100 * time.Millisecond,

		SyslogUDP:           ":5514",
		SyslogBatchMessages: 1000,
		SyslogBatchBytes:    512 << 10,
		SyslogLinger:        5 * time.Millisecond,
		SyslogMaxSenders:    1024,
		SyslogRecvBuffer:    8 << 20,
		SyslogCompress:      true,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("proxy: invalid configuration")

// maxNameLen bounds an analyzer name.
const maxNameLen = 64

// ValidName reports why name cannot name an analyzer, or nil. Names go
// into metric labels, log lines and admin API paths unescaped, so they
// are kept to 1-64 letters, digits, '.', '_', ':' and '-'.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("analyzer name %q must be 1-%d characters", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-' {
			continue
		}
		return fmt.Errorf("analyzer name %q: character %q not allowed (use letters, digits, '.', '_', ':' and '-')", name, c)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("analyzer name %q: not a name (it is a path segment in the admin API)", name)
	}
	return nil
}

// validateAnalyzers checks one analyzer list: names, addresses, weights,
// no name or address twice.
func validateAnalyzers(as []AnalyzerConfig, maxAnalyzers int, hasUpstreamTransport bool) error {
	names := map[string]bool{}
	addrs := map[string]string{}
	for _, a := range as {
		if err := ValidName(a.Name); err != nil {
			return err
		}
		if names[a.Name] {
			return fmt.Errorf("analyzer name %q used twice", a.Name)
		}
		names[a.Name] = true
		if _, _, err := net.SplitHostPort(a.Addr); err != nil || a.Addr == "" {
			return fmt.Errorf("analyzer %q address %q: want host:port", a.Name, a.Addr)
		}
		if other, ok := addrs[a.Addr]; ok {
			return fmt.Errorf("analyzers %q and %q have the same address %s: one analyzer would get both weights; give it one entry", other, a.Name, a.Addr)
		}
		addrs[a.Addr] = a.Name
		if a.Weight < 0 || a.Weight != a.Weight || a.Weight > 1e300 {
			return fmt.Errorf("analyzer %q weight %v: must be a non-negative number", a.Name, a.Weight)
		}
		if r := a.Ramp; r.From < 0 || r.From != r.From || r.From > 1e300 || r.Over < 0 {
			return fmt.Errorf("analyzer %q ramp from %v over %v: want a non-negative weight and duration", a.Name, r.From, r.Over)
		}
		if a.Admin > balancer.ForcedUp {
			return fmt.Errorf("analyzer %q: unknown admin state %d", a.Name, a.Admin)
		}
		if a.TLS && !hasUpstreamTransport {
			return fmt.Errorf("analyzer %q wants TLS but no upstream transport is configured", a.Name)
		}
	}
	if len(as) > maxAnalyzers {
		return fmt.Errorf("%d analyzers, more than the balancer's %d", len(as), maxAnalyzers)
	}
	return nil
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Listen == "" && c.TransportListen == "":
		return bad("no listener for agents: give a listen address, a TLS one, or both")
	case c.Listen != "":
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return bad("listen address %q: %v", c.Listen, err)
		}
	}
	if len(c.Analyzers) == 0 {
		return bad("no analyzers: give at least one --analyzer name=...,addr=host:port,weight=...")
	}
	maxA := c.Balancer.MaxAnalyzers
	if maxA == 0 {
		maxA = balancer.DefaultConfig().MaxAnalyzers
	}
	if err := validateAnalyzers(c.Analyzers, maxA, c.UpstreamTransport != nil); err != nil {
		return bad("%v", err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Loops < 0 || c.Loops > 1024 {
		return bad("loops %d not in [0, 1024]", c.Loops)
	}
	if c.Window == 0 || c.Window > 1<<16 {
		return bad("window %d not in [1, 65536]", c.Window)
	}
	if c.UpstreamWindow == 0 || c.UpstreamWindow > 1<<20 {
		return bad("upstream window %d not in [1, 1048576]", c.UpstreamWindow)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"handshake timeout", c.HandshakeTimeout}, {"idle timeout", c.IdleTimeout},
		{"heartbeat interval", c.HeartbeatInterval}, {"heartbeat timeout", c.HeartbeatTimeout},
		{"dial timeout", c.DialTimeout}, {"redial min", c.RedialMin}, {"redial max", c.RedialMax},
		{"ack timeout", c.AckTimeout}, {"drain timeout", c.DrainTimeout},
	} {
		if d.v <= 0 {
			return bad("%s must be positive, got %v", d.name, d.v)
		}
	}
	if c.MaxConnAge < 0 {
		return bad("max conn age must not be negative (0: never), got %v", c.MaxConnAge)
	}
	if c.IdleTimeout > time.Duration(1<<32-1)*time.Millisecond {
		return bad("idle timeout %v above 49 days", c.IdleTimeout)
	}
	if c.SackDelay < 0 {
		return bad("sack delay must not be negative, got %v", c.SackDelay)
	}
	if c.LateAfter < 0 {
		return bad("late after must not be negative (0 disables it), got %v", c.LateAfter)
	}
	if c.RedialMax < c.RedialMin {
		return bad("redial max %v below redial min %v", c.RedialMax, c.RedialMin)
	}
	if c.BusyRetryAfter < 0 || c.BusyRetryAfter > time.Hour {
		return bad("busy retry-after %v not in [0, 1h]", c.BusyRetryAfter)
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.MaxPartialBytes < 0 {
		return bad("max conns, max conns per IP and max partial bytes must not be negative (0: no bound)")
	}
	if c.SyslogTLS != "" {
		if _, _, err := net.SplitHostPort(c.SyslogTLS); err != nil {
			return bad("syslog tls address %q: %v", c.SyslogTLS, err)
		}
		if c.AgentTransport == nil {
			return bad("syslog tls address %q without an agent transport (TLS certificate)", c.SyslogTLS)
		}
	}
	if c.SyslogTCP != "" {
		if _, _, err := net.SplitHostPort(c.SyslogTCP); err != nil {
			return bad("syslog tcp address %q: %v", c.SyslogTCP, err)
		}
	}
	if c.TransportListen != "" {
		if _, _, err := net.SplitHostPort(c.TransportListen); err != nil {
			return bad("transport listen address %q: %v", c.TransportListen, err)
		}
		if c.AgentTransport == nil {
			return bad("transport listen address %q without an agent transport", c.TransportListen)
		}
	}
	if c.SyslogUDP != "" || c.SyslogTCP != "" || c.SyslogTLS != "" {
		if _, _, err := net.SplitHostPort(c.SyslogUDP); c.SyslogUDP != "" && err != nil {
			return bad("syslog udp address %q: %v", c.SyslogUDP, err)
		}
		if c.SyslogBatchMessages < 1 || uint32(c.SyslogBatchMessages) > c.Limits.MaxMessages {
			return bad("syslog batch messages %d not in [1, max messages %d]", c.SyslogBatchMessages, c.Limits.MaxMessages)
		}
		if c.SyslogBatchBytes < 1024 || c.SyslogBatchBytes > int(c.Limits.MaxFrame) {
			return bad("syslog batch bytes %d not in [1024, max frame %d]", c.SyslogBatchBytes, c.Limits.MaxFrame)
		}
		if c.SyslogLinger <= 0 || c.SyslogMaxSenders < 1 || c.SyslogRecvBuffer < 0 {
			return bad("syslog linger, max senders must be positive and the receive buffer not negative")
		}
	}
	if c.QueueMaxPackets < 0 || c.QueueMaxBytes < 0 {
		return bad("queue bounds must not be negative")
	}
	if err := c.validateDurability(); err != nil {
		return bad("%v", err)
	}
	if len(c.ServerID) > frame.MaxSoftware {
		return bad("server id longer than %d bytes", frame.MaxSoftware)
	}
	if err := c.Dicts.Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

func (c *Config) loops() int {
	if c.Loops > 0 {
		return c.Loops
	}
	return runtime.GOMAXPROCS(0)
}

// clone returns a copy of c that shares no slice with it.
func (c *Config) clone() Config {
	d := *c
	d.Analyzers = append([]AnalyzerConfig(nil), c.Analyzers...)
	d.Allow = append([]netip.Prefix(nil), c.Allow...)
	d.QueueAlert = append([]float64(nil), c.QueueAlert...)
	d.Dicts = append(frame.Dicts(nil), c.Dicts...)
	return d
}
