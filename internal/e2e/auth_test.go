package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// authHash runs "logdist auth hash" on token, as an operator would.
func authHash(t *testing.T, token string) string {
	t.Helper()
	cmd := exec.Command(binary(t, "logdist"), "auth", "hash")
	cmd.Stdin = strings.NewReader(token + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("logdist auth hash: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Agent tokens end to end: logsend with its token is accepted; a wrong
// token, no token and an agent id the identity may not use are each
// refused with ERROR auth that logsend reports, counted by reason and
// written to the audit log; a token added to the file works after SIGHUP.
func TestAgentTokens(t *testing.T) {
	dir := t.TempDir()
	authFile, audit := filepath.Join(dir, "auth.yaml"), filepath.Join(dir, "audit.jsonl")
	web := authHash(t, "web-token-0123456789abcdef")
	write := func(extra string) {
		text := "agents:\n  - identity: web-fleet\n    token-sha256: " + web + "\n    agent-ids: [\"web-*\"]\n" + extra
		if err := os.WriteFile(authFile, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	c := newCluster(t, []float64{1}, "--auth-file", authFile, "--audit-log", audit)
	logsend := func(agentID, token string, want bool) string {
		t.Helper()
		args := []string{"--target", c.listen, "--agent-id", agentID, "--timeout", "10s"}
		if token != "" {
			args = append(args, "--token", token)
		}
		cmd := exec.Command(binary(t, "logsend"), args...)
		cmd.Stdin = strings.NewReader("line from " + agentID + "\n")
		out, err := cmd.CombinedOutput()
		if (err == nil) != want {
			t.Fatalf("logsend --agent-id %s: err %v (want success %v)\n%s", agentID, err, want, out)
		}
		return string(out)
	}
	logsend("web-1", "web-token-0123456789abcdef", true)
	for _, tc := range []struct{ agent, token, says string }{
		{"web-2", "wrong-token-0123456789", "unknown token"},
		{"web-3", "", "requires a token"},
		{"db-1", "web-token-0123456789abcdef", `may not use agent id "db-1"`},
	} {
		if out := logsend(tc.agent, tc.token, false); !strings.Contains(out, "auth") || !strings.Contains(out, tc.says) {
			t.Errorf("logsend as %s: output does not name the refusal (%q):\n%s", tc.agent, tc.says, out)
		}
	}
	m := metricsText(t, c.admin)
	for _, want := range []string{
		`logdist_auth_refusals_total{reason="unknown"} 1`,
		`logdist_auth_refusals_total{reason="missing"} 1`,
		`logdist_auth_refusals_total{reason="agent_id"} 1`,
		`logdist_auth_accepted_total{method="token"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	waitFor(t, "three refusals in the audit log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(audit)
		return strings.Count(string(b), `"agent handshake as`) == 3
	})
	b, _ := os.ReadFile(audit)
	if strings.Contains(string(b), "wrong-token") || strings.Contains(string(b), "web-token") {
		t.Fatal("a token was written to the audit log")
	}

	// A new identity after SIGHUP.
	write("  - identity: db-fleet\n    token-sha256: " + authHash(t, "db-token-0123456789abcdef") + "\n")
	logsend("db-1", "db-token-0123456789abcdef", false)
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "auth file reloaded", 10*time.Second, func() bool {
		return strings.Contains(metricsText(t, c.admin), `logdist_auth_identities 2`)
	})
	logsend("db-1", "db-token-0123456789abcdef", true)
	waitFor(t, "both accepted lines at the analyzer", 10*time.Second, func() bool {
		b, _ := os.ReadFile(c.analyzers[0].out)
		return strings.Contains(string(b), "line from web-1") && strings.Contains(string(b), "line from db-1")
	})
	if b, _ := os.ReadFile(c.analyzers[0].out); strings.Contains(string(b), "line from web-2") || strings.Contains(string(b), "line from web-3") {
		t.Fatal("a refused agent's line reached the analyzer")
	}

	// Revocation: an agent connected with web-fleet's token, web-fleet
	// removed from the file, SIGHUP: the agent is told to go (GOAWAY, what
	// it sent is still answered) and its reconnection is refused.
	live := newAgentWith(t, c.listen, "web-9", func(cfg *clientConfig) { cfg.Token = "web-token-0123456789abcdef" })
	live.send(t, 10, "before revocation")
	live.flush(t)
	if err := os.WriteFile(authFile, []byte("agents:\n  - identity: db-fleet\n    token-sha256: "+authHash(t, "db-token-0123456789abcdef")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "the revoked agent refused", 10*time.Second, func() bool {
		err := live.Stats().LastError
		return err != nil && strings.Contains(err.Error(), "unknown token")
	})
	if m := metricsText(t, c.admin); sumMetric(m, "logdist_agent_revoked_total") != 1 {
		t.Errorf("logdist_agent_revoked_total = %v, want 1", sumMetric(m, "logdist_agent_revoked_total"))
	}
	c.checkNoLoss(live)
}

// --redact end to end: what logsend sends and a syslog datagram carry
// reaches the analyzer redacted, by a built-in and by a rule; a SIGHUP
// picks up a changed rules file.
func TestRedaction(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "redact.yaml")
	write := func(s string) {
		if err := os.WriteFile(rules, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("builtins: [email, credit-card]\nrules:\n  - name: password\n    pattern: 'password=\\S+'\n    replace: 'password=***'\n")
	c := newCluster(t, []float64{1}, "--redact", rules, "--syslog-linger", "20ms")
	send := exec.Command(binary(t, "logsend"), "--target", c.listen, "--agent-id", "web-1", "--timeout", "10s")
	send.Stdin = strings.NewReader("agent line: mail jane@example.com paid 4111 1111 1111 1111 password=hunter2\n")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("logsend: %v\n%s", err, out)
	}
	conn, err := net.Dial("udp", c.logdist.fields["syslog"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("<13>Dec  6 10:00:00 host app: syslog line: mail bob@example.org password=s3cret")); err != nil {
		t.Fatal(err)
	}
	read := func() string { b, _ := os.ReadFile(c.analyzers[0].out); return string(b) }
	waitFor(t, "both lines at the analyzer", 10*time.Second, func() bool {
		return strings.Contains(read(), "agent line") && strings.Contains(read(), "syslog line")
	})
	out := read()
	for _, secret := range []string{"jane@example.com", "bob@example.org", "4111 1111", "hunter2", "s3cret"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q reached the analyzer:\n%s", secret, out)
		}
	}
	for _, want := range []string{"mail [REDACTED:email] paid [REDACTED:credit-card] password=***", "mail [REDACTED:email] password=***"} {
		if !strings.Contains(out, want) {
			t.Errorf("analyzer lacks %q:\n%s", want, out)
		}
	}
	if m := metricsText(t, c.admin); !strings.Contains(m, `logdist_redactions_total{rule="email"} 2`) || !strings.Contains(m, `logdist_redactions_total{rule="password"} 2`) {
		t.Errorf("redaction counters:\n%s", grepLines(m, "redact"))
	}

	write("builtins: [ipv4]\n")
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "the new rules in force", 10*time.Second, func() bool {
		if _, err := conn.Write([]byte("<13>Dec  6 10:00:01 host app: after reload from 10.9.8.7")); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(read(), "after reload from [REDACTED:ipv4]")
	})
}
