package session

import (
	"slices"
	"testing"

	"github.com/logdist/logdist/frame"
)

// handshake runs a HELLO from a client with ccfg through a server with
// scfg and the WELCOME back, and returns both sessions.
func handshake(t *testing.T, ccfg *ClientConfig, scfg *ServerConfig) (*Client[int], *Server, frame.Hello) {
	t.Helper()
	cli := NewClient[int](ccfg, &recorder{})
	srv := NewServer(scfg, Peer{})
	hb := cli.AppendHello(nil)
	var h frame.Hello
	if err := frame.DecodeHello(hb[frame.HeaderSize:], &h); err != nil {
		t.Fatal(err)
	}
	if evs, err := push(srv, hb); err != nil || len(evs) != 1 || evs[0] != EvHello {
		t.Fatalf("server: %v %v", evs, err)
	}
	feed(t, cli, srv.Flush(0))
	return cli, srv, h
}

// The dict capability, both ways: offered only with dictionaries, granted
// only by a server that holds some, with the server's ids; the client
// compresses with the first of its own the server lists; everyone else
// sees no change.
func TestDictNegotiation(t *testing.T) {
	base := frame.CapZstd | frame.CapSack
	cases := []struct {
		name       string
		cliDicts   []uint32
		srvDicts   []uint32
		grant      frame.Capabilities // the server's Grant
		wantOffer  bool
		wantGrant  bool
		wantListed []uint32
		wantDict   uint32
	}{
		{name: "neither", grant: base},
		{name: "client only", cliDicts: []uint32{7}, grant: base, wantOffer: true},
		{name: "server only", srvDicts: []uint32{7}, grant: base},
		{name: "both, same", cliDicts: []uint32{7}, srvDicts: []uint32{7}, grant: base, wantOffer: true, wantGrant: true, wantListed: []uint32{7}, wantDict: 7},
		// Rotation: the client prefers the new dictionary; a server
		// still on the old one gets the old one.
		{name: "rotating, old server", cliDicts: []uint32{8, 7}, srvDicts: []uint32{7}, grant: base, wantOffer: true, wantGrant: true, wantListed: []uint32{7}, wantDict: 7},
		{name: "rotating, both", cliDicts: []uint32{8, 7}, srvDicts: []uint32{7, 8}, grant: base, wantOffer: true, wantGrant: true, wantListed: []uint32{7, 8}, wantDict: 8},
		// A mismatch: granted, but nothing in common: no dictionary.
		{name: "mismatch", cliDicts: []uint32{9}, srvDicts: []uint32{7, 8}, grant: base, wantOffer: true, wantGrant: true, wantListed: []uint32{7, 8}},
		// Grant's CapDict bit alone grants nothing: Dicts decides.
		{name: "grant bit without dicts", cliDicts: []uint32{7}, grant: base | frame.CapDict, wantOffer: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ccfg := &ClientConfig{AgentID: "a", Offer: base, Window: 8, Dicts: c.cliDicts}
			scfg := serverConfig()
			scfg.Grant, scfg.Dicts = c.grant, c.srvDicts
			cli, srv, h := handshake(t, ccfg, scfg)
			if got := h.Caps&frame.CapDict != 0; got != c.wantOffer {
				t.Fatalf("HELLO offers dict: %v", got)
			}
			if h.Caps&^frame.CapDict != base {
				t.Fatalf("HELLO caps %#x", h.Caps)
			}
			if got := srv.Granted()&frame.CapDict != 0; got != c.wantGrant {
				t.Fatalf("server granted dict: %v", got)
			}
			if got := cli.Granted()&frame.CapDict != 0; got != c.wantGrant {
				t.Fatalf("client sees dict granted: %v", got)
			}
			if cli.Granted()&^frame.CapDict != base {
				t.Fatalf("client caps %#x", cli.Granted())
			}
			if !slices.Equal(cli.Dicts(), c.wantListed) {
				t.Fatalf("listed %v, want %v", cli.Dicts(), c.wantListed)
			}
			if cli.Dict() != c.wantDict {
				t.Fatalf("picked %d, want %d", cli.Dict(), c.wantDict)
			}
			for _, id := range c.wantListed {
				if !cli.AcceptsDict(id) {
					t.Fatalf("%d not accepted", id)
				}
			}
			if cli.AcceptsDict(0) || cli.AcceptsDict(12345) {
				t.Fatal("accepts a dictionary not listed")
			}
		})
	}
}

// A server that grants dict without being offered it (a bug) does not
// make the client use one; Reset forgets the last WELCOME's list.
func TestDictNotOffered(t *testing.T) {
	cli := NewClient[int](&ClientConfig{AgentID: "a", Offer: frame.CapZstd, Window: 8}, &recorder{})
	feed(t, cli, frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd | frame.CapDict, Window: 4, MaxFrame: 4096, Dicts: []uint32{7}}))
	if cli.Granted()&frame.CapDict != 0 || len(cli.Dicts()) != 0 || cli.Dict() != 0 {
		t.Fatalf("caps %#x dicts %v", cli.Granted(), cli.Dicts())
	}

	ccfg := &ClientConfig{AgentID: "a", Offer: frame.CapZstd, Window: 8, Dicts: []uint32{7}}
	cli.Reset(ccfg, &recorder{})
	feed(t, cli, frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd | frame.CapDict, Window: 4, MaxFrame: 4096, Dicts: []uint32{7}}))
	if cli.Dict() != 7 {
		t.Fatalf("dict %d", cli.Dict())
	}
	cli.Reset(ccfg, &recorder{})
	feed(t, cli, frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd, Window: 4, MaxFrame: 4096}))
	if cli.Dict() != 0 || len(cli.Dicts()) != 0 {
		t.Fatalf("after Reset, against a server without dictionaries: dict %d, listed %v", cli.Dict(), cli.Dicts())
	}
	// A malformed list is a bad handshake.
	cli.Reset(ccfg, &recorder{})
	bad := frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd, Window: 4, MaxFrame: 4096})
	p := append([]byte(nil), bad[frame.HeaderSize:]...)
	p[3] |= byte(frame.CapDict) // granted, with no list after the server id
	if err := feedErr(cli, frame.AppendFrame(nil, frame.TypeWelcome, 0, 0, p)); err == nil || !containsStr(err.Error(), "malformed WELCOME") {
		t.Fatalf("WELCOME granting dict without a list: %v", err)
	}
}
