package proxy

import "github.com/logdist/logdist/internal/promexp"

// MetricFamilies documents every metric family the proxy exports on its
// set (Server.Metrics): what docs/OBSERVABILITY.md lists and the HELP
// texts /metrics serves. "Wire bytes" are frames as they cross the
// network: header and payload, compressed when the sender compressed.
var MetricFamilies = []promexp.Family{
	// Agents.
	{Name: "logdist_ingest_packets_total", Type: "counter", Help: "DATA frames (packets) received from agents and accepted for forwarding."},
	{Name: "logdist_ingest_messages_total", Type: "counter", Help: "Log messages in the packets received from agents (the header's count)."},
	{Name: "logdist_ingest_wire_bytes_total", Type: "counter", Help: "Wire bytes of the DATA frames received from agents."},
	{Name: "logdist_agent_connections", Type: "gauge", Help: "Agent connections open now (plaintext and TLS)."},
	{Name: "logdist_agent_handshakes_total", Type: "counter", Help: "Agent handshakes completed (HELLO answered with WELCOME)."},
	{Name: "logdist_agent_acked_packets_total", Type: "counter", Help: "Agents' packets acknowledged to them (each after its analyzer acknowledged it)."},
	{Name: "logdist_agent_busy_total", Type: "counter", Help: "Agents' packets answered BUSY (retry later): the waiting queue was full or no analyzer could take them."},
	{Name: "logdist_agent_rate_limited_total", Type: "counter", Help: "Agents' packets answered BUSY because the agent's identity was over its rate limit."},
	{Name: "logdist_agent_rejected_packets_total", Type: "counter", Help: "Agents' packets refused for good (ERROR with the packet's sequence): malformed, too large, or rejected by an analyzer."},
	{Name: "logdist_agent_aged_out_total", Type: "counter", Help: "Agent connections sent GOAWAY because they were older than --max-conn-age (their agents reconnect, to any instance)."},
	{Name: "logdist_agent_revoked_total", Type: "counter", Help: "Agent connections sent GOAWAY because a reload revoked their credentials."},
	{Name: "logdist_agent_ack_latency_seconds", Type: "histogram", Help: "Time from receiving an agent's packet to acknowledging it, for one packet in 32 chosen at random."},
	{Name: "logdist_protocol_errors_total", Type: "counter", Help: "Agents' protocol errors answered with ERROR, by error code (label code; connection codes close the connection)."},
	{Name: "logdist_partial_frame_bytes", Type: "gauge", Help: "Bytes held in frames agents have begun but not finished sending (bounded by --max-partial-bytes)."},
	{Name: "logdist_transport_handshake_failures_total", Type: "counter", Help: "Agent connections closed because their TLS handshake failed."},
	{Name: "logdist_allow_refused_total", Type: "counter", Help: "Peers refused by --allow, by listener (label listener)."},
	{Name: "logdist_redacted_packets_total", Type: "counter", Help: "Agents' packets encoded again because redaction changed them."},
	{Name: "logdist_redacted_replacements_total", Type: "counter", Help: "Replacements redaction made, over every rule (per rule: logdist_redactions_total)."},

	// Dispatch, the waiting queue and drops.
	{Name: "logdist_forwarded_packets_total", Type: "counter", Help: "Packets (agents' and syslog batches) acknowledged by an analyzer."},
	{Name: "logdist_redispatched_packets_total", Type: "counter", Help: "Packets sent to another analyzer after theirs failed, said BUSY or timed out (each may arrive twice; analyzers drop duplicates by packet id)."},
	{Name: "logdist_hedged_packets_total", Type: "counter", Help: "Packets copied from a late analyzer (silent for --late-after) to another."},
	{Name: "logdist_spilled_packets_total", Type: "counter", Help: "Packets sent to another selectable analyzer because the one picked had no room in its window."},
	{Name: "logdist_queue_full_total", Type: "counter", Help: "Packets that found the waiting queue full (--queue-max-packets or --queue-max-bytes)."},
	{Name: "logdist_queue_packets", Type: "gauge", Help: "Packets waiting for an analyzer to take them, over every loop."},
	{Name: "logdist_queue_bytes", Type: "gauge", Help: "Wire bytes of the packets waiting for an analyzer."},
	{Name: "logdist_queue_max_packets", Type: "gauge", Help: "The waiting queue's bound in packets (--queue-max-packets)."},
	{Name: "logdist_queue_max_bytes", Type: "gauge", Help: "The waiting queue's bound in wire bytes (--queue-max-bytes)."},
	{Name: "logdist_queue_oldest_age_seconds", Type: "gauge", Help: "How long the oldest waiting packet has waited (0 when none waits)."},
	{Name: "logdist_dropped_total", Type: "counter", Help: "What logdist let go of, by reason: agent_gone (packets of an agent whose connection closed before they were forwarded; never acknowledged, so it sends them again), syslog_queue_full (syslog batches with no room in the waiting queue: lost), syslog_draining (syslog datagrams received while draining: lost), syslog_tcp_draining (syslog TCP messages read but not forwarded because logdist was stopping: lost)."},
	{Name: "logdist_event_loops", Type: "gauge", Help: "Event loops that have set up (agents' and syslog's)."},

	// Analyzers: per analyzer (label analyzer).
	{Name: "logdist_analyzers", Type: "gauge", Help: "Analyzers configured."},
	{Name: "logdist_analyzers_selectable", Type: "gauge", Help: "Analyzers the balancer may pick now (up, not drained, weight above 0)."},
	{Name: "logdist_analyzer_packets_total", Type: "counter", Help: "Packets dispatched to the analyzer (picks, including re-dispatches)."},
	{Name: "logdist_analyzer_messages_total", Type: "counter", Help: "Log messages in the packets dispatched to the analyzer."},
	{Name: "logdist_analyzer_wire_bytes_total", Type: "counter", Help: "Wire bytes of the packets dispatched to the analyzer."},
	{Name: "logdist_analyzer_healthy", Type: "gauge", Help: "1 when the analyzer's heartbeats say it is up, else 0."},
	{Name: "logdist_analyzer_selectable", Type: "gauge", Help: "1 when the balancer may pick the analyzer now, else 0."},
	{Name: "logdist_analyzer_weight", Type: "gauge", Help: "The analyzer's configured weight."},
	{Name: "logdist_analyzer_effective_weight", Type: "gauge", Help: "The weight the balancer uses now (reduced during slow start and ramps; 0 when not selectable)."},
	{Name: "logdist_analyzer_share", Type: "gauge", Help: "The analyzer's share of every packet dispatched since it was added (0 to 1)."},
	{Name: "logdist_analyzer_window_share", Type: "gauge", Help: "The analyzer's share of the packets dispatched over about the last minute (sampled at scrape time; 0 when none was)."},
	{Name: "logdist_analyzer_share_skew", Type: "gauge", Help: "logdist_analyzer_window_share minus the share the analyzer's effective weight asks for: the distribution's error (0 is exact)."},
	{Name: "logdist_analyzer_connections", Type: "gauge", Help: "Connections to the analyzer ready to carry packets, over every loop."},
	{Name: "logdist_analyzer_in_flight_packets", Type: "gauge", Help: "Packets sent to the analyzer and not yet answered."},
	{Name: "logdist_upstream_ack_latency_seconds", Type: "histogram", Help: "Time from writing a packet to the analyzer to its ACK, for one packet in 32 chosen at random."},
	{Name: "logdist_upstream_heartbeat_rtt_seconds", Type: "histogram", Help: "Round trip of heartbeats (PING to PONG) to the analyzer."},
	{Name: "logdist_upstream_dial_failures_total", Type: "counter", Help: "Connections to the analyzer that could not be opened (dial, TLS or handshake failed)."},
	{Name: "logdist_upstream_connections_lost_total", Type: "counter", Help: "Ready connections to the analyzer that closed or failed (a clean GOAWAY included)."},
	{Name: "logdist_upstream_heartbeats_missed_total", Type: "counter", Help: "Heartbeats to the analyzer that got no answer, and no other frame, in --heartbeat-timeout."},
	{Name: "logdist_upstream_ack_timeouts_total", Type: "counter", Help: "Connections to the analyzer closed because a packet was not acknowledged in --ack-timeout."},
	{Name: "logdist_upstream_busy_total", Type: "counter", Help: "Packets the analyzer answered BUSY (sent elsewhere after its retry-after)."},
	{Name: "logdist_upstream_rejected_packets_total", Type: "counter", Help: "Packets the analyzer refused for good (the agent gets the analyzer's ERROR)."},

	// Syslog.
	{Name: "logdist_syslog_datagrams_total", Type: "counter", Help: "Syslog UDP datagrams received."},
	{Name: "logdist_syslog_datagram_bytes_total", Type: "counter", Help: "Bytes of the syslog UDP datagrams received."},
	{Name: "logdist_syslog_truncated_total", Type: "counter", Help: "Syslog UDP datagrams that filled the read buffer (maybe cut short)."},
	{Name: "logdist_syslog_empty_total", Type: "counter", Help: "Empty syslog UDP datagrams (ignored)."},
	{Name: "logdist_syslog_clipped_total", Type: "counter", Help: "Syslog messages whose fields were cut to the packet limits."},
	{Name: "logdist_syslog_messages_parsed_total", Type: "counter", Help: "Syslog messages received, by the format they parsed as (label format: rfc5424, rfc3164, or unparsed: kept whole as the body)."},
	{Name: "logdist_syslog_batches_total", Type: "counter", Help: "Packets logdist built from syslog messages."},
	{Name: "logdist_syslog_batched_messages_total", Type: "counter", Help: "Syslog messages put into packets."},
	{Name: "logdist_syslog_forwarded_messages_total", Type: "counter", Help: "Syslog messages an analyzer acknowledged."},
	{Name: "logdist_syslog_kernel_drops_total", Type: "counter", Help: "Syslog UDP datagrams the kernel dropped because the socket's receive buffer was full (SO_RXQ_OVFL)."},
	{Name: "logdist_syslog_tcp_connections", Type: "gauge", Help: "Syslog TCP connections open now, by transport (label transport: tcp or tls)."},
	{Name: "logdist_syslog_tcp_messages_total", Type: "counter", Help: "Syslog messages received over TCP, by transport."},
	{Name: "logdist_syslog_tcp_bytes_total", Type: "counter", Help: "Bytes received on syslog TCP connections, by transport."},
	{Name: "logdist_syslog_tcp_framing_errors_total", Type: "counter", Help: "Syslog TCP connections closed because their framing (RFC 6587) was broken, by transport."},
	{Name: "logdist_syslog_tcp_clipped_total", Type: "counter", Help: "Syslog TCP messages longer than the limit, cut short, by transport."},
	{Name: "logdist_syslog_tcp_paused_total", Type: "counter", Help: "Times a syslog TCP connection stopped being read because the waiting queue was full (backpressure), by transport."},
	{Name: "logdist_syslog_tcp_shutdown_dropped_total", Type: "counter", Help: "Syslog TCP messages read but not forwarded because logdist was stopping (lost), by transport."},
	{Name: "logdist_syslog_tls_handshake_failures_total", Type: "counter", Help: "Syslog TLS connections closed because their TLS handshake failed."},

	// The process.
	{Name: "logdist_config_version", Type: "gauge", Help: "The version of the configuration in force (each change makes one)."},
	{Name: "logdist_draining", Type: "gauge", Help: "1 while logdist drains for shutdown, else 0."},
	{Name: "logdist_ready", Type: "gauge", Help: "1 when an analyzer can take packets and logdist is not draining (what GET /readyz answers 200 for), else 0."},
	{Name: "logdist_build_info", Type: "gauge", Help: "Always 1; labels: the version, revision and Go version of the binary."},
}
