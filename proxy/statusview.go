package proxy

import (
	"sort"
	"time"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/internal/version"
	"github.com/logdist/logdist/proxy/status"
)

// Status returns what the server says about itself: the admin API's
// analyzer rows, the queue, the configuration version. It takes one view
// of the balancer (its mutex, briefly) and reads the loops' published
// counters; it never stops a loop.
func (s *Server) Status() status.Status {
	v := s.set.View()
	reg := s.reg.Load()
	conf := s.conf.Load()
	st := status.Status{
		Time:          time.Now().UTC(),
		ConfigVersion: conf.version,
		Draining:      s.draining.Load(),
		Queue: status.Queue{
			Packets: int(s.queuedPackets.Load()),
			Bytes:   s.queuedBytes.Load(),
		},
		Analyzers: make([]status.Analyzer, 0, len(v.Analyzers)),
	}
	st.Started, st.Build = s.created, version.Get().Version
	var oldest int64
	for _, lp := range s.snapshotLoops() {
		m := lp.m
		st.AgentConnections += int(m.agentConns.Load())
		oldest = max(oldest, m.oldestQueuedNs.Load())
		t := &st.Totals
		t.AgentPackets += m.frames.Get()
		t.Forwarded += m.forwarded.Get()
		t.SyslogMessages += m.syslogMessages.Get()
		t.SyslogForwarded += m.syslogForwarded.Get()
		t.SyslogDropped += m.syslogDropped.Get() + m.syslogShutdownDropped.Get()
	}
	st.Queue.OldestAgeSeconds = float64(oldest) / 1e9
	for _, a := range v.Analyzers {
		row := status.Analyzer{
			Name:            a.Name,
			Addr:            a.Addr,
			Weight:          a.Weight,
			EffectiveWeight: a.EffectiveWeight,
			State:           a.Admin.String(),
			Health:          a.Health.String(),
			Breaker:         a.Breaker.String(),
			Healthy:         a.Health == balancer.Up,
			Selectable:      a.Selectable,
			Packets:         a.Packets,
			Messages:        a.Messages,
			Bytes:           a.Bytes,
			Share:           a.Share,
			HealthSince:     a.HealthSince,
		}
		if r := a.Ramp; r != (balancer.Ramp{}) {
			row.Ramp = &status.Ramp{From: r.From, Start: r.Start.UTC(), Ends: r.Start.Add(r.Over).UTC()}
		}
		if as := reg.get(a.ID); as != nil && as.gen == a.Gen {
			row.Connections = int(as.ready.Load())
			row.InFlight = int(as.inflight.Load())
			row.AckLatencySamples = as.ackSamples.Load()
			row.AckLatencySecondsSum = float64(as.ackNanos.Load()) / 1e9
			row.TLS = as.cfg.TLS
			if msg, at := as.lastError(); msg != "" {
				row.LastError = msg
				t := at.UTC().Truncate(time.Millisecond)
				row.LastErrorAt = &t
			}
		}
		if row.Selectable {
			st.Ready = true
		}
		st.Analyzers = append(st.Analyzers, row)
	}
	sort.Slice(st.Analyzers, func(i, j int) bool { return st.Analyzers[i].Name < st.Analyzers[j].Name })
	if st.Draining {
		st.Ready = false
	}
	return st
}
