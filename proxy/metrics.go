package proxy

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/syslog"
	"github.com/logdist/logdist/internal/version"
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
	rateLimited             *metrics.Counter
	hedged                  *metrics.Counter // packets copied from a late analyzer to another
	revoked                 *metrics.Counter // agent connections told their credentials were revoked
	// redactedPackets counts agents' packets encoded again after
	// redaction; redactedMessages the replacements made (the per-rule
	// split is logdist_redactions_total{rule}).
	redactedPackets, redactedMessages *metrics.Counter
	queueFull                         *metrics.Counter
	redispatched                      *metrics.Counter
	spilled                           *metrics.Counter
	orphansDropped                    *metrics.Counter
	forwarded                         *metrics.Counter
	queued                            *metrics.Counter // used as a gauge via Set
	agentConns                        atomic.Int64
	oldestQueuedNs                    atomic.Int64

	// ackLatency is sampled (one packet in ackSample): VictoriaMetrics
	// histograms take a mutex per update and a precise clock read costs
	// tens to hundreds of ns, both of which the hot path avoids.
	ackLatency *metrics.Histogram
	// ackSampleRNG picks the sampled packets at random (xorshift): every
	// 32nd packet would alias with the picker's period (weights 5:3:2
	// repeat every 10 picks, and one analyzer never got a sample).
	ackSampleRNG uint32

	// Syslog ingest.
	syslogDatagrams, syslogBytes   *metrics.Counter
	syslogTruncated, syslogEmpty   *metrics.Counter
	syslogClipped                  *metrics.Counter
	syslogFormat                   [3]*metrics.Counter // by syslog.Format
	syslogBatches, syslogMessages  *metrics.Counter
	syslogDropped, syslogForwarded *metrics.Counter
	syslogShutdownDropped          *metrics.Counter
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
		rateLimited:      c("logdist_agent_rate_limited_total"),
		redactedPackets:  c("logdist_redacted_packets_total"),
		redactedMessages: c("logdist_redacted_replacements_total"),
		rejected:         c("logdist_agent_rejected_packets_total"),
		queueFull:        c("logdist_queue_full_total"),
		redispatched:     c("logdist_redispatched_packets_total"),
		hedged:           c("logdist_hedged_packets_total"),
		revoked:          c("logdist_agent_revoked_total"),
		spilled:          c("logdist_spilled_packets_total"),
		orphansDropped:   c("logdist_orphaned_packets_dropped_total"),
		forwarded:        c("logdist_forwarded_packets_total"),
		queued:           c("logdist_queue_packets"),
		ackLatency:       set.GetOrCreateHistogram(`logdist_forward_ack_seconds{` + l + `}`),
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
	m.syslogShutdownDropped = c("logdist_syslog_shutdown_dropped_total")
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
	x := m.ackSampleRNG
	if x == 0 {
		x = 0x9e3779b9
	}
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	m.ackSampleRNG = x
	return x%ackSample == 0
}

// analyzerMetrics count what happens to the connections to one analyzer,
// over every loop (rare events: contention does not matter). They are
// registered when the analyzer is added and unregistered when it is
// removed; its name is a validated, operator-given label value.
type analyzerMetrics struct {
	names            []string
	dialFailures     *metrics.Counter
	lost             *metrics.Counter
	heartbeatsMissed *metrics.Counter
	ackTimeouts      *metrics.Counter
	busy             *metrics.Counter
	rejected         *metrics.Counter
	heartbeatRTT     *metrics.Histogram
}

func newAnalyzerMetrics(set *metrics.Set, name string) *analyzerMetrics {
	m := &analyzerMetrics{}
	lbl := `{analyzer="` + name + `"}`
	c := func(family string) *metrics.Counter {
		n := family + lbl
		m.names = append(m.names, n)
		return set.GetOrCreateCounter(n)
	}
	m.dialFailures = c("logdist_upstream_dial_failures_total")
	m.lost = c("logdist_upstream_connections_lost_total")
	m.heartbeatsMissed = c("logdist_upstream_heartbeats_missed_total")
	m.ackTimeouts = c("logdist_upstream_ack_timeouts_total")
	m.busy = c("logdist_upstream_busy_total")
	m.rejected = c("logdist_upstream_rejected_packets_total")
	n := "logdist_upstream_heartbeat_rtt_seconds" + lbl
	m.names = append(m.names, n)
	m.heartbeatRTT = set.GetOrCreateHistogram(n)
	return m
}

func (m *analyzerMetrics) unregister(set *metrics.Set) {
	for _, n := range m.names {
		set.UnregisterMetric(n)
	}
}

// writeAnalyzerMetrics writes the per-analyzer series read from the
// balancer and the registry at scrape time: one view for all of them, so
// a scrape costs O(analyzers), and a removed analyzer's series are gone.
func (s *Server) writeAnalyzerMetrics(w io.Writer) {
	st := s.Status()
	for _, a := range st.Analyzers {
		lbl := `{analyzer="` + a.Name + `"}`
		metrics.WriteCounterUint64(w, "logdist_analyzer_packets_total"+lbl, a.Packets)
		metrics.WriteCounterUint64(w, "logdist_analyzer_messages_total"+lbl, a.Messages)
		metrics.WriteCounterUint64(w, "logdist_analyzer_wire_bytes_total"+lbl, a.Bytes)
		metrics.WriteGaugeUint64(w, "logdist_analyzer_healthy"+lbl, b2u(a.Healthy))
		metrics.WriteGaugeUint64(w, "logdist_analyzer_selectable"+lbl, b2u(a.Selectable))
		metrics.WriteGaugeFloat64(w, "logdist_analyzer_weight"+lbl, a.Weight)
		metrics.WriteGaugeFloat64(w, "logdist_analyzer_effective_weight"+lbl, a.EffectiveWeight)
		metrics.WriteGaugeFloat64(w, "logdist_analyzer_share"+lbl, a.Share)
		metrics.WriteGaugeUint64(w, "logdist_analyzer_connections"+lbl, uint64(a.Connections))
		metrics.WriteGaugeUint64(w, "logdist_analyzer_in_flight_packets"+lbl, uint64(max(a.InFlight, 0)))
		metrics.WriteCounterUint64(w, "logdist_analyzer_ack_latency_seconds_count"+lbl, a.AckLatencySamples)
		metrics.WriteCounterFloat64(w, "logdist_analyzer_ack_latency_seconds_sum"+lbl, a.AckLatencySecondsSum)
	}
	metrics.WriteGaugeUint64(w, "logdist_queue_bytes", uint64(max(st.Queue.Bytes, 0)))
	metrics.WriteGaugeUint64(w, "logdist_partial_frame_bytes", uint64(max(s.partial.Load(), 0)))
	metrics.WriteGaugeUint64(w, "logdist_config_version", st.ConfigVersion)
	metrics.WriteGaugeUint64(w, buildInfo, 1)
}

// buildInfo is the logdist_build_info series: always 1, its labels say
// which build runs (internal/version).
var buildInfo = func() string {
	b := version.Get()
	return fmt.Sprintf("logdist_build_info{version=%s,revision=%s,modified=%q,goversion=%s}",
		strconv.Quote(b.Version), strconv.Quote(b.Revision), strconv.FormatBool(b.Modified), strconv.Quote(b.Go))
}()

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
