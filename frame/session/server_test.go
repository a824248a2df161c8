package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

func serverConfig() *ServerConfig {
	return &ServerConfig{Limits: frame.DefaultLimits(), Window: 4, Grant: frame.CapZstd | frame.CapSack, ServerID: "test"}
}

// push runs every frame in b through s and returns the events; it stops
// at the first error.
func push(s *Server, b []byte) ([]Event, error) {
	var evs []Event
	for len(b) > 0 {
		h, err := s.Admit(b)
		if err != nil {
			return evs, err
		}
		n := h.FrameLen()
		ev, err := s.Handle(h, b[frame.HeaderSize:n])
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
		b = b[n:]
	}
	return evs, nil
}

// answers lists the frames in b as "TYPE seq" (and the code of ERRORs).
func answers(t *testing.T, b []byte) string {
	t.Helper()
	lim := frame.DefaultLimits()
	rd := frame.NewReader(bytes.NewReader(b), &lim)
	var out []string
	for {
		h, payload, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return strings.Join(out, ", ")
		}
		if err != nil {
			t.Fatalf("bad answer frame: %v", err)
		}
		s := fmt.Sprintf("%s %d", h.Type(), h.Seq())
		if h.Type() == frame.TypeError {
			code, _, _ := frame.DecodeReason(payload)
			s += " " + code.String()
		}
		out = append(out, s)
	}
}

func hello(window uint32, caps frame.Capabilities) []byte {
	return frame.AppendHello(nil, &frame.Hello{Caps: caps, Window: window, MaxFrame: 4096, AgentID: []byte("agent-1"), Token: []byte("tok")})
}

func datas(first, n int) []byte {
	d := dataFrame()
	var b []byte
	for i := 0; i < n; i++ {
		frame.Header(d).SetSeq(uint64(first + i))
		b = append(b, d...)
	}
	return b
}

func TestServerHandshake(t *testing.T) {
	t.Run("negotiates", func(t *testing.T) {
		cfg := serverConfig()
		var sawToken string
		cfg.Auth = func(h *frame.Hello, peer Peer) (string, error) {
			sawToken = string(h.Token)
			return "fleet-a", nil
		}
		s := NewServer(cfg, Peer{})
		evs, err := push(s, hello(64, frame.CapZstd|frame.CapSack|1<<7))
		if err != nil || len(evs) != 1 || evs[0] != EvHello {
			t.Fatalf("events %v, err %v", evs, err)
		}
		if sawToken != "tok" || s.Identity() != "fleet-a" || string(s.AgentID()) != "agent-1" {
			t.Fatalf("token %q identity %q agent %q", sawToken, s.Identity(), s.AgentID())
		}
		if s.Window() != 4 || s.Granted() != frame.CapZstd|frame.CapSack {
			t.Fatalf("window %d caps %v", s.Window(), s.Granted())
		}
		if got := answers(t, s.Flush(0)); got != "WELCOME 0" {
			t.Fatalf("answers %q", got)
		}
	})
	f := func(name string, cfg *ServerConfig, in []byte, draining bool, want string) {
		t.Helper()
		s := NewServer(cfg, Peer{})
		if draining {
			s.GoAway(frame.CodeShutdown, "bye")
		}
		_, err := push(s, in)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if got := answers(t, s.Flush(0)); got != want {
			t.Fatalf("%s: answers %q, want %q", name, got, want)
		}
		if !s.Closed() {
			t.Fatalf("%s: not closed", name)
		}
	}
	f("data first", serverConfig(), datas(1, 1), false, "ERROR 0 bad_handshake")
	f("ping first", serverConfig(), frame.AppendPing(nil, 1), false, "ERROR 0 bad_handshake")
	f("bad hello", serverConfig(), frame.AppendFrame(nil, frame.TypeHello, 0, 0, []byte{1, 2, 3}), false, "ERROR 0 bad_handshake")
	f("draining", serverConfig(), hello(4, 0), true, "ERROR 0 shutdown")
	refusing := serverConfig()
	refusing.Auth = func(*frame.Hello, Peer) (string, error) { return "", errors.New("unknown token") }
	f("auth", refusing, hello(4, 0), false, "ERROR 0 auth")
	full := serverConfig()
	full.Auth = func(*frame.Hello, Peer) (string, error) {
		return "", fmt.Errorf("agent over its connections: %w", &frame.Error{Code: frame.CodeOverloaded, Msg: "full"})
	}
	f("auth overloaded", full, hello(4, 0), false, "ERROR 0 overloaded")

	// Before HELLO, a header announcing a large payload is refused as soon
	// as its 32 bytes are in: nothing of the payload is needed.
	s := NewServer(serverConfig(), Peer{})
	big := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<20, 1<<20, 0)
	if _, err := s.Admit(big); err == nil {
		t.Fatal("a 1 MiB DATA header before HELLO was admitted")
	}
}

