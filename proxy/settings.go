package proxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// settings is one version of the running configuration: an immutable copy
// of the Config and what the loops derive from it. The server publishes a
// new one whole (Server.conf, an atomic pointer); each loop keeps the one
// it last took (loop.conf) and takes a new one on its own goroutine, so
// nothing on a loop reads a configuration another goroutine is changing.
type settings struct {
	Config
	// version counts the configurations applied since start (1: the first).
	version uint64
	// agents is what every agent connection's protocol session grants and
	// enforces.
	agents session.ServerConfig
	// busyRetryMs is BusyRetryAfter in the BUSY frame's unit.
	busyRetryMs uint32
	// timer is how often every loop runs its timers (heartbeats, ack
	// timeouts, redials, queue drain, connection timeouts).
	timer time.Duration
}

func newSettings(cfg Config, version uint64) *settings {
	st := &settings{Config: cfg.clone(), version: version}
	st.agents = session.ServerConfig{
		Limits:      cfg.Limits,
		Window:      cfg.Window,
		Grant:       frame.CapZstd | frame.CapSack | frame.CapTrace,
		IdleTimeout: cfg.IdleTimeout,
		ServerID:    cfg.ServerID,
		SackDelay:   cfg.SackDelay,
		Auth:        cfg.Auth,
		Dicts:       cfg.Dicts.IDs(),
	}
	st.busyRetryMs = uint32(cfg.BusyRetryAfter / time.Millisecond)
	st.timer = min(max(cfg.HeartbeatInterval/5, time.Millisecond), 50*time.Millisecond)
	return st
}

// tick is how often the ticker wakes: the timer interval, or the syslog
// linger if shorter, for loops with syslog batches open (they close on
// time).
func (st *settings) tick() time.Duration {
	d := st.timer
	if (st.SyslogUDP != "" || st.SyslogTCP != "" || st.SyslogTLS != "") && d > st.SyslogLinger {
		d = max(st.SyslogLinger, time.Millisecond)
	}
	return d
}

// ErrRestartRequired is returned by Reconfigure for a change to a setting
// that is fixed while the server runs (a listen address, the number of
// loops, the picker strategy).
var ErrRestartRequired = errors.New("proxy: setting changes only at restart")

// restartChanges lists the settings that differ between a and b and that
// only a restart can change.
func restartChanges(a, b *Config) error {
	var names []string
	add := func(changed bool, name string) {
		if changed {
			names = append(names, name)
		}
	}
	add(a.Listen != b.Listen, "listen")
	add(a.loops() != b.loops(), "loops")
	add(a.SyslogUDP != b.SyslogUDP, "syslog-udp")
	add(a.SyslogTCP != b.SyslogTCP, "syslog-tcp")
	add(a.SyslogTLS != b.SyslogTLS, "syslog-tls")
	add(a.SyslogRecvBuffer != b.SyslogRecvBuffer, "syslog-rcvbuf")
	add(a.TransportListen != b.TransportListen, "transport-listen")
	add(a.DataDir != b.DataDir, "data-dir")
	add(a.Spool != b.Spool, "spool-sync/spool-max-bytes/spool-key-file")
	add(a.AckMode != b.AckMode, "ack-mode")
	add(dictsChanged(a.Dicts, b.Dicts), "dict")
	ab, bb := a.Balancer.WithDefaults(), b.Balancer.WithDefaults()
	add(ab.Strategy != bb.Strategy, "balance")
	add(ab.Rise != bb.Rise || ab.Fall != bb.Fall, "rise/fall")
	add(ab.SlowStart != bb.SlowStart || ab.SlowStartSteps != bb.SlowStartSteps, "slow-start")
	add(ab.BreakerBackoff != bb.BreakerBackoff || ab.BreakerMaxBackoff != bb.BreakerMaxBackoff ||
		ab.HalfOpenProbes != bb.HalfOpenProbes || ab.ProbeTimeout != bb.ProbeTimeout, "breaker")
	add(ab.MaxAnalyzers != bb.MaxAnalyzers, "max analyzers")
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s (the running values stay; restart logdist to change them)", ErrRestartRequired, strings.Join(names, ", "))
}
