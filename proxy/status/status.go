// Package status is what a running logdist says about itself: the types
// its admin API serves as JSON (GET /api/v1/analyzers, GET /api/v1/status)
// and that tools decode. It has no dependencies, so a tool that reads the
// API does not link the distributor.
package status

import "time"

// Status is a point-in-time view of one distributor.
type Status struct {
	// Time is when the status was taken: rates over two readings divide
	// by the difference of their Times.
	Time time.Time `json:"time"`
	// ConfigVersion counts the run-time configurations applied since start
	// (1 is the one it started with).
	ConfigVersion uint64 `json:"config_version"`
	// Draining is set once a graceful shutdown has begun.
	Draining bool `json:"draining"`
	// Ready tells whether at least one analyzer can take a packet now.
	Ready bool `json:"ready"`
	// AgentConnections is the number of agent connections open.
	AgentConnections int `json:"agent_connections"`
	// Queue is the packets waiting because no analyzer could take them.
	Queue Queue `json:"queue"`
	// Totals count since start, for rates.
	Totals Totals `json:"totals"`
	// Started is when the server started; Build which build it is.
	Started time.Time `json:"started"`
	Build   string    `json:"build"`
	// Analyzers are the analyzers in the set, by name.
	Analyzers []Analyzer `json:"analyzers"`
}

// Totals are counters since start: over two readings, their differences
// over the time between are rates.
type Totals struct {
	// AgentPackets is the DATA frames agents sent that were admitted;
	// Forwarded the packets analyzers acknowledged (agents' and syslog's).
	AgentPackets uint64 `json:"agent_packets"`
	Forwarded    uint64 `json:"forwarded"`
	// SyslogMessages were received (UDP and TCP) and batched,
	// SyslogForwarded acknowledged by an analyzer; SyslogDropped packets
	// of them were dropped (queue full, shutdown).
	SyslogMessages  uint64 `json:"syslog_messages"`
	SyslogForwarded uint64 `json:"syslog_forwarded"`
	SyslogDropped   uint64 `json:"syslog_dropped_packets"`
}

// Queue describes the packets waiting for an analyzer.
type Queue struct {
	// Packets and Bytes (wire size of the frames) waiting now.
	Packets int   `json:"packets"`
	Bytes   int64 `json:"bytes"`
	// OldestAgeSeconds is how long the oldest has waited (0: none waits).
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Analyzer is one analyzer as the admin API shows it. Request bodies that
// change an analyzer use the same field names.
type Analyzer struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Weight is the configured weight; EffectiveWeight what the picker
	// uses now (reduced during slow start, 0 when not selectable).
	Weight          float64 `json:"weight"`
	EffectiveWeight float64 `json:"effective_weight"`
	// State is the administrative state: enabled, drained, forced-down or
	// forced-up.
	State string `json:"state"`
	// Health is up or down; Breaker closed, open or half-open.
	Health  string `json:"health"`
	Breaker string `json:"breaker"`
	// Healthy is Health == "up".
	Healthy bool `json:"healthy"`
	// Selectable tells whether the picker may choose it now.
	Selectable bool `json:"selectable"`
	// Connections is how many event loops have a ready connection to it.
	Connections int `json:"connections"`
	// Packets, Messages and Bytes were dispatched to it since it was
	// added; Bytes is the frames' size on the wire (compressed as sent).
	Packets  uint64 `json:"packets"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	// InFlight is the packets sent to it and not yet answered.
	InFlight int `json:"in_flight"`
	// Share is its fraction of all packets dispatched so far.
	Share float64 `json:"share"`
	// LastError is the last connection error (refused, timeout, DNS,
	// heartbeats missed...), with when it happened; empty if none since
	// its last successful connection.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// HealthSince is when Health last changed.
	HealthSince time.Time `json:"health_since"`
	// Ramp is the weight ramp under way (the weight in force moves from
	// Ramp.From to Weight until Ramp.Ends); absent when none.
	Ramp *Ramp `json:"ramp,omitempty"`
	// AckLatencySamples packets (a sample of those sent) were answered
	// AckLatencySecondsSum seconds after they were sent, in total: over two
	// readings, the difference of the sums over the difference of the
	// counts is the mean ack latency between them.
	AckLatencySamples    uint64  `json:"ack_latency_samples"`
	AckLatencySecondsSum float64 `json:"ack_latency_seconds_sum"`
	// TLS tells whether its connections go through the upstream transport.
	TLS bool `json:"tls,omitempty"`
}

// Ramp is a weight ramp under way.
type Ramp struct {
	From  float64   `json:"from"`
	Start time.Time `json:"start"`
	Ends  time.Time `json:"ends"`
}
