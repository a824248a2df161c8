// Package config is logdist's configuration as an operator writes it: one
// Spec, with one key per command-line flag, read from the --config file
// (YAML), from the flags (which win over the file), and shown by the admin
// API and the version history (JSON). It turns a Spec into the
// proxy.Config the distributor runs, and says what differs between two.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
	"github.com/logdist/logdist/proxy"
)

// Spec is every setting of logdist. The keys (YAML and JSON) are the
// flags' names.
type Spec struct {
	Listen string `json:"listen" yaml:"listen"`
	// TLS for agents: a second listener, its certificate, and the CA that
	// client certificates must chain to (empty: none asked for).
	TLSListen   string `json:"tls-listen" yaml:"tls-listen"`
	TLSCert     string `json:"tls-cert" yaml:"tls-cert"`
	TLSKey      string `json:"tls-key" yaml:"tls-key"`
	TLSClientCA string `json:"tls-client-ca" yaml:"tls-client-ca"`
	// TLS to analyzers (those with tls=true): the CA their certificates
	// chain to (empty: the system's), and logdist's client certificate.
	UpstreamTLSCA   string     `json:"upstream-tls-ca" yaml:"upstream-tls-ca"`
	UpstreamTLSCert string     `json:"upstream-tls-cert" yaml:"upstream-tls-cert"`
	UpstreamTLSKey  string     `json:"upstream-tls-key" yaml:"upstream-tls-key"`
	Analyzers       []Analyzer `json:"analyzers" yaml:"analyzers"`
	// Auth is required, optional or off; empty: required with auth-file,
	// else off. AuthFile maps tokens and certificate identities to agent
	// identities, agent ids and rate limits (agentauth).
	Auth     string `json:"auth" yaml:"auth"`
	AuthFile string `json:"auth-file" yaml:"auth-file"`
	// Allow lists the peers the agent and syslog listeners accept (and the
	// admin API's, when admin-allow is empty).
	Allow []string `json:"allow" yaml:"allow"`
	// Redact is the redaction rules file (redact); empty: none.
	Redact string `json:"redact" yaml:"redact"`
	// Dict lists zstd dictionary files agents may compress with (read at
	// start; proxy.Config.Dicts).
	Dict []string `json:"dict" yaml:"dict"`
	// OTLPEndpoint and TraceSample configure tracing (restart to change).
	OTLPEndpoint string  `json:"otlp-endpoint" yaml:"otlp-endpoint"`
	TraceSample  float64 `json:"trace-sample" yaml:"trace-sample"`
	Balance      string  `json:"balance" yaml:"balance"`
	// MaxAnalyzers bounds the analyzers in the set (restart to change).
	MaxAnalyzers int `json:"max-analyzers" yaml:"max-analyzers"`

	Admin          string   `json:"admin" yaml:"admin"`
	AdminAllow     []string `json:"admin-allow" yaml:"admin-allow"`
	AdminTokenFile string   `json:"admin-token-file" yaml:"admin-token-file"`
	AuditLog       string   `json:"audit-log" yaml:"audit-log"`
	DataDir        string   `json:"data-dir" yaml:"data-dir"`
	// Durability (proxy/durable.go): the spool under data-dir.
	AckMode       string    `json:"ack-mode" yaml:"ack-mode"`
	SpoolSync     string    `json:"spool-sync" yaml:"spool-sync"`
	SpoolMaxBytes int64     `json:"spool-max-bytes" yaml:"spool-max-bytes"`
	SpoolKeyFile  string    `json:"spool-key-file" yaml:"spool-key-file"`
	Overflow      string    `json:"overflow" yaml:"overflow"`
	QueueAlert    []float64 `json:"queue-alert" yaml:"queue-alert"`
	RetryMax      int       `json:"retry-max" yaml:"retry-max"`
	RetryBackoff  Duration  `json:"retry-backoff" yaml:"retry-backoff"`
	Pprof         bool      `json:"pprof" yaml:"pprof"`

	HeartbeatInterval Duration `json:"heartbeat-interval" yaml:"heartbeat-interval"`
	HeartbeatTimeout  Duration `json:"heartbeat-timeout" yaml:"heartbeat-timeout"`
	Rise              int      `json:"rise" yaml:"rise"`
	Fall              int      `json:"fall" yaml:"fall"`
	SlowStart         Duration `json:"slow-start" yaml:"slow-start"`
	BreakerBackoff    Duration `json:"breaker-backoff" yaml:"breaker-backoff"`
	BreakerMaxBackoff Duration `json:"breaker-max-backoff" yaml:"breaker-max-backoff"`

	MaxFrame        int      `json:"max-frame" yaml:"max-frame"`
	MaxRaw          int      `json:"max-raw" yaml:"max-raw"`
	Window          int      `json:"window" yaml:"window"`
	AckTimeout      Duration `json:"ack-timeout" yaml:"ack-timeout"`
	LateAfter       Duration `json:"late-after" yaml:"late-after"`
	QueueMaxPackets int      `json:"queue-max-packets" yaml:"queue-max-packets"`
	QueueMaxBytes   int64    `json:"queue-max-bytes" yaml:"queue-max-bytes"`
	BusyRetryAfter  Duration `json:"busy-retry-after" yaml:"busy-retry-after"`
	DrainTimeout    Duration `json:"drain-timeout" yaml:"drain-timeout"`

	HandshakeTimeout Duration `json:"handshake-timeout" yaml:"handshake-timeout"`
	IdleTimeout      Duration `json:"idle-timeout" yaml:"idle-timeout"`
	MaxConnAge       Duration `json:"max-conn-age" yaml:"max-conn-age"`
	MaxConns         int      `json:"max-conns" yaml:"max-conns"`
	MaxConnsPerIP    int      `json:"max-conns-per-ip" yaml:"max-conns-per-ip"`
	MaxPartialBytes  int64    `json:"max-partial-bytes" yaml:"max-partial-bytes"`
	SackDelay        Duration `json:"sack-delay" yaml:"sack-delay"`

	SyslogUDP           string   `json:"syslog-udp" yaml:"syslog-udp"`
	SyslogTCP           string   `json:"syslog-tcp" yaml:"syslog-tcp"`
	SyslogTLS           string   `json:"syslog-tls" yaml:"syslog-tls"`
	SyslogBatchMessages int      `json:"syslog-batch-messages" yaml:"syslog-batch-messages"`
	SyslogBatchBytes    int      `json:"syslog-batch-bytes" yaml:"syslog-batch-bytes"`
	SyslogLinger        Duration `json:"syslog-linger" yaml:"syslog-linger"`
	SyslogRcvbuf        int      `json:"syslog-rcvbuf" yaml:"syslog-rcvbuf"`
	SyslogCompress      bool     `json:"syslog-compress" yaml:"syslog-compress"`
	FastDecode          bool     `json:"fast-decode" yaml:"fast-decode"`

	Inspect   string `json:"inspect" yaml:"inspect"`
	Loops     int    `json:"loops" yaml:"loops"`
	LogFormat string `json:"log-format" yaml:"log-format"`
	LogLevel  string `json:"log-level" yaml:"log-level"`
}

