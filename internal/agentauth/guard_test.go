package agentauth

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

func policyText() string {
	return `
default-limits: {packets-per-second: 100}
agents:
  - identity: web-fleet
    token-sha256: ` + HashToken("web-secret-0123456789") + `
    agent-ids: ["web-*"]
    limits: {packets-per-second: 5000, bytes-per-second: 1000000}
  - identity: any-id
    token-sha256: ` + HashToken("any-secret-0123456789") + `
  - identity: spiffe://example.org/db
    agent-ids: ["db-?"]
`
}

func TestParseErrors(t *testing.T) {
	good := HashToken("x")
	for _, c := range []struct{ text, want string }{
		{"agents: [{identity: a, token-sha256: abc}]", "64 hex digits"},
		{"agents: [{identity: a, token-sha256: " + strings.Repeat("zz", 32) + "}]", "64 hex digits"},
		{"agents: [{identity: a, token-sha256: " + good + "}, {identity: a}]", "listed twice"},
		{"agents: [{identity: a, token-sha256: " + good + "}, {identity: b, token-sha256: " + good + "}]", "same token as a"},
		{"agents: [{identity: a, agent-ids: ['[']}]", "pattern"},
		{"agents: [{identity: a, tokne: x}]", "tokne"},
		{"agents: [{token-sha256: " + good + "}]", "identity is empty"},
		{"default-limits: {packets-per-second: -1}", "negative"},
	} {
		if _, err := Parse([]byte(c.text)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to say %q", c.text, err, c.want)
		}
	}
	if p, err := Parse(nil); err != nil || p.Len() != 0 {
		t.Fatalf("an empty file: %v", err)
	}
}

type peerAddr string

func (a peerAddr) Network() string { return "tcp" }
func (a peerAddr) String() string  { return string(a) }

func hello(id, token string) *frame.Hello {
	return &frame.Hello{AgentID: []byte(id), Token: []byte(token), Window: 1}
}

