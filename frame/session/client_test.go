package session

import (
	"errors"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

// recorder is a Resolver that keeps what it was told, in order.
type recorder struct {
	acked, busy, rejected []int
	retry                 time.Duration
	code                  frame.Code
}

func (r *recorder) Acked(i int) { r.acked = append(r.acked, i) }
func (r *recorder) Busy(i int, d time.Duration) {
	r.busy = append(r.busy, i)
	r.retry = d
}
func (r *recorder) Rejected(i int, c frame.Code, _ []byte) {
	r.rejected = append(r.rejected, i)
	r.code = c
}

func TestClientHandshake(t *testing.T) {
	f := func(name string, answer []byte, wantErr string, permanent bool) {
		t.Helper()
		c := NewClient[int](&ClientConfig{AgentID: "a", Offer: frame.CapZstd, Window: 64}, &recorder{})
		err := feedErr(c, answer)
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%s: %v", name, err)
		case wantErr != "" && (err == nil || !containsStr(err.Error(), wantErr)):
			t.Fatalf("%s: error %v, want one saying %q", name, err, wantErr)
		}
		var r *Refused
		if errors.As(err, &r) && r.Permanent() != permanent {
			t.Fatalf("%s: permanent %v, want %v", name, r.Permanent(), permanent)
		}
	}
	f("welcome", frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd | frame.CapSack, Window: 16, MaxFrame: 1 << 20}), "", false)
	f("auth", frame.AppendError(nil, 0, frame.CodeAuth, "bad token"), "auth: bad token", true)
	f("bad handshake", frame.AppendError(nil, 0, frame.CodeBadHandshake, "no"), "bad_handshake", true)
	f("overloaded", frame.AppendError(nil, 0, frame.CodeOverloaded, "full"), "overloaded", false)
	f("ack first", frame.AppendAck(nil, 1), "answered HELLO with ACK", false)

	c := NewClient[int](&ClientConfig{AgentID: "a", Offer: frame.CapZstd, Window: 64}, &recorder{})
	feed(t, c, frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd | frame.CapSack, Window: 16, MaxFrame: 4096, IdleTimeoutMs: 3000, ServerID: []byte("s1")}))
	// The window is the smaller; a capability not offered is not granted.
	if c.Window() != 16 || c.Granted() != frame.CapZstd || c.MaxFrame() != 4096 || c.IdleTimeout() != 3*time.Second || string(c.ServerID()) != "s1" {
		t.Fatalf("negotiated window %d caps %v max frame %d idle %v id %q", c.Window(), c.Granted(), c.MaxFrame(), c.IdleTimeout(), c.ServerID())
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Answers for sequences not written, not in flight, or frames a server
// does not send are violations, answered with ERROR seq 0.
func TestClientViolations(t *testing.T) {
	f := func(name string, sack bool, answer []byte, code frame.Code) {
		t.Helper()
		caps := frame.CapZstd
		if sack {
			caps |= frame.CapSack
		}
		c := readyClient(t, &recorder{}, 8, caps)
		for i := 1; i <= 3; i++ {
			c.Send(i, nil)
		}
		c.MarkWritten()
		c.Send(4, nil) // sent, not written
		feed(t, c, frame.AppendBusy(nil, 2, 0))
		err := feedErr(c, answer)
		var v *Violation
		if !errors.As(err, &v) || v.Code != code {
			t.Fatalf("%s: error %v, want a %s violation", name, err, code)
		}
		out := c.Output()
		h, herr := frame.ParseHeader(out, &clientLimits)
		if herr != nil || h.Type() != frame.TypeError || h.Seq() != 0 {
			t.Fatalf("%s: output %x, want ERROR seq 0", name, out)
		}
		if !c.Closed() || c.CanSend() {
			t.Fatalf("%s: still open after a violation", name)
		}
	}
	f("ack beyond written", false, frame.AppendAck(nil, 4), frame.CodeProtocol)
	f("busy not in flight", false, frame.AppendBusy(nil, 2, 0), frame.CodeProtocol)
	f("error not sent", false, frame.AppendError(nil, 9, frame.CodeMalformed, "x"), frame.CodeProtocol)
	f("sack not granted", false, frame.AppendSack(nil, 0, []frame.SeqRange{{First: 2, Last: 3}}), frame.CodeBadType)
	f("sack beyond written", true, frame.AppendSack(nil, 0, []frame.SeqRange{{First: 3, Last: 4}}), frame.CodeProtocol)
	f("data from server", false, frame.AppendFrame(nil, frame.TypeData, 1, 1, make([]byte, 40)), frame.CodeProtocol)
	f("second welcome", false, frame.AppendWelcome(nil, &frame.Welcome{Window: 1, MaxFrame: 1}), frame.CodeProtocol)
	// A DATA header announcing more than a control frame is refused at
	// its header, before a byte of its payload.
	big := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<20, 1<<20, 0)
	c := readyClient(t, &recorder{}, 8, 0)
	if _, err := c.Admit(big); err == nil {
		t.Fatal("a 1 MiB DATA header from a server was admitted")
	}
}

