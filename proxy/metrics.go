package proxy

import (
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/syslog"
)

// loopMetrics are one event loop's counters. Each loop has its own (the
// loop="N" label), so the per-packet increments are uncontended atomics on
// cache lines no other core writes.
type loopMetrics struct {
	set  *metrics.Set
	loop string

	frames, messages, bytes *metrics.Counter
	handshakes              *metrics.Counter
	agentAcks               *metrics.Counter
	busy, rejected          *metrics.Counter
	queueFull               *metrics.Counter
	redispatched            *metrics.Counter
	orphansDropped          *metrics.Counter
	forwarded               *metrics.Counter
	upstreamBusy            *metrics.Counter
	upstreamRejected        *metrics.Counter
	upstreamLost            *metrics.Counter
	dialFailures            *metrics.Counter
	heartbeatMissed         *metrics.Counter
	ackTimeouts             *metrics.Counter
	queued                  *metrics.Counter // used as a gauge via Set
	agentConns              atomic.Int64
	oldestQueuedNs          atomic.Int64

	// ackLatency is sampled (one packet in ackSample): VictoriaMetrics
	// histograms take a mutex per update and a precise clock read costs
	// tens to hundreds of ns, both of which the hot path avoids.
	ackLatency   *metrics.Histogram
	heartbeatRTT *metrics.Histogram
	ackSampleN   uint32

	// Syslog ingest (loops of the syslog engine only).
	syslogDatagrams, syslogBytes   *metrics.Counter
	syslogTruncated, syslogEmpty   *metrics.Counter
	syslogClipped                  *metrics.Counter
	syslogFormat                   [3]*metrics.Counter // by syslog.Format
	syslogBatches, syslogMessages  *metrics.Counter
	syslogDropped, syslogForwarded *metrics.Counter
	syslogTCPMessages              *metrics.Counter
	syslogTCPFraming               *metrics.Counter
	syslogShutdownDropped          *metrics.Counter
	syslogTCPConns                 atomic.Int64
}

const ackSample = 32

func newLoopMetrics(set *metrics.Set, idx int) *loopMetrics {
	l := fmt.Sprintf(`loop="%d"`, idx)
	c := func(name string) *metrics.Counter { return set.GetOrCreateCounter(name + "{" + l + "}") }
	m := &loopMetrics{
		set:              set,
		loop:             l,
		frames:           c("logdist_ingest_packets_total"),
		messages:         c("logdist_ingest_messages_total"),
		bytes:            c("logdist_ingest_bytes_total"),
		handshakes:       c("logdist_agent_handshakes_total"),
		agentAcks:        c("logdist_agent_acked_packets_total"),
		busy:             c("logdist_agent_busy_total"),
		rejected:         c("logdist_agent_rejected_packets_total"),
		queueFull:        c("logdist_queue_full_total"),
		redispatched:     c("logdist_redispatched_packets_total"),
		orphansDropped:   c("logdist_orphaned_packets_dropped_total"),
		forwarded:        c("logdist_forwarded_packets_total"),
		upstreamBusy:     c("logdist_upstream_busy_total"),
		upstreamRejected: c("logdist_upstream_rejected_packets_total"),
		upstreamLost:     c("logdist_upstream_connections_lost_total"),
		dialFailures:     c("logdist_upstream_dial_failures_total"),
		heartbeatMissed:  c("logdist_upstream_heartbeats_missed_total"),
		ackTimeouts:      c("logdist_upstream_ack_timeouts_total"),
		queued:           c("logdist_queue_packets"),
		ackLatency:       set.GetOrCreateHistogram(`logdist_forward_ack_seconds{` + l + `}`),
		heartbeatRTT:     set.GetOrCreateHistogram(`logdist_upstream_heartbeat_rtt_seconds{` + l + `}`),
	}
	m.syslogDatagrams = c("logdist_syslog_datagrams_total")
	m.syslogBytes = c("logdist_syslog_bytes_total")
	m.syslogTruncated = c("logdist_syslog_truncated_total")
	m.syslogEmpty = c("logdist_syslog_empty_total")
	m.syslogClipped = c("logdist_syslog_clipped_total")
	for f := syslog.Unparsed; f <= syslog.RFC5424; f++ {
		m.syslogFormat[f] = set.GetOrCreateCounter(`logdist_syslog_messages_parsed_total{` + l + `,format="` + f.String() + `"}`)
	}
	m.syslogBatches = c("logdist_syslog_batches_total")
	m.syslogMessages = c("logdist_syslog_batched_messages_total")
	m.syslogDropped = c("logdist_syslog_dropped_packets_total")
	m.syslogForwarded = c("logdist_syslog_forwarded_messages_total")
	m.syslogTCPMessages = c("logdist_syslog_tcp_messages_total")
	m.syslogTCPFraming = c("logdist_syslog_tcp_framing_errors_total")
	m.syslogShutdownDropped = c("logdist_syslog_shutdown_dropped_total")
	set.GetOrCreateGauge(`logdist_syslog_tcp_connections{`+l+`}`, func() float64 { return float64(m.syslogTCPConns.Load()) })
	set.GetOrCreateGauge(`logdist_agent_connections{`+l+`}`, func() float64 { return float64(m.agentConns.Load()) })
	set.GetOrCreateGauge(`logdist_queue_oldest_age_seconds{`+l+`}`, func() float64 { return float64(m.oldestQueuedNs.Load()) / 1e9 })
	return m
}

