package proxy_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tlsconf/tlstest"
	"github.com/logdist/logdist/proxy"
)

// testTLS returns logdist's TLS transport (agents' hop: server, with
// client certificates required; analyzers' hop: client, with its own
// certificate) and the analyzer's and the agent's configurations, all
// from one test CA.
func testTLS(t *testing.T) (tt proxy.TLSTransport, analyzerTLS, agentTLS *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t, "ca")
	files := func(p tlstest.Pair) tlsconf.Files { return tlsconf.Files{Cert: p.Cert, Key: p.Key, CA: ca.File} }
	log := testLogger(t)
	ld, err := tlsconf.NewServer(files(ca.Issue(t, tlstest.Localhost("logdist"))), log)
	if err != nil {
		t.Fatal(err)
	}
	up, err := tlsconf.NewClient(files(ca.Issue(t, tlstest.Leaf{Name: "logdist-client", URI: "spiffe://logs/logdist"})), log)
	if err != nil {
		t.Fatal(err)
	}
	an, err := tlsconf.NewServer(files(ca.Issue(t, tlstest.Leaf{Name: "analyzer", DNS: []string{"analyzer.internal"}})), log)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := tlsconf.NewClient(files(ca.Issue(t, tlstest.Leaf{Name: "agent", URI: "spiffe://logs/web-1"})), log)
	if err != nil {
		t.Fatal(err)
	}
	return proxy.TLSTransport{ServerConfig: ld.Get, ClientConfig: up.Get}, an.Get(), ag.Get()
}

// The transport seam: agents connect through TLS on the transport
// listener, and logdist reaches one analyzer through TLS and another in
// plaintext. Every packet arrives and is acknowledged, and stopping
// leaves no goroutine behind (TestMain checks).
func TestTransportSeamCarriesTLS(t *testing.T) {
	tt, analyzerTLS, agentTLS := testTLS(t)
	secure := &analyzer{name: "secure", seen: map[string]int{}}
	scfg := server.DefaultConfig()
	scfg.Addr = "127.0.0.1:0"
	scfg.Logger = testLogger(t)
	scfg.DrainTimeout = time.Second
	scfg.TLS = analyzerTLS // requires logdist's client certificate
	ssrv, err := server.New(scfg, secure)
	if err != nil {
		t.Fatal(err)
	}
	if err := ssrv.Start(); err != nil {
		t.Fatal(err)
	}
	secure.srv = ssrv
	plain := startAnalyzer(t, "plain", "127.0.0.1:0")
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{
			// Its certificate names analyzer.internal, not 127.0.0.1.
			{Name: "secure", Addr: ssrv.Addr().String(), Weight: 1, TLS: true, ServerName: "analyzer.internal"},
			{Name: "plain", Addr: plain.srv.Addr().String(), Weight: 1},
		}
		c.TransportListen = "127.0.0.1:0"
		c.AgentTransport = tt
		c.UpstreamTransport = tt
	})
	defer stopAll(t, s, []*analyzer{secure, plain})
	waitFor(t, "both analyzers up", 10*time.Second, allHealthy(s, 2))

	cfg := agentTLS.Clone()
	cfg.ServerName = "localhost"
	nc, err := tls.Dial("tcp", s.TransportAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := servertest.New(nc)
	defer c.Close()
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 64, MaxFrame: 1 << 20, AgentID: []byte("tls-agent")}); err != nil {
		t.Fatal(err)
	}
	const n = 400
	sendAll(t, c, "tls-agent", 1, n, 64)
	if got := secure.unique() + plain.unique(); got != n || secure.unique() < n/4 || plain.unique() < n/4 {
		t.Fatalf("analyzers got %d (secure %d, plain %d) of %d", got, secure.unique(), plain.unique(), n)
	}
	for i := uint64(1); i <= n; i++ {
		if key := fmt.Sprintf("tls-agent/%d", i); !secure.has(key) && !plain.has(key) {
			t.Fatalf("packet %d acknowledged but at no analyzer", i)
		}
	}
	// The analyzer saw logdist's certificate identity.
	secure.mu.Lock()
	id := secure.identity
	secure.mu.Unlock()
	if id != "spiffe://logs/logdist" {
		t.Fatalf("the TLS analyzer saw identity %q, want logdist's certificate", id)
	}
	// A plaintext client on the TLS listener is told so, in the clear; the
	// server goes on and counts it.
	raw, err := servertest.DialRaw(s.TransportAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	err = raw.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 1, AgentID: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "this port speaks TLS") {
		t.Fatalf("plaintext client on the TLS listener: %v", err)
	}
	waitFor(t, "the failed handshake counted", 5*time.Second, func() bool {
		return metricSum(s, "logdist_transport_handshake_failures_total") == 1
	})
}

// With listen empty, no plaintext port is open: the loops run on a Unix
// socket in a private directory (loop discovery only), agents come in over
// TLS, and the directory goes with the server.
func TestTLSOnly(t *testing.T) {
	tt, _, agentTLS := testTLS(t)
	a := startAnalyzer(t, "a1", "127.0.0.1:0")
	s := startProxy(t, []*analyzer{a}, []float64{1}, func(c *proxy.Config) {
		c.Listen = ""
		c.TransportListen = "127.0.0.1:0"
		c.AgentTransport = tt
	})
	if s.Addr() != nil {
		t.Fatalf("a plaintext address %v with listen empty", s.Addr())
	}
	waitFor(t, "the analyzer up", 10*time.Second, allHealthy(s, 1))
	cfg := agentTLS.Clone()
	cfg.ServerName = "localhost"
	nc, err := tls.Dial("tcp", s.TransportAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := servertest.New(nc)
	defer c.Close()
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 16, MaxFrame: 1 << 20, AgentID: []byte("tls-only")}); err != nil {
		t.Fatal(err)
	}
	sendAll(t, c, "tls-only", 1, 50, 16)
	if a.unique() != 50 {
		t.Fatalf("analyzer holds %d of 50", a.unique())
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "logdist-loops-*"))
	stopAll(t, s, []*analyzer{a})
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "logdist-loops-*"))
	if len(after) >= len(dirs) && len(dirs) > 0 {
		t.Fatalf("the loops' socket directory outlived the server: before %v, after %v", dirs, after)
	}
}