func TestClientResolution(t *testing.T) {
	r := &recorder{}
	c := readyClient(t, r, 8, frame.CapZstd|frame.CapSack)
	for i := 1; i <= 8; i++ {
		c.Send(i*10, nil)
	}
	c.MarkWritten()
	if c.CanSend() {
		t.Fatal("window of 8 full, yet CanSend")
	}
	feed(t, c,
		frame.AppendBusy(nil, 3, 250),
		frame.AppendError(nil, 5, frame.CodeRejected, "bad"),
		frame.AppendSack(nil, 1, []frame.SeqRange{{First: 4, Last: 4}, {First: 7, Last: 8}}),
	)
	if got := [3]int{len(r.acked), len(r.busy), len(r.rejected)}; got != [3]int{4, 1, 1} {
		t.Fatalf("acked %v busy %v rejected %v", r.acked, r.busy, r.rejected)
	}
	if r.retry != 250*time.Millisecond || r.code != frame.CodeRejected {
		t.Fatalf("retry %v code %v", r.retry, r.code)
	}
	// 2 and 6 remain: the oldest unresolved is 2.
	if item, ok := c.Oldest(); !ok || item != 20 || c.Unresolved() != 2 {
		t.Fatalf("oldest %d (%v), unresolved %d; want 20 and 2", item, ok, c.Unresolved())
	}
	// A repeated or lower ACK is a no-op; a SACK over resolved sequences
	// resolves nothing twice.
	feed(t, c, frame.AppendAck(nil, 1), frame.AppendSack(nil, 1, []frame.SeqRange{{First: 3, Last: 8}}))
	if len(r.acked) != 5 || c.Unresolved() != 1 { // 6 was in the range
		t.Fatalf("acked %v, unresolved %d", r.acked, c.Unresolved())
	}
	feed(t, c, frame.AppendAck(nil, 8))
	if len(r.acked) != 6 || c.Unresolved() != 0 || c.InFlight() != 0 {
		t.Fatalf("acked %v, unresolved %d, in flight %d", r.acked, c.Unresolved(), c.InFlight())
	}
}

// The newest DATA stays within SeqGapWindows windows of the oldest
// unresolved one, however many newer ones are resolved (PROTOCOL.md 11.1).
func TestClientKeepsTheGap(t *testing.T) {
	r := &recorder{}
	c := readyClient(t, r, 2, frame.CapSack)
	c.Send(1, nil) // held for ever
	sent := 1
	for c.CanSend() {
		sent++
		seq := c.Send(sent, nil)
		c.MarkWritten()
		feed(t, c, frame.AppendSack(nil, 0, []frame.SeqRange{{First: seq, Last: seq}}))
	}
	if want := frame.SeqGapWindows * 2; sent != want || c.InFlight() != want {
		t.Fatalf("sent %d, %d in flight; want the gap to stop it at %d", sent, c.InFlight(), want)
	}
	feed(t, c, frame.AppendAck(nil, 1))
	if !c.CanSend() {
		t.Fatal("the oldest was acknowledged, yet the gap still stops sending")
	}
}

func TestClientGoAwayDrains(t *testing.T) {
	r := &recorder{}
	c := readyClient(t, r, 8, 0)
	c.Send(1, nil)
	c.Send(2, nil)
	c.MarkWritten()
	feed(t, c, frame.AppendGoAway(nil, frame.CodeShutdown, "bye"))
	if c.CanSend() || c.Done() || !c.Draining() {
		t.Fatalf("after GOAWAY: can send %v, done %v", c.CanSend(), c.Done())
	}
	if code, why := c.GoAway(); code != frame.CodeShutdown || string(why) != "bye" {
		t.Fatalf("goaway %v %q", code, why)
	}
	feed(t, c, frame.AppendAck(nil, 2))
	if !c.Done() {
		t.Fatal("drained, yet not done")
	}
}

