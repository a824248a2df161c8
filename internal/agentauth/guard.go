package agentauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/logthrottle"
	"github.com/logdist/logdist/internal/promexp"
	"github.com/logdist/logdist/internal/ratelimit"
)

// Mode is --auth.
type Mode uint8

const (
	// Off ignores tokens: every agent is accepted, as its certificate's
	// identity or its agent id.
	Off Mode = iota
	// Optional checks the tokens agents send (an unknown one is refused)
	// and accepts agents that send none, for a fleet moving to tokens.
	Optional
	// Required refuses an agent with neither a known token nor a client
	// certificate whose identity the file lists.
	Required
)

func (m Mode) String() string {
	switch m {
	case Optional:
		return "optional"
	case Required:
		return "required"
	}
	return "off"
}

// ParseMode reads --auth.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "off":
		return Off, nil
	case "optional":
		return Optional, nil
	case "required":
		return Required, nil
	}
	return Off, fmt.Errorf("--auth %q: want required, optional or off", s)
}

// Refusal reasons, the values of logdist_auth_refusals_total's reason.
const (
	ReasonMissing = "missing"  // no token where one is required
	ReasonUnknown = "unknown"  // a token the file does not list
	ReasonAgentID = "agent_id" // a known identity using an agent id it may not
)

// Refusal is one refused HELLO, for the log and the audit.
type Refusal struct {
	Time    time.Time
	Remote  string
	AgentID string
	Reason  string // one of the Reason constants
	Detail  string // what the agent was told
}

// Guard decides agents' HELLOs and hands out their rate limiters.
type Guard struct {
	mode Mode
	pol  atomic.Pointer[Policy] // nil: no auth file
	log  *slog.Logger

	mu   sync.Mutex
	lims map[string]*lease

	events  chan Refusal
	audit   func(Refusal)
	dropped *metrics.Counter
	refused map[string]*metrics.Counter
	okToken *metrics.Counter
	okCert  *metrics.Counter
	okAnon  *metrics.Counter
	reloads [2]*metrics.Counter // ok, error
}

type lease struct {
	lim  ratelimit.Limiter
	refs int
}

// Options configure a Guard.
type Options struct {
	Mode Mode
	// Policy is the loaded auth file (nil: none; then Mode must be Off
	// and only DefaultLimits apply).
	Policy *Policy
	// DefaultLimits apply without an auth file.
	DefaultLimits ratelimit.Limits
	Log           *slog.Logger
	// Audit is called with every refusal, on the Guard's goroutine (Run).
	Audit   func(Refusal)
	Metrics *metrics.Set
}

// refusalQueue bounds the refusals waiting for Run; past it they are
// counted and dropped (an agent retrying a bad token in a loop must not
// grow memory).
const refusalQueue = 1024

// New returns a Guard. With Mode Optional or Required it needs a Policy.
func New(o Options) (*Guard, error) {
	if o.Mode != Off && o.Policy == nil {
		return nil, fmt.Errorf("--auth %s needs --auth-file", o.Mode)
	}
	g := &Guard{mode: o.Mode, log: o.Log, audit: o.Audit, lims: make(map[string]*lease), events: make(chan Refusal, refusalQueue)}
	if g.log == nil {
		g.log = slog.Default()
	}
	pol := o.Policy
	if pol == nil {
		pol = &Policy{Default: o.DefaultLimits}
	}
	g.pol.Store(pol)
	set := o.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	g.refused = make(map[string]*metrics.Counter, 3)
	for _, r := range []string{ReasonMissing, ReasonUnknown, ReasonAgentID} {
		g.refused[r] = set.NewCounter(`logdist_auth_refusals_total{reason="` + r + `"}`)
	}
	g.okToken = set.NewCounter(`logdist_auth_accepted_total{method="token"}`)
	g.okCert = set.NewCounter(`logdist_auth_accepted_total{method="certificate"}`)
	g.okAnon = set.NewCounter(`logdist_auth_accepted_total{method="anonymous"}`)
	g.dropped = set.NewCounter(`logdist_auth_refusal_events_dropped_total`)
	g.reloads[0] = set.NewCounter(`logdist_auth_reloads_total{result="ok"}`)
	g.reloads[1] = set.NewCounter(`logdist_auth_reloads_total{result="error"}`)
	set.NewGauge(`logdist_auth_identities`, func() float64 { return float64(g.pol.Load().Len()) })
	set.NewGauge(`logdist_auth_limiters`, func() float64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		return float64(len(g.lims))
	})
	return g, nil
}

