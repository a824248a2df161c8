package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tlsconf/tlstest"
)

// tlsCluster is analyzerd serving mTLS, and logdist taking agents over
// mTLS only (no plaintext port) and reaching the analyzer over mTLS, every
// certificate from one test CA.
type tlsCluster struct {
	ca                  *tlstest.CA
	logdistPair         tlstest.Pair
	analyzer, logdist   *proc
	out                 string
	tlsAddr, admin      string
	syslogTLS           string
	agentCert, agentKey string
}

func newTLSCluster(t *testing.T) *tlsCluster {
	ca := tlstest.NewCA(t, "ca")
	c := &tlsCluster{ca: ca}
	an := ca.Issue(t, tlstest.Leaf{Name: "analyzer", DNS: []string{"analyzer.internal"}})
	c.logdistPair = ca.Issue(t, tlstest.Localhost("logdist"))
	up := ca.Issue(t, tlstest.Leaf{Name: "logdist-upstream", URI: "spiffe://logs/logdist"})
	ag := ca.Issue(t, tlstest.Leaf{Name: "agent", URI: "spiffe://logs/web-1"})
	c.agentCert, c.agentKey = ag.Cert, ag.Key
	c.out = filepath.Join(t.TempDir(), "a1.jsonl")
	c.analyzer = start(t, binary(t, "analyzerd"), "--name", "a1", "--listen", "127.0.0.1:0", "--admin", "", "--out", c.out,
		"--log-level", "warn", "--tls-cert", an.Cert, "--tls-key", an.Key, "--tls-client-ca", ca.File)
	c.logdist = start(t, binary(t, "logdist"), "--listen", "", "--tls-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--syslog-udp", "",
		"--syslog-tls", "127.0.0.1:0", "--syslog-linger", "20ms",
		"--tls-cert", c.logdistPair.Cert, "--tls-key", c.logdistPair.Key, "--tls-client-ca", ca.File,
		"--upstream-tls-ca", ca.File, "--upstream-tls-cert", up.Cert, "--upstream-tls-key", up.Key,
		"--analyzer", fmt.Sprintf("name=a1,addr=%s,tls=true,server-name=analyzer.internal", c.analyzer.fields["listen"]),
		"--heartbeat-interval", "100ms", "--log-level", "info")
	c.tlsAddr, c.admin, c.syslogTLS = c.logdist.fields["tls"], c.logdist.fields["admin"], c.logdist.fields["syslog_tls"]
	if c.logdist.fields["listen"] != "" {
		t.Fatalf("logdist with --listen \"\" reports a plaintext address %q", c.logdist.fields["listen"])
	}
	waitFor(t, "a1 healthy over mTLS", 10*time.Second, func() bool {
		var rows []analyzerRow
		getJSON(t, "http://"+c.admin+"/api/v1/analyzers", &rows)
		return len(rows) == 1 && rows[0].Healthy
	})
	return c
}

// Every hop encrypted: logsend → logdist → analyzerd, each with mTLS; the
// message arrives whole.
func TestTLSEveryHop(t *testing.T) {
	c := newTLSCluster(t)
	send := exec.Command(binary(t, "logsend"), "--target", c.tlsAddr, "--tls-ca", c.ca.File, "--tls-cert", c.agentCert, "--tls-key", c.agentKey,
		"--tls-server-name", "localhost", "--agent-id", "web-1", "--timeout", "20s")
	send.Stdin = strings.NewReader("hello over every hop\n")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("logsend over mTLS: %v\n%s", err, out)
	}
	waitFor(t, "the line at the analyzer", 10*time.Second, func() bool {
		b, _ := os.ReadFile(c.out)
		return strings.Contains(string(b), "hello over every hop")
	})

	// Mistakes, each a clear error: no client certificate, a plaintext
	// client on the TLS port, a wrong server name.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"--tls-ca", c.ca.File, "--tls-server-name", "localhost"}, "certificate"},
		{"plaintext on the TLS port", nil, "this port speaks TLS"},
		{"wrong server name", []string{"--tls-ca", c.ca.File, "--tls-cert", c.agentCert, "--tls-key", c.agentKey, "--tls-server-name", "other.example"}, "other.example"},
	} {
		cmd := exec.Command(binary(t, "logsend"), append([]string{"--target", c.tlsAddr, "--timeout", "2s"}, tc.args...)...)
		cmd.Stdin = strings.NewReader("refused\n")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: logsend %v, output %q; want a failure saying %q", tc.name, err, out, tc.want)
		}
	}
}