func newGuard(t testing.TB, mode Mode, audit func(Refusal)) (*Guard, *metrics.Set, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(policyText()), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	g, err := New(Options{Mode: mode, Policy: pol, Audit: audit, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	return g, set, path
}

func TestDecisions(t *testing.T) {
	var mu sync.Mutex
	var audited []Refusal
	g, set, _ := newGuard(t, Required, func(r Refusal) { mu.Lock(); audited = append(audited, r); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	peer := session.Peer{Addr: peerAddr("192.0.2.7:5000")}
	certPeer := session.Peer{Addr: peer.Addr, Identity: "spiffe://example.org/db"}
	for _, c := range []struct {
		name   string
		h      *frame.Hello
		peer   session.Peer
		ident  string
		reason string
	}{
		{"token", hello("web-1", "web-secret-0123456789"), peer, "web-fleet", ""},
		{"token, any agent id", hello("whatever", "any-secret-0123456789"), peer, "any-id", ""},
		{"token, agent id not allowed", hello("db-1", "web-secret-0123456789"), peer, "", ReasonAgentID},
		{"unknown token", hello("web-1", "web-secret-012345678"), peer, "", ReasonUnknown},
		{"no token", hello("web-1", ""), peer, "", ReasonMissing},
		{"certificate", hello("db-1", ""), certPeer, "spiffe://example.org/db", ""},
		{"certificate, agent id not allowed", hello("db-12", ""), certPeer, "", ReasonAgentID},
		{"unknown certificate", hello("db-1", ""), session.Peer{Identity: "CN=other"}, "", ReasonMissing},
		{"token wins over certificate", hello("web-2", "web-secret-0123456789"), certPeer, "web-fleet", ""},
	} {
		id, err := g.Auth(c.h, c.peer)
		if c.reason == "" {
			if err != nil || id != c.ident {
				t.Errorf("%s: identity %q, err %v; want %q", c.name, id, err, c.ident)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted as %q, want refused (%s)", c.name, id, c.reason)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(audited)
		mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals audited, want 5", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := audited[0]; r.Reason != ReasonAgentID || r.Remote != "192.0.2.7:5000" || r.AgentID != "db-1" || !strings.Contains(r.Detail, "web-fleet") {
		t.Errorf("first audited refusal %+v", r)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, want := range []string{
		`logdist_auth_refusals_total{reason="agent_id"} 2`,
		`logdist_auth_refusals_total{reason="unknown"} 1`,
		`logdist_auth_refusals_total{reason="missing"} 2`,
		`logdist_auth_accepted_total{method="token"} 3`,
		`logdist_auth_accepted_total{method="certificate"} 1`,
		`logdist_auth_identities 3`,
	} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, sb.String())
		}
	}
}

func TestOptionalAndOff(t *testing.T) {
	g, _, _ := newGuard(t, Optional, nil)
	if id, err := g.Auth(hello("legacy-1", ""), session.Peer{}); err != nil || id != "anonymous:legacy-1" {
		t.Fatalf("optional, no token: %q %v", id, err)
	}
	if _, err := g.Auth(hello("legacy-1", "wrong-token-0123456789"), session.Peer{}); err == nil {
		t.Fatal("optional accepted a wrong token; a wrong token is a mistake in any mode")
	}
	if id, _ := g.Auth(hello("web-1", "web-secret-0123456789"), session.Peer{}); id != "web-fleet" {
		t.Fatalf("optional, good token: identity %q", id)
	}
	// An agent naming itself after a listed identity is not that
	// identity, and does not get its limiter.
	if id, _ := g.Auth(hello("web-fleet", ""), session.Peer{}); id != "anonymous:web-fleet" || g.Acquire(id) == g.Acquire("web-fleet") {
		t.Fatalf("anonymous agent id web-fleet: identity %q, or it shares web-fleet's limiter", id)
	}
	if id, _ := g.Auth(hello("x", ""), session.Peer{Identity: "CN=unlisted"}); id != "certificate:CN=unlisted" {
		t.Fatalf("unlisted certificate: identity %q", id)
	}
	off, _, _ := newGuard(t, Off, nil)
	if id, err := off.Auth(hello("x", "wrong"), session.Peer{}); err != nil || id != "anonymous:x" {
		t.Fatalf("off: identity %q, err %v", id, err)
	}
	if _, err := Parse([]byte("agents: [{identity: 'anonymous:x', token-sha256: " + HashToken("t") + "}]")); err == nil {
		t.Fatal("a file identity with the anonymous prefix accepted")
	}
	if _, err := Parse([]byte("default-limits: {packets-per-second: 0.0000001}")); err == nil {
		t.Fatal("a rate below ratelimit.MinRate accepted")
	}
	if _, err := New(Options{Mode: Required}); err == nil {
		t.Fatal("--auth required without a file accepted")
	}
	for _, s := range []string{"off", "optional", "required"} {
		if m, err := ParseMode(s); err != nil || m.String() != s {
			t.Fatalf("ParseMode(%s) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("yes"); err == nil {
		t.Fatal("ParseMode(yes) accepted")
	}
}

// The limiter is shared by an identity's connections, follows a reload,
// and is forgotten only once nobody holds it and its buckets are full.
func TestLimitersAndReload(t *testing.T) {
	g, _, path := newGuard(t, Required, nil)
	a, b := g.Acquire("web-fleet"), g.Acquire("web-fleet")
	if a != b || a.Limits().PacketsPerSecond != 5000 {
		t.Fatalf("two connections of one identity: %p %p, limits %+v", a, b, a.Limits())
	}
	if d := g.Acquire("anonymous-agent").Limits(); d.PacketsPerSecond != 100 {
		t.Fatalf("an identity without an entry gets %+v, want the default", d)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(policyText(), "packets-per-second: 5000", "packets-per-second: 7", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if revoked, err := g.Reload(); err != nil || len(revoked) != 0 {
		t.Fatalf("reload with new limits only: revoked %v, err %v", revoked, err)
	}
	if a.Limits().PacketsPerSecond != 7 {
		t.Fatalf("after reload the held limiter enforces %+v", a.Limits())
	}
	if err := os.WriteFile(path, []byte("agents: [{identity: x, token-sha256: bad}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Reload(); err == nil || g.Policy().Len() != 3 {
		t.Fatalf("a bad file: err %v, %d identities in force (want the old 3)", err, g.Policy().Len())
	}
	now := time.Now().UnixNano()
	for a.Take(now, 1) == 0 {
	}
	g.Release("web-fleet")
	g.Release("web-fleet")
	g.Release("anonymous-agent") // idle: forgotten at once
	g.sweep()
	g.mu.Lock()
	_, kept := g.lims["web-fleet"]
	_, anon := g.lims["anonymous-agent"]
	g.mu.Unlock()
	if !kept || anon {
		t.Fatalf("after the sweep: drained web-fleet kept %v (want true), idle anonymous kept %v (want false)", kept, anon)
	}
	if c := g.Acquire("web-fleet"); c != a {
		t.Fatal("reconnecting while drained got a fresh limiter")
	}
}

func TestHashToken(t *testing.T) {
	// echo -n secret | sha256sum
	if h := HashToken("secret"); h != "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" {
		t.Fatal(h)
	}
}

var _ net.Addr = peerAddr("")

// A reload names the identities it revokes: gone from the file, or given
// another token.
func TestReloadRevokes(t *testing.T) {
	g, _, path := newGuard(t, Required, nil)
	text := strings.Replace(policyText(), HashToken("any-secret-0123456789"), HashToken("new-secret-0123456789"), 1)
	text = strings.Replace(text, "  - identity: spiffe://example.org/db\n    agent-ids: [\"db-?\"]\n", "", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	revoked, err := g.Reload()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(revoked)
	if want := []string{"any-id", "spiffe://example.org/db"}; !slices.Equal(revoked, want) {
		t.Fatalf("revoked %v, want %v", revoked, want)
	}
}
