// Package agentauth decides who an agent is and how fast it may send:
// the --auth-file (tokens stored as SHA-256 hashes, the agent ids each
// identity may use, its rate limits), the --auth mode, and the rate
// limiters every connection and event loop of one identity share.
//
// Its Guard is the proxy's session.Auth and its limiter source. A HELLO
// is decided from memory (one SHA-256 of the token and a map lookup), so
// it may run on an event loop; refusals are counted there and logged and
// audited by a goroutine of their own.
package agentauth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/logdist/logdist/internal/ratelimit"
)

// File is the --auth-file: YAML.
//
//	default-limits:            # agents without an entry (--auth optional|off)
//	  packets-per-second: 2000
//	agents:
//	  - identity: web-fleet    # what logs, metrics and the audit call it
//	    token-sha256: 5e884898da28047151d0e56f8dc62927...  # logdist auth hash
//	    agent-ids: ["web-*"]   # path.Match patterns; empty: any
//	    limits: {packets-per-second: 5000, bytes-per-second: 20000000}
//	  - identity: spiffe://example.org/agent/db   # a client certificate's
//	    agent-ids: ["db-*"]                        # identity: no token needed
type File struct {
	DefaultLimits ratelimit.Limits `yaml:"default-limits"`
	Agents        []Entry          `yaml:"agents"`
}

// Entry is one identity.
type Entry struct {
	Identity string `yaml:"identity"`
	// TokenSHA256 is the hex SHA-256 of the token the agent sends in
	// HELLO. Empty: the identity is a client certificate's, and the
	// agent authenticates with the certificate alone.
	TokenSHA256 string `yaml:"token-sha256"`
	// AgentIDs are the agent ids (HELLO's) the identity may use, as
	// path.Match patterns ("web-*"); empty allows any.
	AgentIDs []string `yaml:"agent-ids"`
	// Limits are the identity's rates, shared by all its connections;
	// zero: default-limits.
	Limits ratelimit.Limits `yaml:"limits"`

	sum [sha256.Size]byte // TokenSHA256 decoded
}

// maxFileBytes bounds the file read.
const maxFileBytes = 16 << 20

// Policy is a loaded auth file, ready for lookups. It does not change;
// a reload makes a new one.
type Policy struct {
	Path     string
	Default  ratelimit.Limits
	byHash   map[[sha256.Size]byte]*Entry
	byIdent  map[string]*Entry
	entries  []Entry
	withCert int // entries without a token
}

// Load reads and checks an auth file.
func Load(p string) (*Policy, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", p, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("auth file %s: larger than %d MiB", p, maxFileBytes>>20)
	}
	pol, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", p, err)
	}
	pol.Path = p
	return pol, nil
}

// Parse checks an auth file's text.
func Parse(b []byte) (*Policy, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := checkLimits("default-limits", f.DefaultLimits); err != nil {
		return nil, err
	}
	p := &Policy{
		Default: f.DefaultLimits,
		byHash:  make(map[[sha256.Size]byte]*Entry, len(f.Agents)),
		byIdent: make(map[string]*Entry, len(f.Agents)),
		entries: f.Agents,
	}
	for i := range p.entries {
		e := &p.entries[i]
		where := fmt.Sprintf("agents[%d]", i)
		if e.Identity == "" {
			return nil, fmt.Errorf("%s: identity is empty", where)
		}
		where = fmt.Sprintf("agents[%d] (%s)", i, e.Identity)
		if strings.HasPrefix(e.Identity, PrefixAnonymous) || strings.HasPrefix(e.Identity, PrefixCertificate) {
			return nil, fmt.Errorf("%s: identities starting with %q or %q name agents the file does not authenticate", where, PrefixAnonymous, PrefixCertificate)
		}
		if _, dup := p.byIdent[e.Identity]; dup {
			return nil, fmt.Errorf("%s: identity listed twice", where)
		}
		p.byIdent[e.Identity] = e
		if e.TokenSHA256 == "" {
			p.withCert++
		} else {
			if len(e.TokenSHA256) != 2*sha256.Size {
				return nil, fmt.Errorf("%s: token-sha256 must be 64 hex digits (logdist auth hash prints them)", where)
			}
			if _, err := hex.Decode(e.sum[:], []byte(e.TokenSHA256)); err != nil {
				return nil, fmt.Errorf("%s: token-sha256 must be 64 hex digits (logdist auth hash prints them)", where)
			}
			if other, dup := p.byHash[e.sum]; dup {
				return nil, fmt.Errorf("%s: same token as %s; the two could not be told apart", where, other.Identity)
			}
			p.byHash[e.sum] = e
		}
		for _, pat := range e.AgentIDs {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("%s: agent-ids pattern %q: %v", where, pat, err)
			}
		}
		if err := checkLimits(where+" limits", e.Limits); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func checkLimits(where string, l ratelimit.Limits) error {
	if l.PacketsPerSecond < 0 || l.PacketsBurst < 0 || l.BytesPerSecond < 0 || l.BytesBurst < 0 {
		return fmt.Errorf("%s: rates and bursts cannot be negative", where)
	}
	for _, r := range []float64{l.PacketsPerSecond, l.BytesPerSecond} {
		if r > 0 && r < ratelimit.MinRate {
			return fmt.Errorf("%s: a rate below %g per second (0 is no limit)", where, ratelimit.MinRate)
		}
	}
	return nil
}

// Len is how many identities the file lists.
func (p *Policy) Len() int { return len(p.entries) }

// LimitsFor returns the limits of identity: its entry's, else the
// default.
func (p *Policy) LimitsFor(identity string) ratelimit.Limits {
	if e := p.byIdent[identity]; e != nil && !e.Limits.Zero() {
		return e.Limits
	}
	return p.Default
}

// allows reports whether agent id id is one e may use.
func (e *Entry) allows(id string) bool {
	if len(e.AgentIDs) == 0 {
		return true
	}
	for _, pat := range e.AgentIDs {
		if ok, _ := path.Match(pat, id); ok {
			return true
		}
	}
	return false
}

// HashToken returns the hex SHA-256 of a token, as the auth file keeps it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
