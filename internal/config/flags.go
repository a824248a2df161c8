package config

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/cli"
)

// Command is what a command line asks for besides the configuration.
type Command struct {
	// File is the --config file ("" when none), CheckConfig is set by
	// --check-config FILE: check it, print the result and exit.
	File        string
	CheckConfig bool
	// WatchConfig is --watch-config: reload when the config file or the
	// auth file changes, as on SIGHUP.
	WatchConfig bool
	// Version is --version.
	Version bool
}

// Load reads the configuration a command line gives: the defaults, then
// the --config file, then the flags given, which win over the file (an
// --analyzer flag replaces the file's whole list). usage prints the help
// for --help, which makes Load return pflag.ErrHelp. A reload calls Load
// again with the same arguments: the file is read afresh, the flags still
// win.
func Load(args []string, usage func(*pflag.FlagSet)) (Spec, Command, error) {
	// First pass: find the file (and any bad flag) before reading it. Its
	// Spec holds the defaults, which --help prints.
	scratch := Default()
	var cmd Command
	fs := FlagSet(&scratch, &cmd)
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return Spec{}, cmd, err
	}
	if fs.NArg() > 0 {
		return Spec{}, cmd, fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if cmd.Version {
		return Spec{}, cmd, nil
	}
	spec := Default()
	if cmd.File != "" {
		if err := LoadFile(cmd.File, &spec); err != nil {
			return Spec{}, cmd, err
		}
	}
	fs = FlagSet(&spec, &cmd)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return Spec{}, cmd, err // cannot happen: the first pass took them
	}
	return spec, cmd, nil
}

