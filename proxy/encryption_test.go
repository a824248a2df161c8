package proxy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/internal/spool"
	"github.com/logdist/logdist/proxy"
)

// sendPlain sends agent's packets first..first+n-1 uncompressed (their
// text in clear on the wire), pipelined within window, and waits for the
// cumulative ACK of the last.
func sendPlain(t *testing.T, c *servertest.Client, agent string, first uint64, n, window int) {
	t.Helper()
	start, acked, sent := c.LastSeq(), c.LastSeq(), 0
	for acked < start+uint64(n) {
		for sent < n && c.LastSeq()-acked < uint64(window) {
			if _, err := c.Send(pkt(agent, first+uint64(sent)), false); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after %d sent, %d acked: %v", sent, acked-start, err)
		}
		if f.Type != frame.TypeAck {
			t.Fatalf("unexpected %s", f)
		}
		acked = f.Seq
	}
}

// segmentsHold reports whether any segment file under dir holds text.
func segmentsHold(t *testing.T, dir, text string) bool {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no segment in %s: %v", dir, err)
	}
	for _, name := range m {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(text)) {
			return true
		}
	}
	return false
}

// With --spool-key-file and --ack-mode spool, packets acknowledged while
// every analyzer is down are on disk sealed: their text is nowhere in
// the segments (without a key file it is); once the analyzer is up,
// every one is delivered. A key file others may read fails the start.
func TestEncryptedSpool(t *testing.T) {
	const n = 200
	msg := func(agent string, i int) string { return fmt.Sprintf("message %d of agent %s", i, agent) }

	// Without a key file, the packets are in clear in the spool.
	plainDir := t.TempDir()
	s := spoolProxy(t, plainDir, []string{freeAddr(t)}, func(c *proxy.Config) { c.AckMode = proxy.AckSpool })
	c, err := servertest.Dial(s.Addr().String(), "agent-plain")
	if err != nil {
		t.Fatal(err)
	}
	sendPlain(t, c, "agent-plain", 1, 10, 8)
	c.Close()
	if !segmentsHold(t, filepath.Join(plainDir, "spool"), msg("agent-plain", 7)) {
		t.Fatal("without a key file the message text is not in the spool: this test proves nothing")
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	keys := filepath.Join(t.TempDir(), "spool.keys")
	if err := os.WriteFile(keys, []byte("# logdist spool keys\n"+spool.KeyLine(3)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	s = spoolProxy(t, dir, []string{addr}, func(c *proxy.Config) {
		c.AckMode = proxy.AckSpool
		c.Spool.KeyFile = keys
	})
	defer s.Stop(t.Context())
	c, err = servertest.Dial(s.Addr().String(), "agent-enc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendPlain(t, c, "agent-enc", 1, n, 32) // acknowledged: durable in the spool
	for _, i := range []int{1, n / 2, n} {
		if segmentsHold(t, filepath.Join(dir, "spool"), msg("agent-enc", i)) {
			t.Fatalf("the spool holds %q in clear", msg("agent-enc", i))
		}
	}
	if segmentsHold(t, filepath.Join(dir, "spool"), "agent-enc") {
		t.Fatal("the spool holds the agent id in clear")
	}
	a := startAnalyzer(t, "a1", addr)
	defer a.srv.Close()
	waitFor(t, "every sealed packet delivered", 20*time.Second, func() bool {
		got, _ := received([]*analyzer{a}, "agent-enc", n)
		return got == n
	})
	waitFor(t, "the spool acknowledged empty", 10*time.Second, func() bool {
		return metricSum(s, "logdist_spool_records") == 0
	})
	if v := metricSum(s, "logdist_spool_damaged_records_total"); v != 0 {
		t.Fatalf("%v damaged records", v)
	}

	// A key file its group may read: the start fails, saying why.
	if err := os.Chmod(keys, 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := proxy.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SyslogUDP = ""
	cfg.Logger = testLogger(t)
	cfg.DataDir = t.TempDir()
	cfg.Spool.KeyFile = keys
	cfg.Analyzers = []proxy.AnalyzerConfig{{Name: "a1", Addr: freeAddr(t), Weight: 1}}
	bad, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Start(); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("start with a key file of mode 0640: %v", err)
	}
}