// Analyzer is one analyzer of a Spec.
type Analyzer struct {
	Name   string  `json:"name" yaml:"name"`
	Addr   string  `json:"addr" yaml:"addr"`
	Weight float64 `json:"weight" yaml:"weight"`
	// State is enabled (also when empty), drained, forced-down or
	// forced-up.
	State string `json:"state,omitempty" yaml:"state,omitempty"`
	// TLS dials it over TLS (upstream-tls-*); ServerName is the name its
	// certificate must have (empty: the host of Addr).
	TLS        bool   `json:"tls,omitempty" yaml:"tls,omitempty"`
	ServerName string `json:"server-name,omitempty" yaml:"server-name,omitempty"`
	// Ramp is a weight ramp under way; run time only (the admin API sets
	// it, the version history keeps it), never in the file.
	Ramp *Ramp `json:"ramp,omitempty" yaml:"-"`
}

// Ramp is balancer.Ramp as the API and the history write it.
type Ramp struct {
	From  float64   `json:"from"`
	Start time.Time `json:"start"`
	Over  Duration  `json:"over"`
}

// Default is logdist's configuration when nothing is said.
func Default() Spec {
	c := proxy.DefaultConfig()
	b := c.Balancer
	return Spec{
		Listen:              c.Listen,
		Balance:             b.Strategy.String(),
		MaxAnalyzers:        b.MaxAnalyzers,
		Admin:               "127.0.0.1:7480",
		Allow:               []string{},
		Dict:                []string{},
		HeartbeatInterval:   Duration(c.HeartbeatInterval),
		HeartbeatTimeout:    Duration(c.HeartbeatTimeout),
		Rise:                b.Rise,
		Fall:                b.Fall,
		SlowStart:           Duration(b.SlowStart),
		BreakerBackoff:      Duration(b.BreakerBackoff),
		BreakerMaxBackoff:   Duration(b.BreakerMaxBackoff),
		MaxFrame:            int(c.Limits.MaxFrame),
		MaxRaw:              int(c.Limits.MaxRaw),
		Window:              int(c.Window),
		AckTimeout:          Duration(c.AckTimeout),
		LateAfter:           Duration(c.LateAfter),
		QueueMaxPackets:     c.QueueMaxPackets,
		AckMode:             c.AckMode.String(),
		SpoolSync:           c.Spool.Sync.String(),
		SpoolMaxBytes:       c.Spool.MaxBytes,
		Overflow:            c.Overflow.String(),
		QueueAlert:          c.QueueAlert,
		RetryMax:            c.RetryMax,
		RetryBackoff:        Duration(c.RetryBackoff),
		QueueMaxBytes:       c.QueueMaxBytes,
		BusyRetryAfter:      Duration(c.BusyRetryAfter),
		DrainTimeout:        Duration(c.DrainTimeout),
		HandshakeTimeout:    Duration(c.HandshakeTimeout),
		IdleTimeout:         Duration(c.IdleTimeout),
		MaxConnAge:          Duration(c.MaxConnAge),
		MaxConns:            c.MaxConns,
		MaxConnsPerIP:       c.MaxConnsPerIP,
		MaxPartialBytes:     c.MaxPartialBytes,
		SackDelay:           Duration(c.SackDelay),
		SyslogUDP:           c.SyslogUDP,
		SyslogTCP:           c.SyslogTCP,
		SyslogBatchMessages: c.SyslogBatchMessages,
		SyslogBatchBytes:    c.SyslogBatchBytes,
		SyslogLinger:        Duration(c.SyslogLinger),
		SyslogRcvbuf:        c.SyslogRecvBuffer,
		SyslogCompress:      c.SyslogCompress,
		FastDecode:          c.FastDecode,
		Inspect:             c.Inspect.String(),
		Loops:               c.Loops,
		LogFormat:           "text",
		LogLevel:            "info",
	}
}