// FlagSet returns logdist's flags bound to s (one per key, their defaults
// s's values) and to cmd.
func FlagSet(s *Spec, cmd *Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet("logdist", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&cmd.File, "config", "", "read the settings from this YAML file (keys are these flags' names; flags given on the command line win); SIGHUP reloads it")
	fs.BoolVar(&cmd.WatchConfig, "watch-config", false, "also reload when the --config file or the --auth-file changes (checked every 5 s, by content): for a Kubernetes ConfigMap or Secret, which changes without a SIGHUP")
	fs.Var(&checkFlag{cmd}, "check-config", "check the YAML file FILE with the other flags given, print the effective settings and exit (0: valid, 2: not)")
	fs.StringVar(&s.Listen, "listen", s.Listen, "TCP address agents connect to in plaintext; empty: none (with --tls-listen, agents use TLS only)")
	fs.StringVar(&s.TLSListen, "tls-listen", s.TLSListen, "TCP address agents connect to over TLS (1.2 or later; needs --tls-cert and --tls-key); empty: none")
	fs.StringVar(&s.TLSCert, "tls-cert", s.TLSCert, "PEM certificate (chain) of the TLS listeners; reloaded on SIGHUP and when the file changes")
	fs.StringVar(&s.TLSKey, "tls-key", s.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&s.TLSClientCA, "tls-client-ca", s.TLSClientCA, "PEM CA certificates: TLS clients must present a certificate that chains to one (mTLS); its identity (URI, DNS name or CN) is the agent's identity")
	fs.StringVar(&s.UpstreamTLSCA, "upstream-tls-ca", s.UpstreamTLSCA, "PEM CA certificates that analyzers with tls=true must chain to (empty: the system's roots)")
	fs.StringVar(&s.UpstreamTLSCert, "upstream-tls-cert", s.UpstreamTLSCert, "PEM client certificate logdist presents to analyzers with tls=true (mTLS); empty: none")
	fs.StringVar(&s.UpstreamTLSKey, "upstream-tls-key", s.UpstreamTLSKey, "PEM private key of --upstream-tls-cert")
	fs.Var(&analyzersFlag{s: s}, "analyzer", "an analyzer as name=NAME,addr=HOST:PORT,weight=W[,state=drained][,tls=true[,server-name=NAME]] (repeat the flag for each analyzer; given on the command line, they replace the config file's); weight defaults to 1 and name to the address; names are 1-64 letters, digits, '.', '_', ':' or '-'; two analyzers may not share an address")
	fs.StringVar(&s.Auth, "auth", s.Auth, "agent authentication: required (a known token, or a client certificate the auth file lists), optional (tokens checked when sent, agents without one accepted: for a fleet moving to tokens) or off; default: required with --auth-file, else off")
	fs.StringVar(&s.AuthFile, "auth-file", s.AuthFile, "YAML file of agent identities: SHA-256 of each token (logdist auth hash prints it) or a certificate identity, the agent ids each may use, and its rate limits; reloaded on SIGHUP")
	fs.StringSliceVar(&s.Allow, "allow", s.Allow, "only these peers (CIDR or IP, comma-separated or repeated) may connect to the agent and syslog listeners, and to the admin API when --admin-allow is empty; others are closed at once (UDP: dropped) and counted; empty: any")
	fs.StringVar(&s.Redact, "redact", s.Redact, "YAML file of redaction rules (RE2 patterns and built-in detectors for e-mail, IP addresses, card numbers, bearer tokens, JWTs, AWS keys) applied to every message before forwarding; turns on --inspect full for agents' packets; reloaded on SIGHUP")
	fs.StringArrayVar(&s.Dict, "dict", s.Dict, "zstd dictionary file (logdist dict train) agents may compress packets with; repeat for several (at most 16: the old and the new while rotating). Agents offering the dict capability are told their ids; a packet compressed with one goes only to analyzers that hold it (analyzerd --dict), so load a dictionary here only once every analyzer has it. Read at start (a restart changes it)")
	fs.StringVar(&s.OTLPEndpoint, "otlp-endpoint", s.OTLPEndpoint, "OpenTelemetry collector (OTLP/HTTP) to send packet spans to, as http://HOST:4318; empty: tracing off, at no cost (packets' trace contexts are forwarded either way); restart to change")
	fs.Float64Var(&s.TraceSample, "trace-sample", s.TraceSample, "share of packets arriving without a trace context that start a trace here (0-1); packets whose context is sampled are always traced when --otlp-endpoint is set")
	fs.StringVar(&s.Balance, "balance", s.Balance, "picking strategy: swrr (exact smooth weighted round robin), random (weighted random), hash (sticky by agent id)")
	fs.IntVar(&s.MaxAnalyzers, "max-analyzers", s.MaxAnalyzers, "most analyzers the set may hold, added ones included (1-4096; a restart changes it)")
	fs.StringVar(&s.Admin, "admin", s.Admin, "HTTP address of the admin API and status page (/, /healthz, /readyz, /metrics, /api/v1/...); empty disables it")
	fs.StringSliceVar(&s.AdminAllow, "admin-allow", s.AdminAllow, "only these client addresses (CIDR or IP, comma-separated or repeated) may use the admin API; empty: any")
	fs.StringVar(&s.AdminTokenFile, "admin-token-file", s.AdminTokenFile, "file of bearer tokens for the admin API, one per line as TOKEN or IDENTITY TOKEN; writes need one, and so do reads from other hosts than this one (without the file, writes are refused)")
	fs.StringVar(&s.AuditLog, "audit-log", s.AuditLog, "append every admin write, reload and rollback to this file as JSON lines; empty: the log only")
	fs.StringVar(&s.DataDir, "data-dir", s.DataDir, "directory for the configuration versions (run-time changes survive a restart), the disk spool (DIR/spool: syslog batches, packets no analyzer can take, and every packet with --ack-mode spool) and the dead letters (DIR/dead-letters); empty: all in memory, lost at restart")
	fs.StringVar(&s.AckMode, "ack-mode", s.AckMode, "when an agent's packet is acknowledged: analyzer (once an analyzer has it) or spool (once durable in the spool under --data-dir; logdist then owns its delivery and replays it after a restart)")
	fs.StringVar(&s.SpoolSync, "spool-sync", s.SpoolSync, "when the spool fsyncs: always (before an append returns: survives a host crash, slowest), interval:DURATION (a background group commit: an fsync as soon as writes are pending, at most every 2 ms, always within DURATION; with --ack-mode spool agents are acknowledged after it; a host crash loses only appends not yet covered, none acknowledged), never (survives kill -9, not a host crash)")
	fs.StringVar(&s.SpoolKeyFile, "spool-key-file", s.SpoolKeyFile, "encrypt the spool and the dead letters at rest (AES-256-GCM) with this key file: lines \"ID HEX\" (logdist spool keygen prints one), mode 0600, the first key seals new records, the others open old ones (key rotation: docs/OPERATIONS.md); read at start (a restart changes it); empty: not encrypted")
	fs.Int64Var(&s.SpoolMaxBytes, "spool-max-bytes", s.SpoolMaxBytes, "cap of the spool's segments on disk (0, or at least two 64 MiB segments: space comes back a segment at a time); past it --overflow applies; 0: the disk's size")
	fs.StringVar(&s.Overflow, "overflow", s.Overflow, "when the spool is full: block (packets wait in memory; past --queue-max-* agents get BUSY and TCP syslog is not read), drop-newest (drop the new packet, acknowledging it), drop-oldest (drop the spool's oldest segment); every drop counted in logdist_spool_dropped_total")
	fs.Float64SliceVar(&s.QueueAlert, "queue-alert", s.QueueAlert, "fractions of the waiting queue's bound and of --spool-max-bytes at which a log line says the depth crossed them, up and down (empty: none)")
	fs.IntVar(&s.RetryMax, "retry-max", s.RetryMax, "delivery attempts of one packet that may fail (its analyzer connection failed or timed out with it in flight) before it goes to the dead letters (with --data-dir) or its agent gets ERROR; 0: no bound")
	fs.Var(&s.RetryBackoff, "retry-backoff", "delay before a packet's second retry, doubled for each one after (±50% jitter, at most 30s); the first retry goes at once to another analyzer")
	fs.Var(&s.HeartbeatInterval, "heartbeat-interval", "how often each analyzer connection sends PING")
	fs.Var(&s.HeartbeatTimeout, "heartbeat-timeout", "how long a PONG may take before the heartbeat counts as missed")
	fs.IntVar(&s.Rise, "rise", s.Rise, "consecutive successes that bring a down analyzer up")
	fs.IntVar(&s.Fall, "fall", s.Fall, "consecutive failures (missed heartbeats, connection errors) that take an analyzer down")
	fs.Var(&s.SlowStart, "slow-start", "time over which a recovered analyzer's share ramps back to its weight (0 disables)")
	fs.Var(&s.BreakerBackoff, "breaker-backoff", "first wait before probing an analyzer that went down (doubles on each failed probe)")
	fs.Var(&s.BreakerMaxBackoff, "breaker-max-backoff", "longest wait between probes of a down analyzer")
	fs.IntVar(&s.MaxFrame, "max-frame", s.MaxFrame, "largest DATA payload accepted from an agent, in bytes")
	fs.IntVar(&s.MaxRaw, "max-raw", s.MaxRaw, "largest decompressed DATA payload, in bytes (zip-bomb bound)")
	fs.IntVar(&s.Window, "window", s.Window, "most packets an agent may have unacknowledged")
	fs.Var(&s.AckTimeout, "ack-timeout", "re-dispatch a packet an analyzer has not acknowledged in this long")
	fs.Var(&s.LateAfter, "late-after", "an analyzer silent this long (or 10× its recent ack latency, if more) with packets waiting gets no new ones, and those it holds are copied to the others: one hung analyzer costs agents a short bump, not the heartbeat detection time; what it handles in the end reaches two analyzers (0 disables)")
	fs.IntVar(&s.QueueMaxPackets, "queue-max-packets", s.QueueMaxPackets, "packets that may wait when no analyzer can take them; past it agents get BUSY")
	fs.Int64Var(&s.QueueMaxBytes, "queue-max-bytes", s.QueueMaxBytes, "bytes that may wait when no analyzer can take them; past it agents get BUSY")
	fs.Var(&s.BusyRetryAfter, "busy-retry-after", "retry-after sent to agents with BUSY")
	fs.Var(&s.DrainTimeout, "drain-timeout", "on SIGTERM/SIGINT, how long to wait for in-flight packets to be acknowledged")
	fs.Var(&s.HandshakeTimeout, "handshake-timeout", "close agent connections that send no HELLO within this time")
	fs.Var(&s.MaxConnAge, "max-conn-age", "send GOAWAY to an agent connection open this long (±10%), so that agents reconnect and spread over instances added since (behind a load balancer or an autoscaler); 0: never")
	fs.Var(&s.IdleTimeout, "idle-timeout", "close agent connections silent for this long (or holding a half-sent frame for this long)")
	fs.IntVar(&s.MaxConns, "max-conns", s.MaxConns, "most agent connections at once; past it new ones get ERROR overloaded (0: no bound)")
	fs.IntVar(&s.MaxConnsPerIP, "max-conns-per-ip", s.MaxConnsPerIP, "most agent connections from one source address (0: no bound)")
	fs.Int64Var(&s.MaxPartialBytes, "max-partial-bytes", s.MaxPartialBytes, "most bytes all agents together may hold in half-sent frames; the connection that would cross it is closed with ERROR overloaded (0: no bound)")
	fs.Var(&s.SackDelay, "sack-delay", "for agents that take selective ACKs: how long packets an analyzer accepted may wait behind the cumulative ACK point (held by a slower analyzer) before a SACK reports them (0: at once)")
	fs.StringVar(&s.SyslogUDP, "syslog-udp", s.SyslogUDP, "UDP address for syslog datagrams (RFC 3164/5424); empty disables")
	fs.StringVar(&s.SyslogTCP, "syslog-tcp", s.SyslogTCP, "TCP address for syslog streams (RFC 6587 octet counting or newline framing); empty disables")
	fs.StringVar(&s.SyslogTLS, "syslog-tls", s.SyslogTLS, "TCP address for syslog over TLS (RFC 5425), with --tls-cert, --tls-key and, for mTLS, --tls-client-ca; empty disables")
	fs.IntVar(&s.SyslogBatchMessages, "syslog-batch-messages", s.SyslogBatchMessages, "syslog messages per packet at most")
	fs.IntVar(&s.SyslogBatchBytes, "syslog-batch-bytes", s.SyslogBatchBytes, "raw bytes per syslog packet at most")
	fs.Var(&s.SyslogLinger, "syslog-linger", "longest a syslog message waits for its batch to fill")
	fs.IntVar(&s.SyslogRcvbuf, "syslog-rcvbuf", s.SyslogRcvbuf, "UDP receive buffer in bytes (capped by net.core.rmem_max)")
	fs.BoolVar(&s.SyslogCompress, "syslog-compress", s.SyslogCompress, "zstd-compress syslog packets before forwarding")
	fs.BoolVar(&s.FastDecode, "fast-decode", s.FastDecode, "compress the packets logdist builds (syslog batches; redacted packets keep their agent's choice otherwise) without entropy-coding the literals: larger packets analyzers decode several times faster")
	fs.StringVar(&s.Inspect, "inspect", s.Inspect, "header: check header, limits and checksum and forward as is; full: also decompress and validate every packet")
	fs.IntVar(&s.Loops, "loops", s.Loops, "event loops (0 = one per CPU)")
	fs.BoolVar(&s.Pprof, "pprof", s.Pprof, "serve net/http/pprof under /debug/pprof/ on the admin address")
	fs.StringVar(&s.LogFormat, "log-format", s.LogFormat, "log format: text or json")
	fs.StringVar(&s.LogLevel, "log-level", s.LogLevel, cli.LevelHelp("proxy=debug,balancer=info,warn", LogComponents)+" (a reload changes it)")
	fs.BoolVar(&cmd.Version, "version", false, "print the version and the commit this binary was built from, and exit")
	return fs
}