// protocolError counts a connection closed or a packet rejected for a
// protocol violation, by code (a small fixed set of label values).
func (m *loopMetrics) protocolError(code frame.Code) {
	m.set.GetOrCreateCounter(`logdist_protocol_errors_total{` + m.loop + `,code="` + code.String() + `"}`).Inc()
}

// sampleNow reports whether the packet being sent is one of the one in
// ackSample whose ack latency is measured.
func (m *loopMetrics) sampleNow() bool {
	m.ackSampleN++
	return m.ackSampleN%ackSample == 0
}

type serverMetrics struct{}

// newServerMetrics registers the per-analyzer metrics, read from the
// balancer's view at scrape time. Analyzer names come from the operator's
// configuration, so they are bounded label values.
func newServerMetrics(s *Server) *serverMetrics {
	for _, a := range s.cfg.Analyzers {
		name := a.Name
		lbl := `{analyzer="` + name + `"}`
		get := func(f func(v analyzerRow) float64) func() float64 {
			return func() float64 {
				for _, v := range s.analyzerRows() {
					if v.Name == name {
						return f(v)
					}
				}
				return 0
			}
		}
		s.mset.GetOrCreateGauge("logdist_analyzer_packets_total"+lbl, get(func(v analyzerRow) float64 { return float64(v.Packets) }))
		s.mset.GetOrCreateGauge("logdist_analyzer_messages_total"+lbl, get(func(v analyzerRow) float64 { return float64(v.Messages) }))
		s.mset.GetOrCreateGauge("logdist_analyzer_bytes_total"+lbl, get(func(v analyzerRow) float64 { return float64(v.Bytes) }))
		s.mset.GetOrCreateGauge("logdist_analyzer_healthy"+lbl, get(func(v analyzerRow) float64 {
			if v.Healthy {
				return 1
			}
			return 0
		}))
		s.mset.GetOrCreateGauge("logdist_analyzer_weight"+lbl, get(func(v analyzerRow) float64 { return v.Weight }))
		s.mset.GetOrCreateGauge("logdist_analyzer_effective_weight"+lbl, get(func(v analyzerRow) float64 { return v.EffectiveWeight }))
		s.mset.GetOrCreateGauge("logdist_analyzer_share"+lbl, get(func(v analyzerRow) float64 { return v.Share }))
	}
	s.mset.GetOrCreateGauge("logdist_queue_bytes", func() float64 { return float64(s.queuedBytes.Load()) })
	return &serverMetrics{}
}
