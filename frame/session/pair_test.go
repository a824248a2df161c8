package session

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/logdist/logdist/frame"
)

// outcomes records how each item was resolved; resolving one twice fails
// the test.
type outcomes struct {
	t    rapid.TB
	how  map[int]string
	busy int
}

func (o *outcomes) mark(item int, how string) {
	o.t.Helper()
	if prev, ok := o.how[item]; ok {
		o.t.Fatalf("item %d resolved twice: %s, then %s", item, prev, how)
	}
	o.how[item] = how
}

func (o *outcomes) Acked(item int)                            { o.mark(item, "acked") }
func (o *outcomes) Busy(item int, _ time.Duration)            { o.mark(item, "busy"); o.busy++ }
func (o *outcomes) Rejected(item int, _ frame.Code, _ []byte) { o.mark(item, "rejected") }

// dataFrame is one small DATA frame; its sequence is set by Client.Send.
func dataFrame() []byte {
	p := &frame.Packet{ID: 1, AgentID: []byte("a"), Messages: []frame.Message{{Body: []byte("x")}}}
	return (&frame.Encoder{}).AppendData(nil, 0, p, false)
}

// frames splits b into whole frames for fn and returns what is left.
func frames(t rapid.TB, b []byte, admit func([]byte) (frame.Header, error), fn func(frame.Header, []byte)) []byte {
	t.Helper()
	for len(b) >= frame.HeaderSize {
		h, err := admit(b)
		if err != nil {
			t.Fatalf("admit: %v", err)
		}
		n := h.FrameLen()
		if len(b) < n {
			break
		}
		payload := b[frame.HeaderSize:n]
		if err := h.Check(payload); err != nil {
			t.Fatal(err)
		}
		fn(frame.Header(b[:frame.HeaderSize]), payload)
		b = b[n:]
	}
	return b
}

// A conforming client and server never find a violation in each other,
// whatever the order of sends, resolutions, flushes, pings and drains, and
// every item is resolved exactly once, or handed back unresolved.
func TestPairNeverViolates(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sack := rapid.Bool().Draw(t, "sack")
		delay := time.Duration(rapid.SampledFrom([]int{0, 1000, 50000}).Draw(t, "sackDelay"))
		window := uint32(rapid.IntRange(1, 12).Draw(t, "window"))
		scfg := &ServerConfig{Limits: frame.DefaultLimits(), Window: uint32(rapid.IntRange(1, 16).Draw(t, "serverWindow")),
			Grant: frame.CapZstd | frame.CapSack, SackDelay: delay}
		offer := frame.CapZstd
		if sack {
			offer |= frame.CapSack
		}
		ccfg := &ClientConfig{AgentID: "agent", Offer: offer, Window: window}
		res := &outcomes{t: t, how: map[int]string{}}
		cli := NewClient[int](ccfg, res)
		srv := NewServer(scfg, Peer{})
		var c2s, s2c []byte
		var pending []uint64 // DATA the server holds unresolved
		data := dataFrame()
		now := int64(1)
		next := 0
		c2s = cli.AppendHello(c2s)

		toServer := func() {
			c2s = frames(t, c2s, srv.Admit, func(h frame.Header, p []byte) {
				ev, err := srv.Handle(h, p)
				if err != nil {
					t.Fatalf("server: %v", err)
				}
				if ev == EvData {
					pending = append(pending, h.Seq())
				}
			})
		}
		toClient := func() {
			s2c = frames(t, s2c, cli.Admit, func(h frame.Header, p []byte) {
				if _, err := cli.Handle(h, p, now); err != nil {
					t.Fatalf("client: %v", err)
				}
			})
			c2s = append(c2s, cli.Output()...)
		}
		toServer()
		s2c = append(s2c, srv.Flush(now)...)
		toClient()
		if !cli.Ready() || !srv.Ready() {
			t.Fatal("handshake did not complete")
		}
		if want := min(window, scfg.Window); cli.Window() != int(want) || srv.Window() != want {
			t.Fatalf("window: client %d server %d, want %d", cli.Window(), srv.Window(), want)
		}
		if (cli.Granted()&frame.CapSack != 0) != sack {
			t.Fatalf("sack granted %v, offered %v", cli.Granted()&frame.CapSack != 0, sack)
		}

		t.Repeat(map[string]func(*rapid.T){
			"send": func(t *rapid.T) {
				for n := rapid.IntRange(1, 8).Draw(t, "n"); n > 0 && cli.CanSend(); n-- {
					next++
					f := append([]byte(nil), data...)
					cli.Send(next, f)
					cli.MarkWritten()
					c2s = append(c2s, f...)
				}
			},
			"ping": func(t *rapid.T) {
				cli.AppendPing(now)
				c2s = append(c2s, cli.Output()...)
			},
			"serverReads": func(t *rapid.T) { toServer() },
			"resolve": func(t *rapid.T) {
				if len(pending) == 0 {
					t.Skip("nothing pending")
				}
				// Mostly the newest: an old DATA held while newer ones are
				// resolved is what stretches the gap and the SACK ranges.
				i := len(pending) - 1
				if rapid.IntRange(0, 3).Draw(t, "old") == 0 {
					i = rapid.IntRange(0, len(pending)-1).Draw(t, "i")
				}
				seq := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				var ok bool
				switch rapid.IntRange(0, 5).Draw(t, "how") {
				case 0:
					ok = srv.Busy(seq, 0)
				case 1:
					ok = srv.Reject(seq, frame.CodeRejected, "no")
				default:
					ok = srv.Accept(seq)
				}
				if !ok {
					t.Fatalf("resolving %d refused", seq)
				}
				if srv.Accept(seq) {
					t.Fatalf("%d resolved twice", seq)
				}
			},
			"resolveAllButOldest": func(t *rapid.T) {
				// What a slow analyzer holding one packet looks like: the
				// newest DATA runs ahead of the oldest unresolved one.
				for len(pending) > 1 {
					seq := pending[len(pending)-1]
					pending = pending[:len(pending)-1]
					if rapid.Bool().Draw(t, "busy") {
						srv.Busy(seq, 0)
					} else {
						srv.Accept(seq)
					}
				}
			},
			"serverFlush": func(t *rapid.T) { s2c = append(s2c, srv.Flush(now)...) },
			"clientReads": func(t *rapid.T) { toClient() },
			"time":        func(t *rapid.T) { now += int64(rapid.IntRange(1, 100000).Draw(t, "dt")) },
			"goaway": func(t *rapid.T) {
				srv.GoAway(frame.CodeShutdown, "bye")
			},
			"": func(t *rapid.T) {
				if cli.Unresolved() < 0 || uint64(cli.Unresolved()) > uint64(cli.Window()) {
					t.Fatalf("client has %d unresolved, window %d", cli.Unresolved(), cli.Window())
				}
				if n := cli.InFlight(); n > 0 && uint64(n) > frame.SeqGapWindows*uint64(cli.Window()) {
					t.Fatalf("client: newest DATA %d sequences ahead of the oldest unresolved, past %d windows of %d", n, frame.SeqGapWindows, cli.Window())
				}
				if got := next - len(res.how); got != cli.Unresolved() {
					t.Fatalf("client: %d sent, %d resolved, but %d unresolved", next, len(res.how), cli.Unresolved())
				}
			},
		})

		// Settle everything: the server resolves what it holds, time passes
		// the SACK delay, both sides read.
		for round := 0; round < 4; round++ {
			toServer()
			for _, seq := range pending {
				srv.Accept(seq)
			}
			pending = pending[:0]
			now += int64(delay) + 1
			s2c = append(s2c, srv.Flush(now)...)
			toClient()
		}
		if cli.Unresolved() != 0 || len(res.how) != next {
			t.Fatalf("after settling: %d unresolved, %d of %d resolved", cli.Unresolved(), len(res.how), next)
		}
		if srv.Unresolved() != 0 {
			t.Fatalf("server still has %d unresolved", srv.Unresolved())
		}
		if srv.Draining() && !cli.Done() {
			t.Fatal("server drained and everything resolved, but the client is not done")
		}
	})
}

