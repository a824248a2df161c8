package agentauth

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// FuzzHandshakeWithAuth feeds arbitrary bytes, as the first frames of a
// connection, to a protocol session whose Auth is a Guard, in each mode.
// Whatever arrives: no panic; a connection is welcomed only as an
// identity the HELLO proved (a listed token allowed that agent id, a
// listed certificate, or no token where tokens are optional or off); a
// refusal is ERROR auth (or bad_handshake for a malformed HELLO).
func FuzzHandshakeWithAuth(f *testing.F) {
	for _, h := range []*frame.Hello{
		hello("web-1", "web-secret-0123456789"),
		hello("db-1", "web-secret-0123456789"),
		hello("whatever", "any-secret-0123456789"),
		hello("web-1", "web-secret-012345678"),
		hello("db-1", ""),
		hello("", ""),
	} {
		h.Window = 8
		for mode := range 3 {
			f.Add(uint8(mode), false, frame.AppendHello(nil, h))
			f.Add(uint8(mode), true, frame.AppendHello(nil, h))
		}
	}
	f.Add(uint8(2), false, []byte("GET / HTTP/1.1\r\n\r\n"))
	guards := map[Mode]*Guard{}
	for _, m := range []Mode{Off, Optional, Required} {
		g, _, _ := newGuard(f, m, nil)
		guards[m] = g
	}
	limits := frame.DefaultLimits()
	f.Fuzz(func(t *testing.T, mode uint8, withCert bool, b []byte) {
		g := guards[Mode(mode%3)]
		cfg := session.ServerConfig{Limits: limits, Window: 64, Auth: g.Auth}
		peer := session.Peer{Addr: peerAddr("192.0.2.1:1")}
		if withCert {
			peer.Identity = "spiffe://example.org/db"
		}
		var s session.Server
		s.Reset(&cfg, peer)
		for len(b) >= frame.HeaderSize {
			h, err := s.Admit(b)
			if err != nil {
				return
			}
			n := h.FrameLen()
			if len(b) < n {
				return
			}
			payload := b[frame.HeaderSize:n]
			if h.Check(payload) != nil {
				return
			}
			var hl frame.Hello
			helloOK := h.Type() == frame.TypeHello && frame.DecodeHello(payload, &hl) == nil
			ev, err := s.Handle(h, payload)
			var ref *session.Refused
			switch {
			case errors.As(err, &ref):
				if ref.Code != frame.CodeAuth {
					t.Fatalf("refused with %s: %s", ref.Code, ref.Reason)
				}
				if g.Mode() == Off {
					t.Fatal("--auth off refused a HELLO")
				}
				return
			case err != nil:
				return
			case ev == session.EvHello:
				if !helloOK {
					t.Fatal("welcomed a HELLO that does not decode")
				}
				checkWelcome(t, g, &hl, peer, s.Identity())
			}
			b = b[n:]
		}
	})
}

// checkWelcome fails t unless identity is one the HELLO proved.
func checkWelcome(t *testing.T, g *Guard, h *frame.Hello, peer session.Peer, identity string) {
	t.Helper()
	if g.Mode() == Off {
		return
	}
	pol := g.Policy()
	if len(h.Token) > 0 {
		e := pol.byHash[sha256.Sum256(h.Token)]
		if e == nil || e.Identity != identity || !e.allows(string(h.AgentID)) {
			t.Fatalf("token %q welcomed as %q", h.Token, identity)
		}
		return
	}
	if e := pol.byIdent[peer.Identity]; e != nil && e.TokenSHA256 == "" && e.Identity == identity && e.allows(string(h.AgentID)) {
		return
	}
	if g.Mode() == Required {
		t.Fatalf("--auth required welcomed %q without a token or a listed certificate", identity)
	}
}