// Clone returns a copy of s that shares nothing with it.
func (s Spec) Clone() Spec {
	s.AdminAllow = append([]string(nil), s.AdminAllow...)
	s.Allow = append([]string(nil), s.Allow...)
	s.Dict = append([]string(nil), s.Dict...)
	s.QueueAlert = append([]float64(nil), s.QueueAlert...)
	as := make([]Analyzer, len(s.Analyzers))
	for i, a := range s.Analyzers {
		if a.Ramp != nil {
			r := *a.Ramp
			a.Ramp = &r
		}
		as[i] = a
	}
	s.Analyzers = as
	return s
}

// Analyzer returns the index of the named analyzer, or -1.
func (s *Spec) Analyzer(name string) int {
	for i, a := range s.Analyzers {
		if a.Name == name {
			return i
		}
	}
	return -1
}

// Proxy returns the proxy.Config that s describes, over base: the fields a
// Spec does not hold (Logger, Metrics, Auth, transports, ServerID...) are
// base's. The result has passed proxy's Validate.
func (s Spec) Proxy(base proxy.Config) (proxy.Config, error) {
	c := base
	bad := func(key string, err error) (proxy.Config, error) {
		return proxy.Config{}, fmt.Errorf("%s: %v", key, err)
	}
	c.Listen, c.TransportListen = s.Listen, s.TLSListen
	st, err := balancer.ParseStrategy(s.Balance)
	if err != nil {
		return bad("balance", err)
	}
	c.Balancer.Strategy = st
	if s.MaxAnalyzers < 1 || s.MaxAnalyzers > 4096 {
		return bad("max-analyzers", fmt.Errorf("%d: want 1 to 4096", s.MaxAnalyzers))
	}
	c.Balancer.MaxAnalyzers = s.MaxAnalyzers
	c.Balancer.Rise, c.Balancer.Fall = s.Rise, s.Fall
	c.Balancer.SlowStart = time.Duration(s.SlowStart)
	c.Balancer.BreakerBackoff = time.Duration(s.BreakerBackoff)
	c.Balancer.BreakerMaxBackoff = time.Duration(s.BreakerMaxBackoff)
	c.HeartbeatInterval, c.HeartbeatTimeout = time.Duration(s.HeartbeatInterval), time.Duration(s.HeartbeatTimeout)
	if s.MaxFrame <= 0 || s.MaxRaw <= 0 || s.Window <= 0 || s.MaxFrame > 1<<31 || s.MaxRaw > 1<<31 || s.Window > 1<<31 {
		return bad("max-frame, max-raw, window", errors.New("must be positive (and below 2^31)"))
	}
	c.Limits.MaxFrame, c.Limits.MaxRaw, c.Window = uint32(s.MaxFrame), uint32(s.MaxRaw), uint32(s.Window)
	c.AckTimeout = time.Duration(s.AckTimeout)
	c.LateAfter = time.Duration(s.LateAfter)
	c.QueueMaxPackets, c.QueueMaxBytes = s.QueueMaxPackets, s.QueueMaxBytes
	c.BusyRetryAfter, c.DrainTimeout = time.Duration(s.BusyRetryAfter), time.Duration(s.DrainTimeout)
	c.HandshakeTimeout, c.IdleTimeout = time.Duration(s.HandshakeTimeout), time.Duration(s.IdleTimeout)
	c.MaxConnAge = time.Duration(s.MaxConnAge)
	c.MaxConns, c.MaxConnsPerIP, c.MaxPartialBytes = s.MaxConns, s.MaxConnsPerIP, s.MaxPartialBytes
	c.SackDelay = time.Duration(s.SackDelay)
	c.SyslogUDP, c.SyslogTCP, c.SyslogTLS = s.SyslogUDP, s.SyslogTCP, s.SyslogTLS
	c.SyslogBatchMessages, c.SyslogBatchBytes = s.SyslogBatchMessages, s.SyslogBatchBytes
	c.SyslogLinger = time.Duration(s.SyslogLinger)
	c.SyslogRecvBuffer, c.SyslogCompress = s.SyslogRcvbuf, s.SyslogCompress
	c.FastDecode = s.FastDecode
	if c.Inspect, err = proxy.ParseInspect(s.Inspect); err != nil {
		return bad("inspect", err)
	}
	c.Loops = s.Loops
	c.DataDir = s.DataDir
	if c.AckMode, err = proxy.ParseAckMode(s.AckMode); err != nil {
		return bad("ack-mode", err)
	}
	if c.Spool.Sync, err = spool.ParseSync(s.SpoolSync); err != nil {
		return bad("spool-sync", err)
	}
	c.Spool.MaxBytes = s.SpoolMaxBytes
	c.Spool.KeyFile = s.SpoolKeyFile
	if c.Overflow, err = proxy.ParseOverflow(s.Overflow); err != nil {
		return bad("overflow", err)
	}
	c.QueueAlert = append([]float64(nil), s.QueueAlert...)
	c.RetryMax, c.RetryBackoff = s.RetryMax, time.Duration(s.RetryBackoff)
	if c.Allow, err = ParseAllow(s.Allow); err != nil {
		return bad("allow", err)
	}
	c.Analyzers = make([]proxy.AnalyzerConfig, 0, len(s.Analyzers))
	for _, a := range s.Analyzers {
		ac := proxy.AnalyzerConfig{Name: a.Name, Addr: a.Addr, Weight: a.Weight, TLS: a.TLS, ServerName: a.ServerName}
		if a.State != "" {
			if ac.Admin, err = balancer.ParseAdminState(a.State); err != nil {
				return bad("analyzer "+a.Name, err)
			}
		}
		if r := a.Ramp; r != nil {
			ac.Ramp = balancer.Ramp{From: r.From, Start: r.Start, Over: time.Duration(r.Over)}
		}
		c.Analyzers = append(c.Analyzers, ac)
	}
	if err := c.Validate(); err != nil {
		return proxy.Config{}, err
	}
	return c, nil
}

