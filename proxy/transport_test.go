package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/proxy"
)

// tlsTransport is a Transport made of crypto/tls, as the security issue's
// will be: it proves the seam carries a real record layer both ways.
type tlsTransport struct{ server, client *tls.Config }

func (tt tlsTransport) Server(ctx context.Context, nc net.Conn) (net.Conn, error) {
	c := tls.Server(nc, tt.server)
	return c, c.HandshakeContext(ctx)
}

func (tt tlsTransport) Client(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	c := tls.Client(nc, tt.client)
	return c, c.HandshakeContext(ctx)
}

// testTLS returns a server and a client TLS configuration for 127.0.0.1,
// with a self-signed certificate made here.
func testTLS(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "logdist test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	cli = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return srv, cli
}

// The transport seam: agents connect through TLS on the transport
// listener, and logdist reaches one analyzer through TLS and another in
// plaintext. Every packet arrives and is acknowledged, and stopping
// leaves no goroutine behind (TestMain checks).
func TestTransportSeamCarriesTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	secure := &analyzer{name: "secure", seen: map[string]int{}}
	scfg := server.DefaultConfig()
	scfg.Logger = testLogger(t)
	scfg.DrainTimeout = time.Second
	ssrv, err := server.New(scfg, secure)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ssrv.Serve(tls.NewListener(ln, srvTLS))
	secure.srv = ssrv
	plain := startAnalyzer(t, "plain", "127.0.0.1:0")
	tt := tlsTransport{server: srvTLS, client: cliTLS}
	s := startProxy(t, nil, nil, func(c *proxy.Config) {
		c.Analyzers = []proxy.AnalyzerConfig{
			{Name: "secure", Addr: ln.Addr().String(), Weight: 1, TLS: true},
			{Name: "plain", Addr: plain.srv.Addr().String(), Weight: 1},
		}
		c.TransportListen = "127.0.0.1:0"
		c.AgentTransport = tt
		c.UpstreamTransport = tt
	})
	defer stopAll(t, s, []*analyzer{secure, plain})
	waitFor(t, "both analyzers up", 10*time.Second, allHealthy(s, 2))

	nc, err := tls.Dial("tcp", s.TransportAddr().String(), cliTLS)
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
	// A plaintext client on the TLS listener fails the handshake and is
	// closed; the server goes on.
	raw, err := net.Dial("tcp", s.TransportAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(frame.AppendHello(nil, &frame.Hello{Window: 1, AgentID: []byte("x")}))
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Read(make([]byte, 64)); err == nil {
		// A TLS alert may come first; then the close.
		if _, err := raw.Read(make([]byte, 64)); err == nil {
			t.Fatal("a plaintext client on the TLS listener got an answer beyond an alert")
		}
	}
	raw.Close()
}
