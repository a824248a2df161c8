package tlsconf_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/internal/tlsconf/tlstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// handshake runs a TLS handshake between server and client configs over
// loopback and returns the server's view of it and each side's error.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		cs  tls.ConnectionState
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer nc.Close()
		tc := tls.Server(nc, server)
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.HandshakeContext(context.Background())
		if err == nil {
			_, err = tc.Read(make([]byte, 1)) // let a client's certificate error arrive
			if err == io.EOF {
				err = nil
			}
		}
		ch <- res{tc.ConnectionState(), err}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(nc, client)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	cerr := tc.HandshakeContext(context.Background())
	tc.Close()
	r := <-ch
	return r.cs, r.err, cerr
}

func TestServerAndClient(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	srv := ca.Issue(t, tlstest.Localhost("server"))
	cli := ca.Issue(t, tlstest.Leaf{Name: "agent-7", URI: "spiffe://logs/agent-7"})
	s, err := tlsconf.NewServer(tlsconf.Files{Cert: srv.Cert, Key: srv.Key, CA: ca.File}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tlsconf.NewClient(tlsconf.Files{Cert: cli.Cert, Key: cli.Key, CA: ca.File, ServerName: "localhost"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cs, serr, cerr := handshake(t, s.Get(), c.Get())
	if serr != nil || cerr != nil {
		t.Fatalf("mTLS handshake: server %v, client %v", serr, cerr)
	}
	if id := tlsconf.Identity(&cs); id != "spiffe://logs/agent-7" || cs.Version != tls.VersionTLS13 {
		t.Fatalf("identity %q version %x", id, cs.Version)
	}

	// Refused: TLS 1.1, no client certificate, a client certificate of
	// another CA, an expired server certificate, the wrong server name.
	old := c.Get().Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, serr, _ := handshake(t, s.Get(), old); serr == nil || !strings.Contains(serr.Error(), "unsupported versions") {
		t.Errorf("TLS 1.1: server error %v", serr)
	}
	anon, _ := tlsconf.NewClient(tlsconf.Files{CA: ca.File, ServerName: "localhost"}, quiet)
	if _, serr, _ := handshake(t, s.Get(), anon.Get()); serr == nil || !strings.Contains(serr.Error(), "certificate") {
		t.Errorf("no client certificate: server error %v", serr)
	}
	other := tlstest.NewCA(t, "other")
	stranger := other.Issue(t, tlstest.Leaf{Name: "stranger"})
	sc, _ := tlsconf.NewClient(tlsconf.Files{Cert: stranger.Cert, Key: stranger.Key, CA: ca.File, ServerName: "localhost"}, quiet)
	// (Go's client offers no certificate the server's CA list does not
	// name; either way the server refuses.)
	if _, serr, _ := handshake(t, s.Get(), sc.Get()); serr == nil || !strings.Contains(serr.Error(), "certificate") {
		t.Errorf("client of another CA: server error %v", serr)
	}
	exp := ca.Issue(t, tlstest.Leaf{Name: "expired", DNS: []string{"localhost"}, Expired: true})
	es, _ := tlsconf.NewServer(tlsconf.Files{Cert: exp.Cert, Key: exp.Key}, quiet)
	plain, _ := tlsconf.NewClient(tlsconf.Files{CA: ca.File, ServerName: "localhost"}, quiet)
	if _, _, cerr := handshake(t, es.Get(), plain.Get()); cerr == nil || !strings.Contains(cerr.Error(), "expired") {
		t.Errorf("expired server certificate: client error %v", cerr)
	}
	wrong, _ := tlsconf.NewClient(tlsconf.Files{CA: ca.File, ServerName: "analyzer.example"}, quiet)
	if _, _, cerr := handshake(t, s.Get(), wrong.Get()); cerr == nil || !strings.Contains(cerr.Error(), "analyzer.example") {
		t.Errorf("wrong server name: client error %v", cerr)
	}
}

// A reload (or a change Watch sees) gives new handshakes the new
// certificate; broken files keep the old one.
func TestReload(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	first := ca.Issue(t, tlstest.Localhost("server"))
	s, err := tlsconf.NewServer(tlsconf.Files{Cert: first.Cert, Key: first.Key}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tlsconf.NewClient(tlsconf.Files{CA: ca.File, ServerName: "localhost"}, quiet)
	serialSeen := func() string {
		cc := c.Get().Clone()
		var got string
		cc.VerifyConnection = func(cs tls.ConnectionState) error {
			got = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}
		if _, serr, cerr := handshake(t, s.Get(), cc); serr != nil || cerr != nil {
			t.Fatalf("handshake: %v %v", serr, cerr)
		}
		return got
	}
	if got := serialSeen(); got != first.Serial.String() {
		t.Fatalf("serial %s, want %s", got, first.Serial)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, 10*time.Millisecond)
	second := ca.Issue(t, tlstest.Localhost("server")) // same files, new certificate
	deadline := time.Now().Add(5 * time.Second)
	for serialSeen() != second.Serial.String() {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not reload the changed certificate in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(first.Key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a broken key")
	}
	if got := serialSeen(); got != second.Serial.String() || s.Failures.Load() == 0 {
		t.Fatalf("after a failed reload: serial %s (want the second's), %d failures", got, s.Failures.Load())
	}
}
