package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/logdist/logdist/internal/config"
)

// Access decides who may use the admin API:
//
//   - an address outside the allow list (when there is one) gets 403 for
//     everything;
//   - /healthz, /readyz and /metrics are open (load balancers, Prometheus);
//   - reads (the JSON API, the status page, pprof) are open from this host
//     (loopback) and need a token from elsewhere;
//   - writes always need a token, sent as "Authorization: Bearer TOKEN";
//     without a token file they are refused.
//
// Its settings change while it serves (a reload rereads the token file).
type Access struct {
	st atomic.Pointer[accessState]
}

type accessState struct {
	tokens []tokenHash
	allow  []netip.Prefix
}

type tokenHash struct {
	identity string
	sum      [sha256.Size]byte
}

// NewAccess returns an Access with tokens and allow (empty: any address).
func NewAccess(tokens []config.Token, allow []netip.Prefix) *Access {
	a := &Access{}
	a.Set(tokens, allow)
	return a
}

// Set replaces the tokens and the allow list.
func (a *Access) Set(tokens []config.Token, allow []netip.Prefix) {
	st := &accessState{allow: allow}
	for _, t := range tokens {
		st.tokens = append(st.tokens, tokenHash{identity: t.Identity, sum: sha256.Sum256([]byte(t.Secret))})
	}
	a.st.Store(st)
}

// level is what an endpoint needs.
type level int

const (
	public level = iota // health, readiness, metrics
	read                // the API's GETs, the status page, pprof
	write               // changes
)

// check returns the identity of the request's token ("" if none) and, when
// it may not proceed, the HTTP status and why; outside tells that the
// client's address is not in the allow list.
func (a *Access) check(r *http.Request, need level) (identity string, status int, why string, outside bool) {
	st := a.st.Load()
	ip := remoteIP(r)
	if len(st.allow) > 0 && !allowed(st.allow, ip) {
		return "", http.StatusForbidden, "address " + ip.String() + " is not in --admin-allow (or --allow, when --admin-allow is empty)", true
	}
	identity, hasToken, valid := st.identify(r)
	switch {
	case need == public:
		return identity, 0, "", false
	case need == read && ip.IsLoopback() && localHost(r.Host) && !(hasToken && !valid):
		// Loopback, and addressed as this host: a web page in a browser
		// on this host cannot reach it through a name it controls (DNS
		// rebinding), since the Host it sends would be that name.
		return identity, 0, "", false
	case len(st.tokens) == 0 && need == write:
		return "", http.StatusForbidden, "admin writes are disabled: start logdist with --admin-token-file", false
	case len(st.tokens) == 0:
		return "", http.StatusForbidden, "reads need a token unless sent from this host to it by address or as localhost: start logdist with --admin-token-file", false
	case hasToken && !valid:
		return "", http.StatusUnauthorized, "invalid token", false
	case valid:
		return identity, 0, "", false
	}
	return "", http.StatusUnauthorized, "a token is needed (Authorization: Bearer TOKEN)", false
}

// localHost reports whether a request's Host names this host: an IP
// address, or localhost.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// identify finds the request's bearer token among the tokens. Every token
// is compared, in constant time over hashes, so the answer's timing says
// nothing about how much of a token was right.
func (st *accessState) identify(r *http.Request) (identity string, hasToken, valid bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", true, false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	for _, t := range st.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			identity, valid = t.identity, true // secrets are unique (config.ReadTokens)
		}
	}
	return identity, true, valid
}

func remoteIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

func allowed(allow []netip.Prefix, ip netip.Addr) bool {
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
