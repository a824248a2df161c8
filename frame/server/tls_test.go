package server_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tlsconf/tlstest"
)

// An mTLS client (frame/client) gets its packets acknowledged; the
// handler sees the certificate's identity.
func TestTLSClientCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	srvPair := ca.Issue(t, tlstest.Localhost("analyzer"))
	agent := ca.Issue(t, tlstest.Leaf{Name: "agent", URI: "spiffe://logs/web-1"})
	scfg, err := tlsconf.NewServer(tlsconf.Files{Cert: srvPair.Cert, Key: srvPair.Key, CA: ca.File}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	_, addr := start(t, rec, func(c *server.Config) { c.TLS = scfg.Get() })
	ccfg, err := tlsconf.NewClient(tlsconf.Files{Cert: agent.Cert, Key: agent.Key, CA: ca.File}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.DefaultConfig()
	cfg.Addrs, cfg.AgentID, cfg.TLS, cfg.Logger = []string{addr}, "web-1", ccfg.Get(), quietLogger()
	cfg.BatchMessages = 1
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		if err := c.Send(ctx, frame.Message{Timestamp: int64(i + 1), Body: []byte("over TLS")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.metas) != 5 || rec.metas[0].Identity != "spiffe://logs/web-1" || rec.metas[0].AgentID != "web-1" {
		t.Fatalf("%d packets, first meta %+v", len(rec.metas), rec.metas)
	}
}

// A plaintext client on a TLS port is told so in its own protocol; a TLS
// client on a plaintext port is told the port does not speak TLS, and the
// server's log names what it saw.
func TestTLSAndPlaintextMismatch(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	pair := ca.Issue(t, tlstest.Localhost("analyzer"))
	scfg, err := tlsconf.NewServer(tlsconf.Files{Cert: pair.Cert, Key: pair.Key}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, tlsAddr := start(t, &recorder{}, func(c *server.Config) { c.TLS = scfg.Get() })
	plain := dialRaw(t, tlsAddr)
	err = plain.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, AgentID: []byte("a")})
	if err == nil || !strings.Contains(err.Error(), "this port speaks TLS") {
		t.Fatalf("plaintext client on the TLS port: %v", err)
	}

	_, plainAddr := start(t, &recorder{}, nil)
	ccfg, _ := tlsconf.NewClient(tlsconf.Files{CA: ca.File}, quietLogger())
	nc, err := net.Dial("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = tlsconf.Handshake(context.Background(), nc, ccfg.Get(), plainAddr)
	if err == nil || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Fatalf("TLS client on the plaintext port: %v", err)
	}
}
