package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/proxy"
)

// --allow: a peer outside the list is closed at once on the agent and
// syslog TCP listeners, its datagrams dropped on the syslog UDP one, each
// counted by listener; a peer inside gets through; a reconfiguration
// widens the list while the server runs.
func TestAllowList(t *testing.T) {
	col, srv := startCollector(t)
	defer srv.Close()
	tt, _, agentTLS := testTLS(t)
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{{Name: "c", Addr: srv.Addr().String(), Weight: 1}}
		c.SyslogUDP, c.SyslogTCP, c.SyslogTLS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.TransportListen, c.AgentTransport = "127.0.0.1:0", tt
		c.SyslogLinger = 2 * time.Millisecond
		c.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	})
	defer s.Stop(context.Background())
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))

	// An agent from 127.0.0.1 is closed without a word; from 127.0.0.2 it
	// is served.
	refusedAgent := func(local string) bool {
		c, err := dialFrom(t, local, s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Timeout = 5 * time.Second
		err = c.Handshake(&frame.Hello{Window: 8, MaxFrame: 1 << 20, AgentID: []byte("a")})
		if err == nil {
			return false
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("refused agent from %s: %v (want the connection closed)", local, err)
		}
		return true
	}
	if !refusedAgent("127.0.0.1") {
		t.Fatal("agent from 127.0.0.1 served; --allow is 127.0.0.2/32")
	}
	if refusedAgent("127.0.0.2") {
		t.Fatal("agent from 127.0.0.2 refused; --allow is 127.0.0.2/32")
	}

	sendUDP := func(local, body string) {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)}, s.SyslogAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "<13>Nov 26 21:00:00 h app: %s", body); err != nil {
			t.Fatal(err)
		}
	}
	sendTCP := func(local, body string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", s.SyslogTCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = fmt.Fprintf(c, "<13>Nov 26 21:00:00 h app: %s\n", body)
	}
	// The TLS listeners close a refused peer before any handshake: the
	// client's handshake fails on a closed connection.
	for _, addr := range []string{s.TransportAddr().String(), s.SyslogTLSAddr().String()} {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
		cfg := agentTLS.Clone()
		cfg.ServerName = "localhost"
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			c.Close()
			t.Fatalf("TLS listener %s completed a handshake with a peer outside --allow", addr)
		}
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("TLS listener %s refused a peer in --allow: %v", addr, err)
		}
		c.Close()
	}
	waitFor(t, "TLS refusals counted", 5*time.Second, func() bool {
		return metricSum(s, `logdist_allow_refused_total{listener="agent_tls"}`) == 1 &&
			metricSum(s, `logdist_allow_refused_total{listener="syslog_tls"}`) == 1
	})
	sendUDP("127.0.0.1", "udp-refused")
	sendTCP("127.0.0.1", "tcp-refused")
	waitFor(t, "refusals counted", 5*time.Second, func() bool {
		return metricSum(s, `logdist_allow_refused_total{listener="syslog_udp"}`) == 1 &&
			metricSum(s, `logdist_allow_refused_total{listener="syslog_tcp"}`) == 1
	})
	sendUDP("127.0.0.2", "udp-allowed")
	sendTCP("127.0.0.2", "tcp-allowed")
	waitFor(t, "allowed syslog messages", 10*time.Second, func() bool { return col.count() >= 2 })
	if got := metricSum(s, `logdist_allow_refused_total{listener="agent"}`); got != 1 {
		t.Fatalf("agent refusals counted %v, want 1", got)
	}

	cfg := s.Config()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "wider allow-list in force", 5*time.Second, func() bool { return !refusedAgent("127.0.0.1") })
	sendUDP("127.0.0.1", "udp-now-allowed")
	waitFor(t, "syslog from 127.0.0.1 after the change", 10*time.Second, func() bool { return col.count() >= 3 })
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, b := range col.bodies {
		if b == "udp-refused" || b == "tcp-refused" {
			t.Fatalf("a refused peer's message %q reached the analyzer", b)
		}
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}