// checkFlag is --check-config FILE.
type checkFlag struct{ cmd *Command }

func (f *checkFlag) String() string { return "" }
func (f *checkFlag) Type() string   { return "FILE" }
func (f *checkFlag) Set(v string) error {
	if f.cmd.File != "" && f.cmd.File != v {
		return errors.New("--check-config and --config name different files")
	}
	f.cmd.File, f.cmd.CheckConfig = v, true
	return nil
}

// analyzersFlag is --analyzer: its first use replaces the analyzers the
// file gave, the next ones append.
type analyzersFlag struct {
	s    *Spec
	used bool
}

func (f *analyzersFlag) String() string { return "" }
func (f *analyzersFlag) Type() string   { return "name=…,addr=…,weight=…" }
func (f *analyzersFlag) Set(v string) error {
	a, err := ParseAnalyzer(v)
	if err != nil {
		return err
	}
	if !f.used {
		f.s.Analyzers, f.used = nil, true
	}
	f.s.Analyzers = append(f.s.Analyzers, a)
	return nil
}

// ParseAnalyzer parses name=a1,addr=127.0.0.1:7501,weight=0.4[,state=S],
// the --analyzer flag's form (also accepted in the file's list).
func ParseAnalyzer(s string) (Analyzer, error) {
	a := Analyzer{Weight: 1}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return a, fmt.Errorf("%q is not key=value (want name=NAME,addr=HOST:PORT,weight=W)", kv)
		}
		switch k {
		case "name":
			a.Name = v
		case "addr":
			a.Addr = v
		case "weight":
			w, err := strconv.ParseFloat(v, 64)
			if err != nil || w < 0 || w != w {
				return a, fmt.Errorf("weight %q is not a non-negative number", v)
			}
			a.Weight = w
		case "state":
			a.State = v
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return a, fmt.Errorf("tls %q is not true or false", v)
			}
			a.TLS = b
		case "server-name":
			a.ServerName = v
		default:
			return a, fmt.Errorf("unknown key %q (want name, addr, weight, state, tls, server-name)", k)
		}
	}
	return a.complete()
}

// complete checks what every analyzer needs and fills the defaults.
func (a Analyzer) complete() (Analyzer, error) {
	if a.Addr == "" {
		return a, errors.New("missing addr=HOST:PORT")
	}
	if a.Name == "" {
		a.Name = a.Addr
	}
	if a.State == "enabled" {
		a.State = ""
	}
	return a, nil
}