func TestClientHeartbeats(t *testing.T) {
	c := readyClient(t, &recorder{}, 8, 0)
	const sec = int64(time.Second)
	c.AppendPing(1 * sec)
	c.AppendPing(2 * sec)
	c.Output()
	if c.PingsOut() != 2 {
		t.Fatalf("%d pings out", c.PingsOut())
	}
	// The first PING's PONG is late but an ACK arrived after it: talking.
	c.Send(1, nil)
	c.MarkWritten()
	if _, err := c.Handle(frame.Header(frame.AppendAck(nil, 1)), nil, int64(1.5*float64(sec))); err != nil {
		t.Fatal(err)
	}
	if m := c.Missed(3*sec+1, sec); m != 1 { // ping 1: talked after it; ping 2: silence since 1.5 s
		t.Fatalf("%d missed, want 1", m)
	}
	c.AppendPing(4 * sec)
	ev, err := c.Handle(frame.Header(frame.AppendPong(nil, 3)), nil, 4*sec+int64(3*time.Millisecond))
	if err != nil || ev != EvPong || c.RTT() != 3*time.Millisecond || c.PingsOut() != 0 {
		t.Fatalf("pong: %v %v rtt %v out %d", ev, err, c.RTT(), c.PingsOut())
	}
	// At most maxPingsOut wait.
	for i := 0; i < maxPingsOut; i++ {
		if !c.AppendPing(5 * sec) {
			t.Fatalf("ping %d refused", i)
		}
	}
	if c.AppendPing(5 * sec) {
		t.Fatal("more than maxPingsOut pings out")
	}
	// A PING from the server is answered.
	c.Output()
	feed(t, c, frame.AppendPing(nil, 77))
	if h := frame.Header(c.Output()); h.Type() != frame.TypePong || h.Seq() != 77 {
		t.Fatalf("answered %s %d", h.Type(), h.Seq())
	}
}

func TestClientFatalErrorFromServer(t *testing.T) {
	c := readyClient(t, &recorder{}, 8, 0)
	c.Send(1, nil)
	c.MarkWritten()
	// A connection code closes whatever the sequence (PROTOCOL.md 9).
	err := feedErr(c, frame.AppendError(nil, 1, frame.CodeInternal, "boom"))
	var re *frame.RemoteError
	if !errors.As(err, &re) || re.Code != frame.CodeInternal || !c.Closed() {
		t.Fatalf("error %v, closed %v", err, c.Closed())
	}
	var left []int
	c.TakeUnresolved(func(i int) { left = append(left, i) })
	if len(left) != 1 {
		t.Fatalf("unresolved %v, want [1]", left)
	}
}

// Resolved items are not kept reachable from the ring's buffer, where the
// owner's memory bounds do not count them.
func TestClientReleasesResolvedItems(t *testing.T) {
	c := NewClient[*[1024]byte](&ClientConfig{AgentID: "a", Window: 64}, nopPtrResolver{})
	if _, err := c.Handle(frame.Header(frame.AppendWelcome(nil, &frame.Welcome{Window: 64, MaxFrame: 1 << 20})),
		frame.AppendWelcome(nil, &frame.Welcome{Window: 64, MaxFrame: 1 << 20})[frame.HeaderSize:], 1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		c.Send(new([1024]byte), nil)
	}
	c.MarkWritten()
	if _, err := c.Handle(frame.Header(frame.AppendAck(nil, 64)), nil, 1); err != nil {
		t.Fatal(err)
	}
	for i, item := range c.items.buf {
		if item != nil || c.live.buf[i] {
			t.Fatalf("slot %d still holds an item after ACK 64", i)
		}
	}
}

type nopPtrResolver struct{}

func (nopPtrResolver) Acked(*[1024]byte)                        {}
func (nopPtrResolver) Busy(*[1024]byte, time.Duration)          {}
func (nopPtrResolver) Rejected(*[1024]byte, frame.Code, []byte) {}

// A SACK whose ranges cover sequences long resolved costs nothing: with
// nothing in flight, a hostile server's range up to 2^40 used to be walked
// one sequence at a time under the Go client's lock.
func TestSackOverResolvedIsCheap(t *testing.T) {
	c := readyClient(t, &recorder{}, 8, frame.CapSack)
	c.seq, c.written = 1<<40, 1<<40 // that many sent and acknowledged
	done := make(chan error, 1)
	go func() { done <- feedErr(c, frame.AppendSack(nil, 1, []frame.SeqRange{{First: 3, Last: 1 << 40}})) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a SACK over 2^40 resolved sequences still walked after 5 s")
	}
}
