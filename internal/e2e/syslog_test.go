package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
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

// A real rsyslogd forwards what it receives to logdist with omfwd over UDP
// (its traditional forwarding format): every message arrives once, with
// its facility, severity and app. rsyslog is installed when missing (as
// root on Debian; .ci/run does it first), else the test is skipped.
func TestSyslogFromRsyslog(t *testing.T) {
	rsyslogd := testtool.Need(t, "rsyslogd", "rsyslog")
	loggerBin := testtool.Need(t, "logger", "bsdutils")
	c := newCluster(t, []float64{1, 1}, "--syslog-batch-messages", "10", "--syslog-linger", "100ms")
	_, outPort, _ := strings.Cut(c.logdist.fields["syslog"], ":")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "rsyslog.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q)
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="%d")
*.* action(type="omfwd" target="127.0.0.1" port="%s" protocol="udp")
`, dir, inPort, outPort)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	const n = 200
	sent := 0
	send := func(i int) {
		out, err := exec.Command(loggerBin, "-n", "127.0.0.1", "-P", strconv.Itoa(inPort), "-d", "--rfc3164",
			"-t", "viarsyslog", "-p", "local5.err", fmt.Sprintf("through rsyslog %d", i)).CombinedOutput()
		if err != nil {
			t.Fatalf("logger: %v %s", err, out)
		}
	}
	// rsyslogd needs a moment to bind: resend the first message until it
	// comes through, then send the rest.
	waitFor(t, "the first message through rsyslogd", 20*time.Second, func() bool {
		send(0)
		return len(syslogLines(t, c, "through rsyslog 0")) > 0
	})
	for sent = 1; sent < n; sent++ {
		send(sent)
	}
	waitFor(t, "every message through rsyslogd", 20*time.Second, func() bool {
		return len(syslogLines(t, c, "through rsyslog")) >= n
	})
	got := syslogLines(t, c, "through rsyslog")
	for i := 1; i < n; i++ {
		if k := fmt.Sprintf("through rsyslog %d", i); got[k] != 1 {
			t.Fatalf("%q arrived %d times (rsyslogd stderr: %s)", k, got[k], stderr.String())
		}
	}
	l := findLine(t, c, "through rsyslog 7")
	if l.Facility != 21 || l.Severity != "err" || l.App != "viarsyslog" {
		t.Fatalf("line through rsyslog: %+v", l)
	}
}

// util-linux logger over TCP with RFC 6587 octet counting, to --syslog-tcp.
func TestSyslogTCPFromLogger(t *testing.T) {
	loggerBin, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("util-linux logger is not installed (Debian package bsdutils); skipping")
	}
	c := newCluster(t, []float64{1, 1}, "--syslog-tcp", "127.0.0.1:0", "--syslog-batch-messages", "10", "--syslog-linger", "50ms")
	host, port, _ := strings.Cut(c.logdist.fields["syslog_tcp"], ":")
	const n = 300
	var lines strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&lines, "tcp octet-counted %d\n", i)
	}
	cmd := exec.Command(loggerBin, "-n", host, "-P", port, "-T", "--octet-count", "--rfc5424", "-t", "tcpapp", "-p", "daemon.info")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger: %v: %s", err, out)
	}
	waitFor(t, "every TCP syslog message", 20*time.Second, func() bool {
		return len(syslogLines(t, c, "tcp octet-counted")) >= n
	})
	got := syslogLines(t, c, "tcp octet-counted")
	for i := 0; i < n; i++ {
		if k := fmt.Sprintf("tcp octet-counted %d", i); got[k] != 1 {
			t.Fatalf("%q arrived %d times", k, got[k])
		}
	}
	if l := findLine(t, c, "tcp octet-counted 3"); l.Facility != 3 || l.Severity != "info" || l.App != "tcpapp" {
		t.Fatalf("line: %+v", l)
	}
}