// Mode returns --auth.
func (g *Guard) Mode() Mode { return g.mode }

// Policy returns the auth file in force.
func (g *Guard) Policy() *Policy { return g.pol.Load() }

// Auth is the session.Auth of agents' HELLOs.
func (g *Guard) Auth(hello *frame.Hello, peer session.Peer) (string, error) {
	if g.mode == Off {
		g.okAnon.Inc()
		return unauthenticated(hello, peer), nil
	}
	pol := g.pol.Load()
	if len(hello.Token) == 0 {
		if peer.Identity != "" {
			if e := pol.byIdent[peer.Identity]; e != nil && e.TokenSHA256 == "" {
				if !e.allows(string(hello.AgentID)) {
					return "", g.refuse(peer, hello, ReasonAgentID, fmt.Sprintf("identity %s may not use agent id %q", e.Identity, printable(hello.AgentID)))
				}
				g.okCert.Inc()
				return e.Identity, nil
			}
		}
		if g.mode == Required {
			return "", g.refuse(peer, hello, ReasonMissing, "this logdist requires a token (or a client certificate it knows); none was sent")
		}
		g.okAnon.Inc()
		return unauthenticated(hello, peer), nil
	}
	sum := sha256.Sum256(hello.Token)
	// The lookup is by the token's hash: its timing tells at most how much
	// of SHA-256(guess) some stored hash starts with, which leads nowhere
	// near a token. The comparison that decides is constant-time.
	e := pol.byHash[sum]
	if e == nil || subtle.ConstantTimeCompare(sum[:], e.sum[:]) != 1 {
		return "", g.refuse(peer, hello, ReasonUnknown, "unknown token")
	}
	if !e.allows(string(hello.AgentID)) {
		return "", g.refuse(peer, hello, ReasonAgentID, fmt.Sprintf("identity %s may not use agent id %q", e.Identity, printable(hello.AgentID)))
	}
	g.okToken.Inc()
	return e.Identity, nil
}

// Prefixes of the identities of agents the auth file did not
// authenticate: they keep them apart from the file's identities (which may
// not start with them), so that an agent naming itself "web-fleet" never
// shares web-fleet's rate limiter or gets its limits.
const (
	PrefixAnonymous   = "anonymous:"   // + the agent id (no token, no certificate)
	PrefixCertificate = "certificate:" // + a verified certificate's identity the file does not list
)

func unauthenticated(hello *frame.Hello, peer session.Peer) string {
	if peer.Identity != "" {
		return PrefixCertificate + peer.Identity
	}
	return PrefixAnonymous + printable(hello.AgentID)
}

// refuse counts a refusal and queues it for Run; it returns the error the
// agent is told (ERROR auth).
func (g *Guard) refuse(peer session.Peer, hello *frame.Hello, reason, detail string) error {
	g.refused[reason].Inc()
	r := Refusal{Time: time.Now(), AgentID: printable(hello.AgentID), Reason: reason, Detail: detail}
	if peer.Addr != nil {
		r.Remote = peer.Addr.String()
	}
	select {
	case g.events <- r:
	default:
		g.dropped.Inc()
	}
	return errors.New(detail)
}

// printable bounds and cleans an agent id for messages and logs.
func printable(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strconv.QuoteToASCII(string(b))
}