// Replacing logdist's certificate under traffic: new connections get the
// new one (files watched, and SIGHUP), the open ones go on, and no
// acknowledged packet is lost.
func TestTLSCertificateReloadUnderTraffic(t *testing.T) {
	c := newTLSCluster(t)
	ccfg, err := tlsconf.NewClient(tlsconf.Files{CA: c.ca.File, Cert: c.agentCert, Key: c.agentKey, ServerName: "localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTLSAgent(t, c.tlsAddr, ccfg.Get())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.send(t, 10, fmt.Sprintf("reload %d", i))
			time.Sleep(time.Millisecond)
		}
	}()
	serial := func() string {
		nc, err := tls.Dial("tcp", c.tlsAddr, ccfg.Get())
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer nc.Close()
		return nc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != c.logdistPair.Serial.String() {
		t.Fatalf("serial %s, want the first certificate's %s", got, c.logdistPair.Serial)
	}
	next := c.ca.Issue(t, tlstest.Localhost("logdist")) // same files, new certificate
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "new connections get the new certificate", 15*time.Second, func() bool { return serial() == next.Serial.String() })
	n0 := len(a.ackedIDs())
	waitFor(t, "traffic going on after the switch", 15*time.Second, func() bool { return len(a.ackedIDs()) >= n0+200 })
	close(stop)
	<-done
	a.flush(t)
	if n := len(a.ackedIDs()); n < 100 {
		t.Fatalf("only %d packets acknowledged", n)
	}
	got := map[uint64]int{}
	b, _ := os.ReadFile(c.out)
	for _, line := range strings.Split(string(b), "\n") {
		var id uint64
		if i := strings.Index(line, `"packet_id":`); i >= 0 {
			fmt.Sscanf(line[i+len(`"packet_id":`):], "%d", &id)
			got[id]++
		}
	}
	for _, id := range a.ackedIDs() {
		if got[id] == 0 {
			t.Fatalf("packet %d acknowledged but not at the analyzer", id)
		}
	}
	if !strings.Contains(c.logdist.logs(), "TLS files changed: reloaded") {
		t.Fatalf("no reload in the log:\n%s", c.logdist.logs())
	}
}

// TLS below 1.2 is refused, as Debian's openssl sees it.
func TestTLSOldVersionsRefused(t *testing.T) {
	openssl := testtool.Need(t, "openssl", "openssl")
	c := newTLSCluster(t)
	probe := func(flags ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", c.tlsAddr, "-CAfile", c.ca.File,
			"-cert", c.agentCert, "-key", c.agentKey, "-servername", "localhost"}, flags...)...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := probe("-tls1_2")
	if err != nil || !strings.Contains(out, "Protocol  : TLSv1.2") && !strings.Contains(out, "TLSv1.2") {
		t.Fatalf("openssl s_client -tls1_2: %v\n%s", err, out)
	}
	// SECLEVEL=0 lets openssl's client offer the old versions at all, so
	// that the refusal seen is the server's (alert 70, protocol version).
	for _, old := range []string{"-tls1_1", "-tls1"} {
		out, err := probe(old, "-cipher", "DEFAULT@SECLEVEL=0")
		if err == nil || !strings.Contains(out, "alert protocol version") {
			t.Errorf("openssl s_client %s: %v; want logdist's protocol version alert:\n%s", old, err, out)
		}
	}
}

// Syslog over TLS (RFC 5425): octet-counted messages sent through Debian's
// openssl as the TLS client arrive at the analyzer.
func TestSyslogOverTLS(t *testing.T) {
	openssl := testtool.Need(t, "openssl", "openssl")
	c := newTLSCluster(t)
	var b strings.Builder
	for i := range 50 {
		m := fmt.Sprintf("<30>1 2026-12-06T10:00:00Z web-1 tlsapp 1 - - syslog over tls %d", i)
		fmt.Fprintf(&b, "%d %s", len(m), m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-quiet", "-no_ign_eof", "-connect", c.syslogTLS, "-CAfile", c.ca.File,
		"-cert", c.agentCert, "-key", c.agentKey, "-servername", "localhost")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	waitFor(t, "every syslog-over-TLS message at the analyzer", 15*time.Second, func() bool {
		data, _ := os.ReadFile(c.out)
		return strings.Count(string(data), "syslog over tls ") == 50
	})
}

// newTLSAgent is newAgent over TLS.
func newTLSAgent(t *testing.T, addr string, cfg *tls.Config) *agent {
	a := newAgentWith(t, addr, "tls-agent", func(c *clientConfig) { c.TLS = cfg })
	return a
}
