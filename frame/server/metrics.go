package server

import (
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/promexp"
)

// DefaultMetricsPrefix starts the server's metric names when
// Config.MetricsPrefix is empty.
const DefaultMetricsPrefix = "frame_server"

// serverMetrics are the server's counters, registered on a Set the server
// owns so that several servers can live in one process. Labels are frame
// types and error codes: bounded sets, never agent-supplied strings, and
// every value exists from the start.
type serverMetrics struct {
	set *metrics.Set

	active       atomic.Int64
	connections  *metrics.Counter
	frames       [frame.MaxType + 1]*metrics.Counter
	bytes        *metrics.Counter // header + payload of every frame read
	messages     *metrics.Counter // messages in accepted packets
	acked        *metrics.Counter
	busy         *metrics.Counter
	acks         *metrics.Counter // ACK frames written (one per batch)
	tlsFailures  *metrics.Counter
	rejectedBy   map[frame.Code]*metrics.Counter
	connErrorsBy map[frame.Code]*metrics.Counter
}

func newServerMetrics(prefix string) *serverMetrics {
	if prefix == "" {
		prefix = DefaultMetricsPrefix
	}
	p := prefix + "_"
	s := metrics.NewSet()
	m := &serverMetrics{
		set:          s,
		connections:  s.NewCounter(p + "connections_total"),
		bytes:        s.NewCounter(p + "received_bytes_total"),
		messages:     s.NewCounter(p + "messages_total"),
		acked:        s.NewCounter(p + "packets_acked_total"),
		busy:         s.NewCounter(p + "packets_busy_total"),
		acks:         s.NewCounter(p + "acks_sent_total"),
		tlsFailures:  s.NewCounter(p + "tls_handshake_failures_total"),
		rejectedBy:   map[frame.Code]*metrics.Counter{},
		connErrorsBy: map[frame.Code]*metrics.Counter{},
	}
	s.NewGauge(p+"connections_active", func() float64 { return float64(m.active.Load()) })
	for t := frame.TypeHello; t <= frame.MaxType; t++ {
		m.frames[t] = s.NewCounter(fmt.Sprintf(`%sframes_total{type=%q}`, p, t.String()))
	}
	for _, c := range frame.Codes() {
		if c.Fatal() {
			m.connErrorsBy[c] = s.NewCounter(fmt.Sprintf(`%sconnection_errors_total{code=%q}`, p, c.String()))
		} else {
			m.rejectedBy[c] = s.NewCounter(fmt.Sprintf(`%spackets_rejected_total{code=%q}`, p, c.String()))
		}
	}
	return m
}

// MetricFamilies documents the server's metrics under prefix ("" for
// DefaultMetricsPrefix), for promexp.
func MetricFamilies(prefix string) []promexp.Family {
	if prefix == "" {
		prefix = DefaultMetricsPrefix
	}
	p := prefix + "_"
	return []promexp.Family{
		{Name: p + "connections_total", Type: "counter", Help: "Client connections accepted."},
		{Name: p + "connections_active", Type: "gauge", Help: "Client connections open now."},
		{Name: p + "frames_total", Type: "counter", Help: "Frames received, by frame type (label type)."},
		{Name: p + "received_bytes_total", Type: "counter", Help: "Bytes of frames received as sent on the wire (header and payload, compressed or not)."},
		{Name: p + "messages_total", Type: "counter", Help: "Log messages in the packets the handler accepted."},
		{Name: p + "packets_acked_total", Type: "counter", Help: "Packets acknowledged (ACK or SACK) to their senders."},
		{Name: p + "packets_busy_total", Type: "counter", Help: "Packets answered BUSY (the handler asked the sender to retry later)."},
		{Name: p + "acks_sent_total", Type: "counter", Help: "ACK frames written (one may acknowledge many packets)."},
		{Name: p + "tls_handshake_failures_total", Type: "counter", Help: "Connections closed because their TLS handshake failed."},
		{Name: p + "packets_rejected_total", Type: "counter", Help: "Packets refused for good (ERROR with the packet's sequence), by error code (label code)."},
		{Name: p + "connection_errors_total", Type: "counter", Help: "Connections closed with a connection ERROR, by error code (label code)."},
	}
}

// rejected counts a packet answered with ERROR seq=N.
func (m *serverMetrics) rejected(code frame.Code) {
	if c := m.rejectedBy[code]; c != nil {
		c.Inc()
	}
}

// connError counts a connection closed with ERROR seq=0.
func (m *serverMetrics) connError(code frame.Code) {
	if c := m.connErrorsBy[code]; c != nil {
		c.Inc()
	}
}
