package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
)

// serverMetrics are the server's counters, registered on a Set the server
// owns so that several servers can live in one process. Labels are frame
// types and error codes: bounded sets, never agent-supplied strings.
type serverMetrics struct {
	set *metrics.Set

	active      atomic.Int64
	connections *metrics.Counter // logdist_server_connections_total
	frames      [frame.MaxType + 1]*metrics.Counter
	bytes       *metrics.Counter // logdist_server_received_bytes_total: header + payload of every frame read
	messages    *metrics.Counter // logdist_server_messages_total: messages in accepted packets
	acked       *metrics.Counter // logdist_server_packets_acked_total
	busy        *metrics.Counter // logdist_server_packets_busy_total
	acks        *metrics.Counter // logdist_server_acks_sent_total: ACK frames written (one per batch)
	tlsFailures *metrics.Counter // logdist_server_tls_handshake_failures_total
}

func newServerMetrics() *serverMetrics {
	s := metrics.NewSet()
	m := &serverMetrics{
		set:         s,
		connections: s.NewCounter("logdist_server_connections_total"),
		bytes:       s.NewCounter("logdist_server_received_bytes_total"),
		messages:    s.NewCounter("logdist_server_messages_total"),
		acked:       s.NewCounter("logdist_server_packets_acked_total"),
		busy:        s.NewCounter("logdist_server_packets_busy_total"),
		acks:        s.NewCounter("logdist_server_acks_sent_total"),
		tlsFailures: s.NewCounter("logdist_server_tls_handshake_failures_total"),
	}
	s.NewGauge("logdist_server_connections_active", func() float64 { return float64(m.active.Load()) })
	for t := frame.TypeHello; t <= frame.MaxType; t++ {
		m.frames[t] = s.NewCounter(fmt.Sprintf(`logdist_server_frames_total{type=%q}`, t.String()))
	}
	return m
}

// rejected counts a packet answered with ERROR seq=N.
func (m *serverMetrics) rejected(code frame.Code) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`logdist_server_packets_rejected_total{code=%q}`, code.String())).Inc()
}

// connError counts a connection closed with ERROR seq=0.
func (m *serverMetrics) connError(code frame.Code) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`logdist_server_connection_errors_total{code=%q}`, code.String())).Inc()
}

// throttle lets one log record through per interval and counts the ones it
// held back, so that a peer sending a stream of bad packets cannot flood
// the log.
type throttle struct {
	interval time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now, and how many records were suppressed
// since the last one that was allowed.
func (t *throttle) allow() (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Before(t.next) {
		t.suppressed++
		return false, 0
	}
	n := t.suppressed
	t.suppressed = 0
	t.next = now.Add(t.interval)
	return true, n
}