// Hash identifies what s says, ramps aside: two Specs with one hash are
// the same configuration. It tells a config file that changed since it
// was last applied from one that did not.
func (s Spec) Hash() string {
	s = s.Clone()
	for i := range s.Analyzers {
		s.Analyzers[i].Ramp = nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic("BUG: config: a Spec does not marshal: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Restart lists the keys that differ between a and b and that only a
// restart can change; the rest a running logdist takes at once.
func Restart(a, b Spec) []string {
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, key)
		}
	}
	add(a.Listen != b.Listen, "listen")
	add(a.TLSListen != b.TLSListen, "tls-listen")
	add(a.TLSCert != b.TLSCert || a.TLSKey != b.TLSKey || a.TLSClientCA != b.TLSClientCA, "tls-cert/tls-key/tls-client-ca (their contents reload)")
	add(a.UpstreamTLSCA != b.UpstreamTLSCA || a.UpstreamTLSCert != b.UpstreamTLSCert || a.UpstreamTLSKey != b.UpstreamTLSKey,
		"upstream-tls-ca/cert/key (their contents reload)")
	add(a.Auth != b.Auth || a.AuthFile != b.AuthFile, "auth/auth-file (the file's contents reload)")
	add(a.Redact != b.Redact, "redact (the file's contents reload)")
	add(!slices.Equal(a.Dict, b.Dict), "dict (the files are read at start only)")
	add(a.Admin != b.Admin, "admin")
	add(a.DataDir != b.DataDir, "data-dir")
	add(a.AckMode != b.AckMode, "ack-mode")
	add(a.SpoolSync != b.SpoolSync, "spool-sync")
	add(a.SpoolMaxBytes != b.SpoolMaxBytes, "spool-max-bytes")
	add(a.SpoolKeyFile != b.SpoolKeyFile, "spool-key-file (its contents are read at start only)")
	add(a.Pprof != b.Pprof, "pprof")
	add(a.LogFormat != b.LogFormat, "log-format")
	add(a.Loops != b.Loops, "loops")
	add(a.Balance != b.Balance, "balance")
	add(a.MaxAnalyzers != b.MaxAnalyzers, "max-analyzers")
	add(a.Rise != b.Rise, "rise")
	add(a.Fall != b.Fall, "fall")
	add(a.SlowStart != b.SlowStart, "slow-start")
	add(a.BreakerBackoff != b.BreakerBackoff, "breaker-backoff")
	add(a.BreakerMaxBackoff != b.BreakerMaxBackoff, "breaker-max-backoff")
	add(a.SyslogUDP != b.SyslogUDP, "syslog-udp")
	add(a.SyslogTCP != b.SyslogTCP, "syslog-tcp")
	add(a.SyslogTLS != b.SyslogTLS, "syslog-tls")
	add(a.SyslogRcvbuf != b.SyslogRcvbuf, "syslog-rcvbuf")
	return keys
}