// Run logs and audits refusals, and sweeps idle limiters, until ctx ends. The log gets at most one
// line per reason a second, with how many it left out; the audit gets
// each (it bounds anonymous refusals itself).
func (g *Guard) Run(ctx context.Context) {
	th := logthrottle.NewKeyed[string](time.Second) // keyed by reason: a few constants
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.sweep()
		case r := <-g.events:
			if ok, suppressed := th.Allow(r.Reason); ok {
				g.log.Warn("agent refused", "reason", r.Reason, "remote", r.Remote, "agent", r.AgentID, "detail", r.Detail, "suppressed", suppressed)
			}
			if g.audit != nil {
				g.audit(r)
			}
		}
	}
}

// Reload reads the auth file again. On an error the old one stays.
// Limits change at once for every connection of an identity. It returns
// the identities whose credentials the new file revokes (gone, or a
// different token): their open connections should be ended (the proxy's
// Revoke); new ones are refused already.
func (g *Guard) Reload() (revoked []string, err error) {
	old := g.pol.Load()
	if old.Path == "" {
		return nil, nil
	}
	pol, err := Load(old.Path)
	if err != nil {
		g.reloads[1].Inc()
		return nil, err
	}
	for id, e := range old.byIdent {
		if n := pol.byIdent[id]; n == nil || n.TokenSHA256 != e.TokenSHA256 {
			revoked = append(revoked, id)
		}
	}
	g.pol.Store(pol)
	now := time.Now().UnixNano()
	g.mu.Lock()
	for id, l := range g.lims {
		l.lim.SetLimits(pol.LimitsFor(id), now)
	}
	g.mu.Unlock()
	g.reloads[0].Inc()
	return revoked, nil
}

// Acquire returns the rate limiter of identity, shared by all its
// connections; Release it when the connection closes. It takes a lock:
// call it at the handshake, not per packet.
func (g *Guard) Acquire(identity string) *ratelimit.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.lims[identity]
	if l == nil {
		l = &lease{}
		l.lim.SetLimits(g.pol.Load().LimitsFor(identity), time.Now().UnixNano())
		g.lims[identity] = l
	}
	l.refs++
	return &l.lim
}

// Release gives back a limiter from Acquire. One no connection holds is
// forgotten as soon as its buckets are full again (closing every
// connection and reconnecting does not refill them early): at once if
// they are, else by the sweep in Run.
func (g *Guard) Release(identity string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.lims[identity]; l != nil {
		if l.refs--; l.refs <= 0 && l.lim.Idle(time.Now().UnixNano()) {
			delete(g.lims, identity)
		}
	}
}

// Held returns how many connections hold a limiter (Acquire without its
// Release yet).
func (g *Guard) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, l := range g.lims {
		n += max(l.refs, 0)
	}
	return n
}

// sweep forgets the limiters nobody holds whose buckets are full.
func (g *Guard) sweep() {
	now := time.Now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, l := range g.lims {
		if l.refs <= 0 && l.lim.Idle(now) {
			delete(g.lims, id)
		}
	}
}

// sweepEvery is how often Run sweeps the limiters.
const sweepEvery = 10 * time.Second

// MetricFamilies documents the Guard's metrics, for promexp.
var MetricFamilies = []promexp.Family{
	{Name: "logdist_auth_refusals_total", Type: "counter", Help: "Agent handshakes refused by --auth, by reason (label reason: missing, unknown or agent_id)."},
	{Name: "logdist_auth_accepted_total", Type: "counter", Help: "Agent handshakes accepted, by how the agent was identified (label method: token, certificate or anonymous)."},
	{Name: "logdist_auth_refusal_events_dropped_total", Type: "counter", Help: "Refusals not written to the audit log because its queue was full (they are still counted and logged)."},
	{Name: "logdist_auth_reloads_total", Type: "counter", Help: "Reloads of the --auth-file, by result (label result: ok or error; on error the previous file stays in force)."},
	{Name: "logdist_auth_identities", Type: "gauge", Help: "Identities in the --auth-file in force."},
	{Name: "logdist_auth_limiters", Type: "gauge", Help: "Per-identity rate limiters in use."},
}
