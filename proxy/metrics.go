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
	"github.com/logdist/logdist/proxy/status"
)

// loopMetrics are one event loop's counters. Each loop has its own, in a
// set of its own that is never exported as such: the per-packet
// increments are uncontended atomics on cache lines no other core writes,
// and the server sums the loops at scrape time (writeLoopMetrics), so the
// exported series have no loop label and exist from the start, before any
// loop has seen a connection.
type loopMetrics struct {
	set *metrics.Set

	frames, messages, bytes *metrics.Counter
	handshakes              *metrics.Counter
	agentAcks               *metrics.Counter
	busy, rejected          *metrics.Counter
	rateLimited             *metrics.Counter
	hedged                  *metrics.Counter // packets copied from a late analyzer to another
	revoked                 *metrics.Counter // agent connections told their credentials were revoked
	agedOut                 *metrics.Counter // agent connections sent GOAWAY by --max-conn-age
	// redactedPackets counts agents' packets encoded again after
	// redaction; redactedMessages the replacements made (the per-rule
	// split is logdist_redactions_total{rule}).
	redactedPackets, redactedMessages *metrics.Counter
	queueFull                         *metrics.Counter
	redispatched                      *metrics.Counter
	spilled                           *metrics.Counter
	dictUnroutable                    *metrics.Counter // dict.go: no ready analyzer holds the packet's dictionary
	orphansDropped                    *metrics.Counter
	forwarded                         *metrics.Counter
	agentConns                        atomic.Int64
	oldestQueuedNs                    atomic.Int64
	protocolErrors                    [len(errorCodes)]*metrics.Counter

	// ackSampleRNG picks the packets whose latencies are measured (one in
	// ackSample) at random (xorshift): every 32nd packet would alias with
	// the picker's period (weights 5:3:2 repeat every 10 picks, and one
	// analyzer never got a sample). Histograms take a mutex per update
	// and a precise clock read costs tens to hundreds of ns, both of which
	// the hot path avoids.
	ackSampleRNG uint32
	// agentAckLatency (receive to the agent's ACK) is the server's,
	// shared by the loops: sampled updates do not contend.
	agentAckLatency *metrics.PrometheusHistogram

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

// Latency buckets, in seconds. Acks: from a loopback analyzer's 100 µs to
// an ack timeout's tens of seconds. Heartbeats: a round trip that takes
// more than a few seconds has already been judged missed.
var (
	ackBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	rttBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// errorCodes are the codes logdist_protocol_errors_total is split by,
// every one exported from the start.
var errorCodes = [...]frame.Code{
	frame.CodeProtocol, frame.CodeBadMagic, frame.CodeBadVersion, frame.CodeBadType,
	frame.CodeFrameTooLarge, frame.CodeBadChecksum, frame.CodeBadHandshake, frame.CodeAuth,
	frame.CodeHandshakeTimeout, frame.CodeIdleTimeout, frame.CodeWindowExceeded, frame.CodeBadSequence,
	frame.CodeShutdown, frame.CodeInternal, frame.CodeOverloaded,
	frame.CodeMalformed, frame.CodeTooManyMessages, frame.CodeFieldTooLong, frame.CodeBadCompression,
	frame.CodeRawTooLarge, frame.CodeRejected, frame.CodeUnknownDict,
}

func newLoopMetrics(agentAckLatency *metrics.PrometheusHistogram) *loopMetrics {
	set := metrics.NewSet()
	c := func(name string) *metrics.Counter { return set.NewCounter(name) }
	m := &loopMetrics{
		set:              set,
		frames:           c("ingest_packets"),
		messages:         c("ingest_messages"),
		bytes:            c("ingest_bytes"),
		handshakes:       c("handshakes"),
		agentAcks:        c("agent_acks"),
		busy:             c("busy"),
		rateLimited:      c("rate_limited"),
		redactedPackets:  c("redacted_packets"),
		redactedMessages: c("redacted_messages"),
		rejected:         c("rejected"),
		queueFull:        c("queue_full"),
		redispatched:     c("redispatched"),
		hedged:           c("hedged"),
		revoked:          c("revoked"),
		agedOut:          c("aged_out"),
		spilled:          c("spilled"),
		dictUnroutable:   c("dict_unroutable"),
		orphansDropped:   c("orphans_dropped"),
		forwarded:        c("forwarded"),
		agentAckLatency:  agentAckLatency,
	}
	for i := range errorCodes {
		m.protocolErrors[i] = set.NewCounter(fmt.Sprintf("protocol_errors_%d", i))
	}
	m.syslogDatagrams = c("syslog_datagrams")
	m.syslogBytes = c("syslog_bytes")
	m.syslogTruncated = c("syslog_truncated")
	m.syslogEmpty = c("syslog_empty")
	m.syslogClipped = c("syslog_clipped")
	for f := syslog.Unparsed; f <= syslog.RFC5424; f++ {
		m.syslogFormat[f] = c("syslog_format_" + f.String())
	}
	m.syslogBatches = c("syslog_batches")
	m.syslogMessages = c("syslog_messages")
	m.syslogDropped = c("syslog_dropped")
	m.syslogForwarded = c("syslog_forwarded")
	m.syslogShutdownDropped = c("syslog_shutdown_dropped")
	return m
}

// loopCounters are the exported families summed over the loops at scrape
// time, each with the loop counter it sums.
var loopCounters = []struct {
	family string
	get    func(*loopMetrics) *metrics.Counter
}{
	{"logdist_ingest_packets_total", func(m *loopMetrics) *metrics.Counter { return m.frames }},
	{"logdist_ingest_messages_total", func(m *loopMetrics) *metrics.Counter { return m.messages }},
	{"logdist_ingest_wire_bytes_total", func(m *loopMetrics) *metrics.Counter { return m.bytes }},
	{"logdist_agent_handshakes_total", func(m *loopMetrics) *metrics.Counter { return m.handshakes }},
	{"logdist_agent_acked_packets_total", func(m *loopMetrics) *metrics.Counter { return m.agentAcks }},
	{"logdist_agent_busy_total", func(m *loopMetrics) *metrics.Counter { return m.busy }},
	{"logdist_agent_rate_limited_total", func(m *loopMetrics) *metrics.Counter { return m.rateLimited }},
	{"logdist_agent_rejected_packets_total", func(m *loopMetrics) *metrics.Counter { return m.rejected }},
	{"logdist_agent_revoked_total", func(m *loopMetrics) *metrics.Counter { return m.revoked }},
	{"logdist_agent_aged_out_total", func(m *loopMetrics) *metrics.Counter { return m.agedOut }},
	{"logdist_redacted_packets_total", func(m *loopMetrics) *metrics.Counter { return m.redactedPackets }},
	{"logdist_redacted_replacements_total", func(m *loopMetrics) *metrics.Counter { return m.redactedMessages }},
	{"logdist_queue_full_total", func(m *loopMetrics) *metrics.Counter { return m.queueFull }},
	{"logdist_redispatched_packets_total", func(m *loopMetrics) *metrics.Counter { return m.redispatched }},
	{"logdist_hedged_packets_total", func(m *loopMetrics) *metrics.Counter { return m.hedged }},
	{"logdist_spilled_packets_total", func(m *loopMetrics) *metrics.Counter { return m.spilled }},
	{"logdist_dict_unroutable_total", func(m *loopMetrics) *metrics.Counter { return m.dictUnroutable }},
	{"logdist_forwarded_packets_total", func(m *loopMetrics) *metrics.Counter { return m.forwarded }},
	{"logdist_syslog_datagrams_total", func(m *loopMetrics) *metrics.Counter { return m.syslogDatagrams }},
	{"logdist_syslog_datagram_bytes_total", func(m *loopMetrics) *metrics.Counter { return m.syslogBytes }},
	{"logdist_syslog_truncated_total", func(m *loopMetrics) *metrics.Counter { return m.syslogTruncated }},
	{"logdist_syslog_empty_total", func(m *loopMetrics) *metrics.Counter { return m.syslogEmpty }},
	{"logdist_syslog_clipped_total", func(m *loopMetrics) *metrics.Counter { return m.syslogClipped }},
	{"logdist_syslog_batches_total", func(m *loopMetrics) *metrics.Counter { return m.syslogBatches }},
	{"logdist_syslog_batched_messages_total", func(m *loopMetrics) *metrics.Counter { return m.syslogMessages }},
	{"logdist_syslog_forwarded_messages_total", func(m *loopMetrics) *metrics.Counter { return m.syslogForwarded }},
}

// dropReasons split logdist_dropped_total: what logdist let go of,
// and why. Each reason's unit is in its help text (docs/OBSERVABILITY.md).
var dropReasons = []struct {
	reason string
	get    func(*loopMetrics) *metrics.Counter
}{
	// An agent's packet whose connection closed before it was forwarded:
	// it was never acknowledged, so the agent sends it again.
	{"agent_gone", func(m *loopMetrics) *metrics.Counter { return m.orphansDropped }},
	// A syslog batch with no room in the waiting queue: lost.
	{"syslog_queue_full", func(m *loopMetrics) *metrics.Counter { return m.syslogDropped }},
	// A syslog datagram received while logdist drains: lost.
	{"syslog_draining", func(m *loopMetrics) *metrics.Counter { return m.syslogShutdownDropped }},
}

// writeLoopMetrics writes the loops' counters summed, one series per
// family (and per label value), all of them whether or not a loop exists.
func (s *Server) writeLoopMetrics(w io.Writer) {
	loops := s.snapshotLoops()
	sum := func(get func(*loopMetrics) *metrics.Counter) uint64 {
		var n uint64
		for _, lp := range loops {
			n += get(lp.m).Get()
		}
		return n
	}
	for _, c := range loopCounters {
		metrics.WriteCounterUint64(w, c.family, sum(c.get))
	}
	for _, d := range dropReasons {
		metrics.WriteCounterUint64(w, `logdist_dropped_total{reason="`+d.reason+`"}`, sum(d.get))
	}
	var tcpDrained uint64 // TCP syslog messages read but not forwarded at shutdown: lost
	for _, t := range []*syslogTCP{s.tcp, s.tlsSyslog} {
		if t != nil {
			tcpDrained += t.shutdownDropped.Load()
		}
	}
	metrics.WriteCounterUint64(w, `logdist_dropped_total{reason="syslog_tcp_draining"}`, tcpDrained)
	for i, code := range errorCodes {
		metrics.WriteCounterUint64(w, `logdist_protocol_errors_total{code="`+code.String()+`"}`,
			sum(func(m *loopMetrics) *metrics.Counter { return m.protocolErrors[i] }))
	}
	for f := syslog.Unparsed; f <= syslog.RFC5424; f++ {
		metrics.WriteCounterUint64(w, `logdist_syslog_messages_parsed_total{format="`+f.String()+`"}`,
			sum(func(m *loopMetrics) *metrics.Counter { return m.syslogFormat[f] }))
	}
	var conns, oldest int64
	for _, lp := range loops {
		conns += lp.m.agentConns.Load()
		oldest = max(oldest, lp.m.oldestQueuedNs.Load())
	}
	metrics.WriteGaugeUint64(w, "logdist_agent_connections", uint64(max(conns, 0)))
	metrics.WriteGaugeUint64(w, "logdist_queue_packets", uint64(max(s.queuedPackets.Load(), 0)))
	metrics.WriteGaugeUint64(w, "logdist_queue_bytes", uint64(max(s.queuedBytes.Load(), 0)))
	conf := s.conf.Load()
	metrics.WriteGaugeUint64(w, "logdist_queue_max_packets", uint64(max(conf.QueueMaxPackets, 0)))
	metrics.WriteGaugeUint64(w, "logdist_queue_max_bytes", uint64(max(conf.QueueMaxBytes, 0)))
	metrics.WriteGaugeFloat64(w, "logdist_queue_oldest_age_seconds", float64(oldest)/1e9)
	metrics.WriteGaugeUint64(w, "logdist_event_loops", uint64(len(loops)))
}

// protocolError counts a connection closed or a packet rejected for a
// protocol violation, by code (a small fixed set of label values).
func (m *loopMetrics) protocolError(code frame.Code) {
	for i, c := range errorCodes {
		if c == code {
			m.protocolErrors[i].Inc()
			return
		}
	}
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
	heartbeatRTT     *metrics.PrometheusHistogram
	// ackLatency is dispatch to the analyzer's ACK, for the sampled
	// packets (one in ackSample), over every loop.
	ackLatency *metrics.PrometheusHistogram
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
	h := func(family string, buckets []float64) *metrics.PrometheusHistogram {
		n := family + lbl
		m.names = append(m.names, n)
		return set.GetOrCreatePrometheusHistogramExt(n, buckets)
	}
	m.heartbeatRTT = h("logdist_upstream_heartbeat_rtt_seconds", rttBuckets)
	m.ackLatency = h("logdist_upstream_ack_latency_seconds", ackBuckets)
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
	window := s.shares.observe(st)
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
		if ws, ok := window[a.Name]; ok {
			metrics.WriteGaugeFloat64(w, "logdist_analyzer_window_share"+lbl, ws.share)
			metrics.WriteGaugeFloat64(w, "logdist_analyzer_share_skew"+lbl, ws.skew)
		}
	}
	metrics.WriteGaugeUint64(w, "logdist_analyzers", uint64(len(st.Analyzers)))
	metrics.WriteGaugeUint64(w, "logdist_analyzers_selectable", uint64(countSelectable(st)))
	metrics.WriteGaugeUint64(w, "logdist_partial_frame_bytes", uint64(max(s.partial.Load(), 0)))
	metrics.WriteGaugeUint64(w, "logdist_config_version", st.ConfigVersion)
	metrics.WriteGaugeUint64(w, "logdist_draining", b2u(st.Draining))
	metrics.WriteGaugeUint64(w, "logdist_ready", b2u(st.Ready && !st.Draining))
	metrics.WriteGaugeUint64(w, buildInfo, 1)
}

func countSelectable(st status.Status) int {
	n := 0
	for _, a := range st.Analyzers {
		if a.Selectable {
			n++
		}
	}
	return n
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
