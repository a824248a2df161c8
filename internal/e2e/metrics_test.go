package e2e

import (
	"bytes"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
)

// Both /metrics endpoints, scraped before and under traffic, pass
// Prometheus' own linter (promtool check metrics) with no complaint, and
// the series operators alert on exist from the start, before any traffic.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := testtool.Need(t, "promtool", "prometheus")
	c := newCluster(t, []float64{0.4, 0.3, 0.2, 0.1})
	a1 := c.analyzers[0]

	check := func(what, text string) {
		t.Helper()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
		}
	}
	has := func(what, text string, series ...string) {
		t.Helper()
		for _, s := range series {
			if !strings.Contains(text, "\n"+s+" ") {
				t.Errorf("%s lacks %s", what, s)
			}
		}
	}

	// Before any traffic.
	ld, az := metricsText(t, c.admin), metricsText(t, a1.admin)
	check("logdist at start", ld)
	check("analyzerd at start", az)
	has("logdist at start", ld,
		`logdist_ingest_packets_total`, `logdist_agent_connections`, `logdist_queue_packets`, `logdist_queue_oldest_age_seconds`,
		`logdist_dropped_total{reason="syslog_queue_full"}`, `logdist_protocol_errors_total{code="malformed"}`,
		`logdist_agent_ack_latency_seconds_count`, `logdist_upstream_ack_latency_seconds_count{analyzer="a4"}`,
		`logdist_upstream_heartbeats_missed_total{analyzer="a2"}`, `logdist_analyzer_share_skew{analyzer="a1"}`,
		`logdist_analyzers_selectable`, `logdist_ready`, `logdist_queue_max_packets`,
		`logdist_dropped_total{reason="syslog_tcp_draining"}`)
	has("analyzerd at start", az, `analyzerd_packets_total`, `analyzerd_duplicates_total`,
		`analyzerd_server_packets_rejected_total{code="malformed"}`, `analyzerd_server_connections_active`)

	// Under traffic: agents' packets and syslog datagrams.
	ag := newAgent(t, c.listen, "metrics-agent")
	ag.send(t, 2000, "metrics test line")
	udp, err := net.Dial("udp", c.logdist.fields["syslog"])
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		_, _ = udp.Write([]byte("<13>Dec  6 12:00:00 web-1 app[1]: metrics test"))
	}
	udp.Close()
	ag.flush(t)
	waitFor(t, "syslog forwarded", 10*time.Second, func() bool {
		return sumMetric(metricsText(t, c.admin), "logdist_syslog_forwarded_messages_total") >= 50
	})
	ld, az = metricsText(t, c.admin), metricsText(t, a1.admin)
	check("logdist under traffic", ld)
	check("analyzerd under traffic", az)
	if n := sumMetric(ld, "logdist_agent_ack_latency_seconds_count"); n == 0 {
		t.Error("no agent ack latency sampled in 2,000 packets")
	}
	if !strings.Contains(ld, `logdist_upstream_ack_latency_seconds_bucket{analyzer="a1",le="0.01"}`) {
		t.Error("the upstream ack latency is not a Prometheus le histogram")
	}
	if rtt := sumMetric(ld, "logdist_upstream_heartbeat_rtt_seconds_sum"); rtt <= 0 {
		t.Errorf("heartbeat round trips sum to %v s: the clock cannot see them", rtt)
	}
	if n := sumMetric(az, "analyzerd_packets_total"); n == 0 {
		t.Error("analyzerd a1 counted no packets")
	}
}
