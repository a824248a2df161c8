// Package tlsconf builds the crypto/tls configurations of logdist's hops
// from PEM files, and reloads them: on Reload (SIGHUP), and when Watch
// sees a file change. A reload that fails (a half-written file, a key that
// does not match) keeps the material in use and says why; connections
// already open keep theirs, new ones get the new material.
//
// Every configuration it builds refuses anything below TLS 1.2 and lets
// Go pick the cipher suites (TLS 1.3 when both ends have it; for 1.2 only
// AEAD suites with forward secrecy).
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/promexp"
)

// Files names the PEM files of one end of a hop.
type Files struct {
	// Cert and Key are this end's certificate (chain) and private key:
	// required for a server, optional for a client (mTLS).
	Cert, Key string
	// CA verifies the other end: for a server, client certificates are
	// then required and checked against it (mTLS); for a client it
	// replaces the system's roots.
	CA string
	// ServerName (client) is the name the server's certificate must have;
	// empty: the host of the address dialled.
	ServerName string
}

// Config is a TLS configuration that can be reloaded. Its Get returns the
// current *tls.Config; a server's also serves each handshake the current
// one (GetConfigForClient), so a listener built once follows reloads.
type Config struct {
	files  Files
	server bool
	log    *slog.Logger

	cur    atomic.Pointer[tls.Config] // the material in force
	outer  *tls.Config                // a server's: hands each handshake cur
	mu     sync.Mutex                 // serializes reloads
	stamps map[string]fileStamp
	// Reloads and Failures count the reloads done and refused.
	Reloads, Failures atomic.Uint64
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

// NewServer builds a server's configuration: f.Cert and f.Key are
// required; with f.CA, client certificates are required and verified.
func NewServer(f Files, log *slog.Logger) (*Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS: a server needs a certificate and a key")
	}
	return newConfig(f, true, log)
}

// NewClient builds a client's configuration: with f.CA the server is
// verified against it (else against the system's roots); with f.Cert and
// f.Key the client presents that certificate.
func NewClient(f Files, log *slog.Logger) (*Config, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("TLS: a client certificate needs both a certificate and a key")
	}
	return newConfig(f, false, log)
}

func newConfig(f Files, server bool, log *slog.Logger) (*Config, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Config{files: f, server: server, log: log}
	if server {
		// A listener built once with outer asks for the material in force
		// at each handshake: reloads reach new connections.
		c.outer = &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.cur.Load(), nil
		}}
	}
	cfg, stamps, err := c.build()
	if err != nil {
		return nil, err
	}
	c.cur.Store(cfg)
	c.stamps = stamps
	return c, nil
}

// Get returns the configuration to use. A server's is one *tls.Config for
// its whole life, which takes the material in force at each handshake;
// hand it to tls.Server or tls.NewListener once. A client's is the
// material in force: take it at each dial (clone it to set a ServerName).
func (c *Config) Get() *tls.Config {
	if c.server {
		return c.outer
	}
	return c.cur.Load()
}

// Files returns the files it reads.
func (c *Config) Files() Files { return c.files }

// Reload reads the files again. On error the configuration in force stays.
func (c *Config) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, stamps, err := c.build()
	if err != nil {
		c.Failures.Add(1)
		return err
	}
	c.cur.Store(cfg)
	c.stamps = stamps
	c.Reloads.Add(1)
	return nil
}

// Watch reloads the configuration whenever one of its files changes (size
// or modification time, checked every period) until ctx is done. A failed
// reload is logged once per change of the files and retried at the next.
func (c *Config) Watch(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = c.ReloadChanged()
	}
}