func TestServerSequenceRules(t *testing.T) {
	f := func(name string, in []byte, want string) {
		t.Helper()
		s := NewServer(serverConfig(), Peer{})
		if _, err := push(s, hello(4, 0)); err != nil {
			t.Fatal(err)
		}
		s.Flush(0)
		_, err := push(s, in)
		var v *Violation
		if !errors.As(err, &v) {
			t.Fatalf("%s: error %v, want a violation", name, err)
		}
		if got := answers(t, s.Flush(0)); got != want {
			t.Fatalf("%s: answers %q, want %q", name, got, want)
		}
	}
	f("starts at 2", datas(2, 1), "ERROR 0 bad_sequence")
	f("gap", append(datas(1, 1), datas(3, 1)...), "ERROR 0 bad_sequence")
	f("repeat", append(datas(1, 1), datas(1, 1)...), "ERROR 0 bad_sequence")
	f("second hello", hello(4, 0), "ERROR 0 protocol")
	f("ack from a client", frame.AppendAck(nil, 0), "ERROR 0 protocol")
	f("goaway from a client", frame.AppendGoAway(nil, frame.CodeShutdown, ""), "ERROR 0 protocol")
}

// The window counts what the client can see: DATA whose resolution has
// not been written. Resolving without flushing does not make room.
func TestServerWindowCountsWrittenResolutions(t *testing.T) {
	s := NewServer(serverConfig(), Peer{})
	push(s, hello(4, 0))
	s.Flush(0)
	evs, err := push(s, datas(1, 4))
	if err != nil || len(evs) != 4 {
		t.Fatal(evs, err)
	}
	for seq := uint64(1); seq <= 4; seq++ {
		s.Accept(seq)
	}
	// Resolved, not yet written: a fifth DATA is past the window.
	if _, err := push(s, datas(5, 1)); err == nil {
		t.Fatal("fifth DATA in a window of 4 accepted before any ACK was written")
	}
	if got := answers(t, s.Flush(0)); got != "ACK 4, ERROR 0 window_exceeded" {
		t.Fatalf("answers %q: what was accepted is acknowledged first", got)
	}

	s = NewServer(serverConfig(), Peer{})
	push(s, hello(4, 0))
	push(s, datas(1, 4))
	s.Accept(1)
	s.Busy(2, 5)
	s.Reject(3, frame.CodeRejected, "no")
	s.Flush(0)
	// Three written; the fourth still open: three more fit, a fourth not.
	if _, err := push(s, datas(5, 3)); err != nil {
		t.Fatalf("DATA within the window refused: %v", err)
	}
	if _, err := push(s, datas(8, 1)); err == nil {
		t.Fatal("DATA past the window accepted")
	}
}

