// Package clienttest is a scriptable stand-in for a logdist server, built
// directly on the frame codec, for tests of the client and of programs that
// use it. It records every DATA frame it decodes and answers each one as
// the test's OnData callback says (ACK, BUSY, per-packet ERROR, or hold it
// unanswered), and it checks the client's side of the protocol: sequence
// numbers and the granted window.
package clienttest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

// Action is how the server answers one DATA frame.
type Action int

const (
	Ack    Action = iota // ACK it (cumulative: everything held before it too)
	Hold                 // no answer yet (see Server.AckAll)
	Busy                 // BUSY with Reply.RetryAfter
	Reject               // ERROR seq=<it> with Reply.Code (a per-packet code)
	Drop                 // close the connection without answering
	Sack                 // accept it alone with a SACK (needs Options.Sack and a client offering it; else like Ack)
)

// Reply is the answer to a DATA frame.
type Reply struct {
	Action     Action
	RetryAfter time.Duration
	Code       frame.Code
	Reason     string
}

// Data is one DATA frame received and decoded.
type Data struct {
	Conn       int // connection number on this server, from 1
	Seq        uint64
	PacketID   uint64
	AgentID    string
	Bodies     []string
	PayloadLen int
	Compressed bool
	Dict       uint32 // the dictionary the payload names (0: none)
	At         time.Time
	Unresolved int // DATA unresolved on the connection, this one included
}

// Options configure a Server.
type Options struct {
	// Token, if set, is the only token accepted; others get ERROR auth.
	Token string
	// Window is the most DATA unresolved the server grants (default 1024).
	Window uint32
	// MaxFrame is the largest DATA payload accepted (default 1 MiB).
	MaxFrame uint32
	// IdleTimeoutMs is announced in WELCOME (0: none).
	IdleTimeoutMs uint32
	// NoZstd refuses the zstd capability.
	NoZstd bool
	// Sack grants selective ACKs to a client that offers them.
	Sack bool
	// Dicts are the zstd dictionaries the server holds: WELCOME grants the
	// dict capability to a client that offers it and lists their ids.
	Dicts frame.Dicts
	// NoPong makes the server ignore PINGs.
	NoPong bool
	// CountOnly keeps no Data (Received returns nothing), only the
	// message count (Messages): for benchmarks.
	CountOnly bool
	// OnData decides the answer to each DATA; nil ACKs everything. It is
	// called from the connection's goroutine, one frame at a time.
	OnData func(Data) Reply
}

// Server is a fake logdist server listening on 127.0.0.1.
type Server struct {
	opts Options
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	mu         sync.Mutex
	killed     bool
	conns      map[*sconn]struct{}
	nconns     int
	hellos     int
	tokens     []string
	data       []Data
	messages   int
	pings      int
	pongs      int
	violations []string
	goawayAt   time.Time
}

type sconn struct {
	nc  net.Conn
	id  int
	wmu sync.Mutex

	// Guarded by Server.mu.
	lastSeq    uint64
	acked      uint64 // the last cumulative ACK written
	sack       bool   // SACK granted
	unresolved int
	goaway     bool
}