// ReloadChanged reloads the configuration if one of its files changed
// since it was last read (SIGHUP calls it; Watch does, periodically), and
// logs what happened. A broken change is logged once, not at every call.
func (c *Config) ReloadChanged() (reloaded bool, err error) {
	c.mu.Lock()
	changed := false
	for path, old := range c.stamps {
		if st, serr := stamp(path); serr != nil || st != old {
			changed = true
			c.stamps[path] = st // do not retry the same broken state every time
		}
	}
	c.mu.Unlock()
	if !changed {
		return false, nil
	}
	if err := c.Reload(); err != nil {
		c.log.Error("TLS files changed but cannot be used; the ones in force stay", "cert", c.files.Cert, "ca", c.files.CA, "err", err)
		return false, err
	}
	c.log.Info("TLS files changed: reloaded", "cert", c.files.Cert, "ca", c.files.CA)
	return true, nil
}

// NotAfter returns when the certificate in force expires (zero: none).
func (c *Config) NotAfter() time.Time {
	if cs := c.cur.Load().Certificates; len(cs) > 0 && cs[0].Leaf != nil {
		return cs[0].Leaf.NotAfter
	}
	return time.Time{}
}

// build reads the files and makes a *tls.Config of them.
func (c *Config) build() (*tls.Config, map[string]fileStamp, error) {
	f := c.files
	stamps := map[string]fileStamp{}
	for _, p := range []string{f.Cert, f.Key, f.CA} {
		if p == "" {
			continue
		}
		st, err := stamp(p)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS: %w", err)
		}
		stamps[p] = st
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS: certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
			c.log.Warn("TLS certificate has expired", "cert", f.Cert, "not_after", cert.Leaf.NotAfter)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("TLS: CA file %s holds no PEM certificate", f.CA)
		}
		if c.server {
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		} else {
			cfg.RootCAs = pool
		}
	}
	return cfg, stamps, nil
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime()}, nil
}

// Identity names the verified certificate the peer presented: its first
// URI SAN (a SPIFFE ID, say), else its first DNS SAN, else its first
// e-mail SAN, else its subject's common name. "" when the peer presented
// none, or it was not verified.
func Identity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	switch {
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.EmailAddresses) > 0:
		return leaf.EmailAddresses[0]
	}
	return leaf.Subject.CommonName
}

// Handshake runs a client's TLS handshake on nc within ctx. With no
// ServerName in cfg, the host of addr is the name the server's certificate
// must have. A server that answers in the clear (a logdist or analyzer
// port without TLS) is named as such in the error.
func Handshake(ctx context.Context, nc net.Conn, cfg *tls.Config, addr string) (*tls.Conn, error) {
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && binary.BigEndian.Uint16(rh.RecordHeader[:2]) == frame.Magic {
			return nil, fmt.Errorf("TLS handshake with %s: the server answered in plaintext logdist frames: its port does not speak TLS", addr)
		}
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// MetricFamilies documents WriteMetrics' families, for promexp.
var MetricFamilies = []promexp.Family{
	{Name: "logdist_tls_reloads_total", Type: "counter", Help: "Certificate reloads (SIGHUP or a changed file), by hop (label hop: agents or upstream)."},
	{Name: "logdist_tls_reload_failures_total", Type: "counter", Help: "Certificate reloads that failed (the certificate in force stays), by hop."},
	{Name: "logdist_tls_certificate_expiry_timestamp_seconds", Type: "gauge", Help: "When the certificate in force expires, in seconds since the Unix epoch, by hop."},
}

// WriteMetrics writes the reloads and the certificates' expiry of the
// configurations by hop name (a nil one is skipped).
func WriteMetrics(w io.Writer, hops map[string]*Config) {
	names := make([]string, 0, len(hops))
	for h, c := range hops {
		if c != nil {
			names = append(names, h)
		}
	}
	sort.Strings(names)
	for _, h := range names {
		c := hops[h]
		lbl := `{hop="` + h + `"}`
		metrics.WriteCounterUint64(w, "logdist_tls_reloads_total"+lbl, c.Reloads.Load())
		metrics.WriteCounterUint64(w, "logdist_tls_reload_failures_total"+lbl, c.Failures.Load())
		if t := c.NotAfter(); !t.IsZero() {
			metrics.WriteGaugeUint64(w, "logdist_tls_certificate_expiry_timestamp_seconds"+lbl, uint64(t.Unix()))
		}
	}
}