// Resolutions go out in order: BUSY and ERROR before the ACK that covers
// them, and SACK ranges only to a client granted sack, after SackDelay.
func TestServerAnswerOrder(t *testing.T) {
	s := NewServer(serverConfig(), Peer{})
	push(s, hello(4, 0))
	s.Flush(0)
	push(s, datas(1, 4))
	s.Accept(4)
	s.Busy(2, 250)
	s.Accept(1)
	s.Reject(3, frame.CodeMalformed, "bad")
	if got := answers(t, s.Flush(0)); got != "BUSY 2, ERROR 3 malformed, ACK 4" {
		t.Fatalf("answers %q", got)
	}

	cfg := serverConfig()
	cfg.SackDelay = 1000
	s = NewServer(cfg, Peer{})
	push(s, hello(4, frame.CapSack))
	s.Flush(0)
	push(s, datas(1, 4))
	s.Accept(2)
	s.Accept(4)
	if got := answers(t, s.Flush(100)); got != "" || !s.SackPending() {
		t.Fatalf("answers %q before the SACK delay, pending %v", got, s.SackPending())
	}
	if got := answers(t, s.Flush(1100)); got != "SACK 0" || s.SackPending() {
		t.Fatalf("answers %q after the delay, pending %v", got, s.SackPending())
	}
	s.Accept(1)
	if got := answers(t, s.Flush(1200)); got != "ACK 2" {
		t.Fatalf("answers %q: the cumulative point passes 1 and 2", got)
	}
	// The ranges reported resolved 2 and 4: the window has room for 3.
	if _, err := push(s, datas(5, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestServerPerPacketHeaderLimits(t *testing.T) {
	cfg := serverConfig()
	cfg.Limits.MaxMessages = 1
	s := NewServer(cfg, Peer{})
	push(s, hello(4, 0))
	s.Flush(0)
	p := &frame.Packet{ID: 1, AgentID: []byte("a"), Messages: []frame.Message{{Body: []byte("x")}, {Body: []byte("y")}}}
	two := (&frame.Encoder{}).AppendData(nil, 1, p, false)
	evs, err := push(s, append(two, datas(2, 1)...))
	if err != nil || len(evs) != 2 || evs[0] != EvRejected || evs[1] != EvData || s.RejectCode() != frame.CodeTooManyMessages {
		t.Fatalf("events %v err %v code %v", evs, err, s.RejectCode())
	}
	s.Accept(2)
	if got := answers(t, s.Flush(0)); got != "ERROR 1 too_many_messages, ACK 2" {
		t.Fatalf("answers %q", got)
	}
}

func TestServerGoAwayAndErrors(t *testing.T) {
	s := NewServer(serverConfig(), Peer{})
	push(s, hello(4, 0))
	push(s, datas(1, 1))
	s.GoAway(frame.CodeShutdown, "bye")
	evs, err := push(s, append(datas(2, 1), frame.AppendPing(nil, 9)...))
	if err != nil || evs[0] != EvBusy || evs[1] != EvPing {
		t.Fatalf("events %v err %v", evs, err)
	}
	s.Accept(1)
	if got := answers(t, s.Flush(0)); got != "WELCOME 0, GOAWAY 0, BUSY 2, PONG 9, ACK 2" {
		t.Fatalf("answers %q", got)
	}
	// A client's per-packet ERROR is only reported; a fatal one closes.
	evs, err = push(s, frame.AppendError(nil, 7, frame.CodeMalformed, "what?"))
	if code, why := s.PeerError(); err != nil || evs[0] != EvPeerError || code != frame.CodeMalformed || string(why) != "what?" {
		t.Fatalf("peer error: %v %v %v %q", evs, err, code, why)
	}
	_, err = push(s, frame.AppendError(nil, 0, frame.CodeInternal, "bye"))
	var re *frame.RemoteError
	if !errors.As(err, &re) || !s.Closed() {
		t.Fatalf("fatal peer ERROR: %v", err)
	}
	if s.Accept(1) || s.Busy(1, 0) {
		t.Fatal("resolved after close")
	}
}

// Per DATA frame, admitting, handling, accepting and flushing allocate
// nothing once the rings have grown.
func TestServerAllocs(t *testing.T) {
	s := NewServer(serverConfig(), Peer{})
	push(s, hello(4, frame.CapSack))
	s.Flush(0)
	d := dataFrame()
	var seq uint64
	step := func() {
		seq++
		frame.Header(d).SetSeq(seq)
		h, err := s.Admit(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Handle(h, d[frame.HeaderSize:]); err != nil {
			t.Fatal(err)
		}
		s.Accept(seq)
		s.Flush(int64(seq))
	}
	for i := 0; i < 100; i++ {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%.1f allocations per DATA", a)
	}
}

func TestClientAllocs(t *testing.T) {
	r := &nopResolver{}
	c := readyClient(t, r, 8, frame.CapSack)
	ack := make([]byte, 0, frame.HeaderSize)
	step := func() {
		seq := c.Send(1, nil)
		c.MarkWritten()
		ack = frame.AppendAck(ack[:0], seq)
		h, _ := c.Admit(ack)
		if _, err := c.Handle(h, nil, 1); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 || r.n == 0 {
		t.Fatalf("%.1f allocations per DATA (%d acked)", a, r.n)
	}
}

type nopResolver struct{ n int }

func (r *nopResolver) Acked(int)                        { r.n++ }
func (r *nopResolver) Busy(int, time.Duration)          {}
func (r *nopResolver) Rejected(int, frame.Code, []byte) {}

// Without an Auth hook, a verified client certificate's identity is the
// connection's identity; without a certificate, the agent id is.
func TestPeerIdentity(t *testing.T) {
	s := NewServer(serverConfig(), Peer{Identity: "spiffe://logs/web-1"})
	if _, err := push(s, hello(64, frame.CapZstd)); err != nil {
		t.Fatal(err)
	}
	if s.Identity() != "spiffe://logs/web-1" || string(s.AgentID()) != "agent-1" {
		t.Fatalf("identity %q agent %q", s.Identity(), s.AgentID())
	}
	s = NewServer(serverConfig(), Peer{})
	if _, err := push(s, hello(64, frame.CapZstd)); err != nil {
		t.Fatal(err)
	}
	if s.Identity() != "agent-1" {
		t.Fatalf("identity without a certificate: %q", s.Identity())
	}
}
