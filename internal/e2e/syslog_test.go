package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A real syslog client no one here wrote — util-linux logger — sends to a
// running logdist with four analyzerd: every message arrives exactly once,
// with the right facility, severity, host, app and body, and the packets
// are spread in the configured shares.
func TestSyslogFromLogger(t *testing.T) {
	loggerBin, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("util-linux logger is not installed (Debian package bsdutils); skipping the real-client syslog test")
	}
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	c := newCluster(t, weights, "--syslog-batch-messages", "5", "--syslog-linger", "200ms")
	addr := c.logdist.fields["syslog"]
	if addr == "" {
		t.Fatalf("logdist did not report a syslog address\n%s", c.logdist.logs())
	}
	host, port, _ := strings.Cut(addr, ":")
	hostname, _ := os.Hostname()
	for _, rfc := range []string{"--rfc5424", "--rfc3164"} {
		t.Run(rfc[2:], func(t *testing.T) {
			before := map[string]uint64{}
			for _, r := range c.rows() {
				before[r.Name] = r.Packets
			}
			const n = 400
			var lines strings.Builder
			for i := 0; i < n; i++ {
				fmt.Fprintf(&lines, "%s message %d with a body\n", rfc, i)
			}
			cmd := exec.Command(loggerBin, "-n", host, "-P", port, "-d", rfc, "-t", "e2eapp", "-p", "local3.warning")
			cmd.Stdin = strings.NewReader(lines.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("logger: %v: %s", err, out)
			}
			got := map[string]int{}
			waitFor(t, fmt.Sprintf("%d syslog messages at the analyzers", n), 20*time.Second, func() bool {
				got = syslogLines(t, c, rfc)
				return len(got) >= n
			})
			for i := 0; i < n; i++ {
				body := fmt.Sprintf("%s message %d with a body", rfc, i)
				if got[body] != 1 {
					t.Fatalf("message %q arrived %d times", body, got[body])
				}
			}
			// Check the fields of one line in full.
			line := findLine(t, c, rfc+" message 7 with a body")
			if line.Facility != 19 || line.Severity != "warning" || line.App != "e2eapp" ||
				!strings.HasPrefix(line.Agent, "syslog/127.0.0.1") || (line.Host != hostname && !strings.HasPrefix(hostname, line.Host)) {
				t.Fatalf("%s line: %+v (host %q)", rfc, line, hostname)
			}
			if ts, err := time.Parse(time.RFC3339Nano, line.TS); err != nil || time.Since(ts) > time.Hour || time.Until(ts) > time.Hour {
				t.Fatalf("timestamp %q: %v", line.TS, err)
			}
			var total float64
			delta := map[string]float64{}
			for _, r := range c.rows() {
				delta[r.Name] = float64(r.Packets - before[r.Name])
				total += delta[r.Name]
			}
			for i, r := range c.rows() {
				// Two syslog loops, each exact to one packet per analyzer.
				if d := math.Abs(delta[r.Name] - weights[i]*total); d > 2.0 {
					t.Errorf("%s got %.0f of %.0f syslog packets, want %.1f±2", r.Name, delta[r.Name], total, weights[i]*total)
				}
			}
		})
	}
}

type jsonLine struct {
	Agent    string `json:"agent"`
	TS       string `json:"ts"`
	Severity string `json:"severity"`
	Facility int    `json:"facility"`
	Host     string `json:"host"`
	App      string `json:"app"`
	Msg      string `json:"msg"`
}

// syslogLines counts the analyzers' messages whose body starts with prefix.
func syslogLines(t *testing.T, c *cluster, prefix string) map[string]int {
	got := map[string]int{}
	for _, a := range c.analyzers {
		f, err := os.Open(a.out)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l jsonLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && strings.HasPrefix(l.Msg, prefix) {
				got[l.Msg]++
			}
		}
		f.Close()
	}
	return got
}

func findLine(t *testing.T, c *cluster, body string) jsonLine {
	for _, a := range c.analyzers {
		b, _ := os.ReadFile(a.out)
		for _, raw := range strings.Split(string(b), "\n") {
			var l jsonLine
			if json.Unmarshal([]byte(raw), &l) == nil && l.Msg == body {
				return l
			}
		}
	}
	t.Fatalf("no analyzer has %q", body)
	return jsonLine{}
}