// Diff says in words what changed from a to b: one line per setting, one
// per analyzer added, removed or changed. Ramps show as the weight they
// lead to, with their duration.
func Diff(a, b Spec) []string {
	var out []string
	keys, ma := settings(a)
	_, mb := settings(b)
	for _, k := range keys {
		if ma[k] != mb[k] {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, ma[k], mb[k]))
		}
	}
	for _, x := range a.Analyzers {
		i := b.Analyzer(x.Name)
		if i < 0 {
			out = append(out, fmt.Sprintf("analyzer %s: removed (%s)", x.Name, x.describe()))
			continue
		}
		y := b.Analyzers[i]
		var d []string
		if x.Addr != y.Addr {
			d = append(d, "addr "+x.Addr+" → "+y.Addr)
		}
		switch {
		case y.Ramp != nil && (x.Ramp == nil || *x.Ramp != *y.Ramp):
			d = append(d, "weight "+fmtWeight(x.Weight)+" → "+fmtWeight(y.Weight)+" over "+y.Ramp.Over.String())
		case x.Weight != y.Weight:
			d = append(d, "weight "+fmtWeight(x.Weight)+" → "+fmtWeight(y.Weight))
		case x.Ramp != nil && y.Ramp == nil:
			d = append(d, "weight "+fmtWeight(y.Weight)+" at once (its ramp stopped)")
		}
		if x.state() != y.state() {
			d = append(d, "state "+x.state()+" → "+y.state())
		}
		if x.TLS != y.TLS || x.ServerName != y.ServerName {
			d = append(d, fmt.Sprintf("tls %v → %v (server name %q → %q)", x.TLS, y.TLS, x.ServerName, y.ServerName))
		}
		if len(d) > 0 {
			out = append(out, fmt.Sprintf("analyzer %s: %s", x.Name, strings.Join(d, ", ")))
		}
	}
	for _, y := range b.Analyzers {
		if a.Analyzer(y.Name) < 0 {
			out = append(out, fmt.Sprintf("analyzer %s: added (%s)", y.Name, y.describe()))
		}
	}
	return out
}