// Start listens on addr ("127.0.0.1:0" for any port; a fixed address to
// restart a killed server on the same port) and serves until Kill, which
// t.Cleanup also calls.
func Start(t testing.TB, addr string, o Options) *Server {
	t.Helper()
	if o.Window == 0 {
		o.Window = 1024
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = frame.DefaultLimits().MaxFrame
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the port of a killed server may take a moment
	}
	if err != nil {
		t.Fatalf("clienttest: cannot listen on %s: %v", addr, err)
	}
	s := &Server{opts: o, ln: ln, addr: ln.Addr().String(), conns: make(map[*sconn]struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Kill)
	return s
}

// Addr returns the listening address, host:port.
func (s *Server) Addr() string { return s.addr }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.killed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.nconns++
		c := &sconn{nc: nc, id: s.nconns}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Server) violate(format string, args ...any) {
	s.mu.Lock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (c *sconn) write(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.nc.Write(b)
}

func (s *Server) serve(c *sconn) {
	defer s.wg.Done()
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	lim := frame.DefaultLimits()
	lim.MaxFrame = s.opts.MaxFrame
	lim.MaxRaw = max(lim.MaxRaw, lim.MaxFrame)
	rd := frame.NewReader(c.nc, &lim)
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, payload, err := rd.Next()
	if err != nil {
		return
	}
	var hello frame.Hello
	if h.Type() != frame.TypeHello || frame.DecodeHello(payload, &hello) != nil {
		c.write(frame.AppendError(nil, 0, frame.CodeBadHandshake, "expected HELLO"))
		return
	}
	s.mu.Lock()
	s.hellos++
	s.tokens = append(s.tokens, string(hello.Token))
	s.mu.Unlock()
	if s.opts.Token != "" && string(hello.Token) != s.opts.Token {
		c.write(frame.AppendError(nil, 0, frame.CodeAuth, "unknown token"))
		return
	}
	window := min(hello.Window, s.opts.Window)
	caps := hello.Caps & frame.CapZstd
	if s.opts.NoZstd {
		caps = 0
	}
	if s.opts.Sack {
		caps |= hello.Caps & frame.CapSack
	}
	c.sack = caps&frame.CapSack != 0
	var dicts []uint32
	if len(s.opts.Dicts) > 0 && caps&frame.CapZstd != 0 {
		caps |= hello.Caps & frame.CapDict
		dicts = s.opts.Dicts.IDs()
	}
	c.write(frame.AppendWelcome(nil, &frame.Welcome{
		Caps: caps, Window: window, MaxFrame: s.opts.MaxFrame,
		IdleTimeoutMs: s.opts.IdleTimeoutMs, ServerID: []byte("clienttest"), Dicts: dicts,
	}))
	c.nc.SetReadDeadline(time.Time{})
	dec := frame.NewDecoder(lim)
	dec.Dicts = s.opts.Dicts
	var pk frame.Packet
	for {
		h, payload, err := rd.Next()
		if err != nil {
			fe := (*frame.Error)(nil)
			if !errors.As(err, &fe) {
				return
			}
			s.violate("conn %d: %v", c.id, err)
			if h != nil && !fe.Code.Fatal() {
				c.write(frame.AppendError(nil, h.Seq(), fe.Code, fe.Msg))
				continue
			}
			c.write(frame.AppendError(nil, 0, fe.Code, fe.Msg))
			return
		}
		switch h.Type() {
		case frame.TypePing:
			s.mu.Lock()
			s.pings++
			s.mu.Unlock()
			if !s.opts.NoPong {
				c.write(frame.AppendPong(nil, h.Seq()))
			}
			continue
		case frame.TypePong:
			s.mu.Lock()
			s.pongs++
			s.mu.Unlock()
			continue
		case frame.TypeData:
		default:
			s.violate("conn %d: unexpected %s", c.id, h.Type())
			c.write(frame.AppendError(nil, 0, frame.CodeProtocol, "unexpected frame"))
			return
		}
		if err := dec.Decode(h, payload, &pk); err != nil {
			s.violate("conn %d: undecodable DATA seq %d: %v", c.id, h.Seq(), err)
			c.write(frame.AppendError(nil, h.Seq(), frame.CodeOf(err), err.Error()))
			continue
		}
		if s.opts.CountOnly {
			s.mu.Lock()
			s.messages += len(pk.Messages)
			c.write(frame.AppendAck(nil, h.Seq()))
			s.mu.Unlock()
			continue
		}
		d := Data{
			Conn: c.id, Seq: h.Seq(), PacketID: pk.ID, AgentID: string(pk.AgentID),
			PayloadLen: len(payload), Compressed: h.Compressed(), At: time.Now(),
			Dict: frame.DictID(append(append([]byte(nil), h...), payload...)),
		}
		for _, m := range pk.Messages {
			d.Bodies = append(d.Bodies, string(m.Body))
		}
		s.mu.Lock()
		if h.Seq() != c.lastSeq+1 {
			s.violations = append(s.violations, fmt.Sprintf("conn %d: DATA seq %d after %d", c.id, h.Seq(), c.lastSeq))
		}
		if c.goaway {
			s.violations = append(s.violations, fmt.Sprintf("conn %d: DATA seq %d after GOAWAY", c.id, h.Seq()))
		}
		c.lastSeq = h.Seq()
		c.unresolved++
		if c.unresolved > int(window) {
			s.violations = append(s.violations, fmt.Sprintf("conn %d: %d DATA unresolved, window %d", c.id, c.unresolved, window))
		}
		d.Unresolved = c.unresolved
		s.data = append(s.data, d)
		s.messages += len(d.Bodies)
		s.mu.Unlock()

		r := Reply{Action: Ack}
		if s.opts.OnData != nil {
			r = s.opts.OnData(d)
		}
		// Answer under the lock so AckAll cannot slip an ACK covering
		// this sequence in before a BUSY or ERROR for it.
		s.mu.Lock()
		if r.Action == Sack && (!c.sack || h.Seq() <= c.acked+1) { // AckAll may have run meanwhile
			r.Action = Ack // nothing held before it: the cumulative ACK says the same
		}
		switch r.Action {
		case Ack:
			c.unresolved = 0
			c.acked = h.Seq()
			c.write(frame.AppendAck(nil, h.Seq()))
		case Sack:
			c.unresolved--
			c.write(frame.AppendSack(nil, c.acked, []frame.SeqRange{{First: h.Seq(), Last: h.Seq()}}))
		case Busy:
			c.unresolved--
			c.write(frame.AppendBusy(nil, h.Seq(), uint32(r.RetryAfter/time.Millisecond)))
		case Reject:
			c.unresolved--
			c.write(frame.AppendError(nil, h.Seq(), r.Code, r.Reason))
		case Drop:
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// AckAll acknowledges everything held on every connection.
func (s *Server) AckAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.unresolved > 0 {
			c.unresolved = 0
			c.acked = c.lastSeq
			c.write(frame.AppendAck(nil, c.lastSeq))
		}
	}
}

// GoAway sends GOAWAY on every connection: from then on a DATA frame on
// them is a violation.
func (s *Server) GoAway() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goawayAt = time.Now()
	for c := range s.conns {
		c.goaway = true
		c.write(frame.AppendGoAway(nil, frame.CodeShutdown, "draining"))
	}
}

// Kill closes the listener and every connection at once, without
// answering anything held, and waits for the server's goroutines.
func (s *Server) Kill() {
	s.mu.Lock()
	s.killed = true
	s.ln.Close()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Received returns a copy of every DATA frame received, in order.
func (s *Server) Received() []Data {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Data(nil), s.data...)
}

// Messages returns how many messages the server received.
func (s *Server) Messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages
}

// Hellos returns how many HELLOs the server received.
func (s *Server) Hellos() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hellos
}

// Pings returns how many PINGs the server received.
func (s *Server) Pings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

// Ping sends a PING on every connection.
func (s *Server) Ping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.write(frame.AppendPing(nil, 42))
	}
}

// Pongs returns how many PONGs the server received.
func (s *Server) Pongs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pongs
}

// Conns returns how many connections the server accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// Violations returns the protocol rules the client broke, one line each.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}