// A connection that dies hands every unresolved item back, in order, and
// only those.
func TestClientTakeUnresolved(t *testing.T) {
	res := &outcomes{t: t, how: map[int]string{}}
	c := readyClient(t, res, 8, 0)
	for i := 1; i <= 6; i++ {
		c.Send(i, nil)
	}
	c.MarkWritten()
	feed(t, c, frame.AppendBusy(nil, 2, 10), frame.AppendError(nil, 4, frame.CodeRejected, "no"), frame.AppendAck(nil, 1))
	var got []int
	c.TakeUnresolved(func(i int) { got = append(got, i) })
	if fmt.Sprint(got) != "[3 5 6]" {
		t.Fatalf("unresolved %v, want [3 5 6]", got)
	}
	if fmt.Sprint(res.how) != "map[1:acked 2:busy 4:rejected]" {
		t.Fatalf("resolved %v", res.how)
	}
}

// readyClient returns a client past its handshake with the window and
// capabilities given.
func readyClient(t testing.TB, r Resolver[int], window uint32, caps frame.Capabilities) *Client[int] {
	t.Helper()
	c := NewClient[int](&ClientConfig{AgentID: "a", Offer: frame.CapZstd | frame.CapSack, Window: window}, r)
	feed(t, c, frame.AppendWelcome(nil, &frame.Welcome{Caps: caps, Window: window, MaxFrame: 1 << 20}))
	if !c.Ready() {
		t.Fatal("not ready")
	}
	return c
}

// feed hands frames to c and fails the test on an error.
func feed(t testing.TB, c *Client[int], fs ...[]byte) {
	t.Helper()
	for _, f := range fs {
		if err := feedErr(c, f); err != nil {
			t.Fatal(err)
		}
	}
}

func feedErr(c *Client[int], f []byte) error {
	h, err := c.Admit(f)
	if err != nil {
		return err
	}
	_, err = c.Handle(h, f[frame.HeaderSize:h.FrameLen()], 1)
	return err
}