func (a Analyzer) state() string {
	if a.State == "" {
		return "enabled"
	}
	return a.State
}

func (a Analyzer) describe() string {
	s := "addr " + a.Addr + ", weight " + fmtWeight(a.Weight)
	if a.state() != "enabled" {
		s += ", " + a.state()
	}
	if a.TLS {
		s += ", tls"
	}
	return s
}

func fmtWeight(w float64) string { return strconv.FormatFloat(w, 'g', -1, 64) }

// settings returns every key but analyzers, in declaration order, and
// its value as text, for Diff.
func settings(s Spec) (keys []string, vals map[string]string) {
	v := reflect.ValueOf(s)
	t := v.Type()
	vals = make(map[string]string, t.NumField())
	for i := range t.NumField() {
		k, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if k == "analyzers" {
			continue
		}
		keys = append(keys, k)
		switch x := v.Field(i).Interface().(type) {
		case []string:
			vals[k] = "[" + strings.Join(x, ", ") + "]"
		default:
			vals[k] = fmt.Sprint(x)
		}
	}
	return keys, vals
}

// Duration is a time.Duration written as text ("500ms", "5m") in YAML
// and JSON, and a flag value.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what time.ParseDuration reads.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 500ms, 5s, 2m)", b)
	}
	*d = Duration(v)
	return nil
}

// Set and Type make a Duration a pflag.Value.
func (d *Duration) Set(s string) error { return d.UnmarshalText([]byte(s)) }
func (d *Duration) Type() string       { return "duration" }

// Dicts loads the dictionary files s lists (dict), in order.
func (s Spec) Dicts() (frame.Dicts, error) {
	ds, err := frame.LoadDicts(s.Dict)
	if err != nil {
		return nil, fmt.Errorf("dict: %w", err)
	}
	return ds, nil
}
