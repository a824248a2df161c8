package session

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
)

// Auth decides whether a HELLO may go on to WELCOME, from the peer that
// sent it. It returns the identity the connection acts as ("" means the
// peer's certificate identity, or else the HELLO's agent id), or an error
// to refuse it: ERROR auth with the error's text as the reason, or, if the
// error carries a *frame.Error with another connection code (overloaded,
// say), that code.
//
// The hello and its byte slices are valid only during the call. On logdist
// it runs on an event loop, so it must not block: look tokens up in memory.
type Auth func(hello *frame.Hello, peer Peer) (identity string, err error)

// Peer is what the connection knows about the other end before HELLO.
type Peer struct {
	// Addr is its address (nil if unknown).
	Addr net.Addr
	// Identity names the client certificate it presented over TLS, once
	// verified (tlsconf.Identity); "" without one.
	Identity string
}

// ServerConfig is what a Server grants and enforces. Owners share one
// among many sessions and may give a session a new one between calls
// (SetConfig); what the handshake negotiated (window, capabilities) stays
// for the connection's life.
type ServerConfig struct {
	// Limits bound every frame and packet header the client sends.
	// Limits.MaxFrame is the max frame announced in WELCOME.
	Limits frame.Limits
	// Window is the most DATA a client may keep unresolved; a client
	// asking for less gets what it asked for.
	Window uint32
	// Grant is the capabilities the server may grant (WELCOME grants
	// those the HELLO offered). Its CapDict bit is ignored: Dicts decides.
	Grant frame.Capabilities
	// Dicts are the ids of the zstd dictionaries the server holds (at most
	// frame.MaxDicts, non-zero, distinct; frame.Dicts.IDs). With at least
	// one, a client that offers CapDict is granted it and WELCOME lists
	// them.
	Dicts []uint32
	// IdleTimeout is announced in WELCOME: the owner closes a connection
	// silent this long (0: never).
	IdleTimeout time.Duration
	// ServerID is sent in WELCOME (at most 255 bytes).
	ServerID string
	// SackDelay is how long DATA accepted beyond the cumulative point may
	// wait for the point to pass them before a SACK reports them (clients
	// granted sack only). 0 reports them at the next Flush.
	SackDelay time.Duration
	// MaxSeqGap bounds, in windows, how far the newest DATA may run ahead
	// of the oldest unresolved one; 0 means 2 × frame.SeqGapWindows, twice
	// what clients keep to (PROTOCOL.md 11.1).
	MaxSeqGap uint64
	// Auth, if not nil, is asked about every HELLO.
	Auth Auth
}

func (c *ServerConfig) maxGap() uint64 {
	if c.MaxSeqGap > 0 {
		return c.MaxSeqGap
	}
	return 2 * frame.SeqGapWindows
}

type serverState uint8

const (
	srvHandshake serverState = iota
	srvReady
	srvClosed
)

// Resolution states of the sequences after the cumulative point.
const (
	seqOpen     uint8 = iota // not resolved
	seqAccepted              // accepted, not yet reported to the client
	seqTold                  // resolved and reported (BUSY or ERROR queued, or in a SACK)
)

// Server is the accepting side of one connection (see the package doc).
// The zero value is not usable: call Reset.
type Server struct {
	cfg   *ServerConfig
	peer  Peer
	state serverState
	// draining is set by GoAway: DATA after it gets BUSY 0, a HELLO after
	// it ERROR shutdown.
	draining bool
	sentAway bool // GOAWAY is in the output (or was written)

	agentID  []byte
	identity string
	caps     frame.Capabilities
	window   uint64
	gapMax   uint64 // how far the newest DATA may run ahead of the oldest unresolved one

	lastSeq uint64 // last DATA sequence received
	acked   uint64 // every DATA ≤ acked is resolved
	ackSent uint64 // the cumulative point last written (ACK or SACK)
	// res holds the states of sequences acked+1 … lastSeq.
	res        ring[uint8]
	unresolved uint64 // DATA received, not resolved
	// wire counts DATA whose resolution has been written (at Flush): the
	// window counts what the client can see, lastSeq - wire (PROTOCOL.md
	// 11.1: a server counts a DATA as resolved when it writes the
	// resolution, so a client that keeps to its window is never ahead).
	wire uint64
	// told counts resolutions queued (BUSY, ERROR) since the last Flush;
	// passed counts DATA accepted and not reported that the cumulative
	// point went past since the last Flush (the next ACK reports them).
	told, passed uint64
	// unreported counts accepted DATA after acked not yet reported; the
	// lowest is no lower than unreportedMin. since is the owner's time at
	// the first Flush that saw them, if timing.
	unreported    uint64
	unreportedMin uint64
	since         int64
	timing        bool

	rejectCode frame.Code
	peerCode   frame.Code
	peerReason []byte

	acks   uint64           // ACK and SACK frames queued
	ranges []frame.SeqRange // appendSacks' scratch
	out    []byte
}

// NewServer returns a session for a new connection from peer under cfg.
func NewServer(cfg *ServerConfig, peer Peer) *Server {
	s := &Server{}
	s.Reset(cfg, peer)
	return s
}

// Reset makes s a fresh session for a new connection, keeping its buffers.
func (s *Server) Reset(cfg *ServerConfig, peer Peer) {
	out, ranges, res, id := s.out[:0], s.ranges[:0], s.res, s.agentID[:0]
	res.reset()
	*s = Server{cfg: cfg, peer: peer, out: out, ranges: ranges, res: res, agentID: id, unreportedMin: ^uint64(0)}
}

// SetConfig makes cfg the configuration for the frames that follow.
func (s *Server) SetConfig(cfg *ServerConfig) { s.cfg = cfg }

// Admit checks the 32 header bytes at the start of b against the limits
// and the connection's state, before any of the payload is buffered, and
// returns the header. A DATA header that breaks only a per-packet limit is
// admitted: Handle rejects that packet. An error means the connection must
// end: the ERROR is in the output. b must hold at least frame.HeaderSize
// bytes.
func (s *Server) Admit(b []byte) (frame.Header, error) {
	h, err := frame.ParseHeader(b, &s.cfg.Limits)
	if err != nil {
		if code := frame.CodeOf(err); code.Fatal() {
			return nil, s.violate(code, "%v", err)
		}
		h = frame.Header(b[:frame.HeaderSize])
	}
	if err := s.CheckHeader(h); err != nil {
		return nil, err
	}
	return h, nil
}

// CheckHeader applies the connection state's rules to a header that
// passed frame.ParseHeader: before the handshake only a HELLO is admitted,
// so an unauthenticated peer makes the owner buffer at most 4 KiB
// (frame.MaxControlPayload). For owners whose reader parses headers itself
// (frame.Reader's admit hook).
func (s *Server) CheckHeader(h frame.Header) error {
	switch s.state {
	case srvClosed:
		return ErrClosed
	case srvHandshake:
		if h.Type() != frame.TypeHello {
			return s.violate(frame.CodeBadHandshake, "the first frame must be HELLO, got %s", h.Type())
		}
	}
	return nil
}

// Handle processes one frame whose header passed Admit (or CheckHeader)
// and whose payload passed h.Check. The payload is only read during the
// call. An error means the connection must end: write Flush's output and
// close (see the package doc for the kinds).
func (s *Server) Handle(h frame.Header, payload []byte) (Event, error) {
	switch s.state {
	case srvClosed:
		return EvNone, ErrClosed
	case srvHandshake:
		return s.hello(h, payload)
	}
	switch h.Type() {
	case frame.TypeData:
		seq := h.Seq()
		if err := s.takeSeq(seq); err != nil {
			return EvNone, err
		}
		if err := frame.PacketError(h, &s.cfg.Limits); err != nil {
			s.rejectCode = frame.CodeOf(err)
			s.Reject(seq, s.rejectCode, err.Error())
			return EvRejected, nil
		}
		if s.draining {
			s.Busy(seq, 0)
			return EvBusy, nil
		}
		return EvData, nil
	case frame.TypePing:
		s.out = frame.AppendPong(s.out, h.Seq())
		return EvPing, nil
	case frame.TypePong:
		return EvNone, nil
	case frame.TypeError:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return EvNone, s.violate(frame.CodeProtocol, "malformed ERROR payload")
		}
		if h.Seq() != 0 && !code.Fatal() {
			s.peerCode, s.peerReason = code, reason
			return EvPeerError, nil
		}
		s.state = srvClosed
		return EvNone, &frame.RemoteError{Seq: h.Seq(), Code: code, Reason: string(reason)}
	case frame.TypeHello:
		return EvNone, s.violate(frame.CodeProtocol, "a second HELLO")
	}
	return EvNone, s.violate(frame.CodeProtocol, "%s is not a frame a client sends", h.Type())
}

func (s *Server) hello(h frame.Header, payload []byte) (Event, error) {
	if h.Type() != frame.TypeHello {
		return EvNone, s.violate(frame.CodeBadHandshake, "the first frame must be HELLO, got %s", h.Type())
	}
	var hello frame.Hello
	if err := frame.DecodeHello(payload, &hello); err != nil { // its sequence is ignored (PROTOCOL.md 4)
		return EvNone, s.violate(frame.CodeBadHandshake, "malformed HELLO (it needs an agent id and a window of at least 1)")
	}
	if s.draining {
		return EvNone, s.refuse(frame.CodeShutdown, "server shutting down; connect elsewhere")
	}
	identity := ""
	if auth := s.cfg.Auth; auth != nil {
		id, err := auth(&hello, s.peer)
		if err != nil {
			code := frame.CodeAuth
			var fe *frame.Error
			if errors.As(err, &fe) && fe.Code.Fatal() {
				code = fe.Code
			}
			return EvNone, s.refuse(code, err.Error())
		}
		identity = id
	}
	s.agentID = append(s.agentID[:0], hello.AgentID...)
	if identity == "" {
		identity = s.peer.Identity
	}
	if identity == "" {
		identity = string(hello.AgentID)
	}
	s.identity = identity
	s.window = uint64(min(hello.Window, s.cfg.Window))
	s.gapMax = s.cfg.maxGap() * s.window
	grant := s.cfg.Grant &^ frame.CapDict
	if len(s.cfg.Dicts) > 0 {
		grant |= frame.CapDict
	}
	s.caps = hello.Caps & grant
	s.state = srvReady
	w := frame.Welcome{
		Caps:          s.caps,
		Window:        uint32(s.window),
		MaxFrame:      s.cfg.Limits.MaxFrame,
		IdleTimeoutMs: frame.Millis(s.cfg.IdleTimeout),
		ServerID:      []byte(s.cfg.ServerID),
	}
	if s.caps&frame.CapDict != 0 {
		w.Dicts = s.cfg.Dicts[:min(len(s.cfg.Dicts), frame.MaxDicts)]
	}
	s.out = frame.AppendWelcome(s.out, &w)
	return EvHello, nil
}

// takeSeq applies the sequence, window and gap rules (PROTOCOL.md 11.1)
// to a DATA sequence and makes it the last one received.
func (s *Server) takeSeq(seq uint64) error {
	if seq != s.lastSeq+1 {
		return s.violate(frame.CodeBadSequence, "DATA sequence %d, expected %d", seq, s.lastSeq+1)
	}
	if s.lastSeq-s.wire >= s.window {
		return s.violate(frame.CodeWindowExceeded, "more than %d DATA unresolved (the granted window)", s.window)
	}
	if seq-s.acked > s.gapMax {
		return s.violate(frame.CodeWindowExceeded, "DATA %d more than %d windows ahead of the oldest unresolved one", seq, s.cfg.maxGap())
	}
	s.lastSeq = seq
	s.unresolved++
	s.res.extend(int(seq - s.acked))
	return nil
}

// Accept resolves DATA seq as accepted: the next Flush reports it by the
// cumulative ACK or, to a client granted sack, by a SACK range once it has
// waited SackDelay for the cumulative point. It reports whether seq was
// unresolved (false for a sequence already resolved, not received, or
// after the session closed).
func (s *Server) Accept(seq uint64) bool {
	if !s.resolve(seq, seqAccepted) {
		return false
	}
	s.unreported++
	s.unreportedMin = min(s.unreportedMin, seq)
	s.advance()
	return true
}

// Busy resolves DATA seq as not accepted: BUSY with retry-after ms goes
// in the output now, ahead of the ACK that will cover it.
func (s *Server) Busy(seq uint64, retryAfterMs uint32) bool {
	if !s.resolve(seq, seqTold) {
		return false
	}
	s.out = frame.AppendBusy(s.out, seq, retryAfterMs)
	s.told++
	s.advance()
	return true
}

// Reject resolves DATA seq as rejected for good: ERROR seq with a packet
// code (≥ 0x100) goes in the output now.
func (s *Server) Reject(seq uint64, code frame.Code, reason string) bool {
	if code.Fatal() {
		panic("BUG: session: Reject with connection code " + code.String())
	}
	if !s.resolve(seq, seqTold) {
		return false
	}
	s.out = frame.AppendError(s.out, seq, code, reason)
	s.told++
	s.advance()
	return true
}

// Open reports whether DATA seq was received and is not resolved yet.
func (s *Server) Open(seq uint64) bool {
	return s.state == srvReady && seq > s.acked && seq <= s.lastSeq && *s.res.at(int(seq - s.acked - 1)) == seqOpen
}

func (s *Server) resolve(seq uint64, st uint8) bool {
	if s.state != srvReady || seq <= s.acked || seq > s.lastSeq {
		return false
	}
	p := s.res.at(int(seq - s.acked - 1))
	if *p != seqOpen {
		return false
	}
	*p = st
	s.unresolved--
	return true
}

// advance moves the cumulative point over the resolved sequences at its
// head.
func (s *Server) advance() {
	for s.res.len() > 0 {
		st := *s.res.at(0)
		if st == seqOpen {
			return
		}
		if st == seqAccepted {
			s.passed++
			if s.unreported--; s.unreported == 0 {
				s.timing = false
				s.unreportedMin = ^uint64(0)
			}
		}
		s.res.pop()
		s.acked++
	}
}

// GoAway starts draining: GOAWAY goes in the output (if the handshake is
// done; a HELLO that comes later is refused with ERROR shutdown), and DATA
// that arrives after it is answered BUSY with retry-after 0. DATA
// received before it is still resolved as usual.
func (s *Server) GoAway(code frame.Code, reason string) {
	s.draining = true
	if s.state == srvReady && !s.sentAway {
		s.sentAway = true
		s.out = frame.AppendGoAway(s.out, code, reason)
	}
}

// Fatal ends the session for a reason the owner found (a bad checksum, a
// timeout, a read error): what was accepted is acknowledged, then ERROR
// seq 0 with code goes in the output. A no-op once closed.
func (s *Server) Fatal(code frame.Code, reason string) {
	if s.state == srvClosed {
		return
	}
	if s.state == srvReady && s.acked > s.ackSent {
		s.out = frame.AppendAck(s.out, s.acked)
		s.ackSent = s.acked
		s.acks++
	}
	s.out = frame.AppendError(s.out, 0, code, reason)
	s.state = srvClosed
}

func (s *Server) violate(code frame.Code, format string, args ...any) *Violation {
	v := violation(code, format, args...)
	s.Fatal(code, v.Reason)
	return v
}

func (s *Server) refuse(code frame.Code, reason string) *Refused {
	s.Fatal(code, reason)
	return &Refused{Code: code, Reason: reason}
}

// Flush appends the acknowledgements due and returns everything to write:
// the BUSY and ERROR frames queued, then a SACK if accepted DATA beyond
// the cumulative point has waited SackDelay (each SACK carries the
// cumulative point too), else an ACK if the point moved. now is the
// owner's clock in nanoseconds (any origin; only differences count). The
// returned bytes are valid until the next call on s; the owner writes them
// before that.
func (s *Server) Flush(now int64) []byte {
	if s.state == srvReady {
		if s.unreported > 0 && s.caps&frame.CapSack != 0 {
			if !s.timing {
				s.since, s.timing = now, true
			}
			if d := int64(s.cfg.SackDelay); d == 0 || now-s.since >= d {
				s.appendSacks()
			}
		}
		if s.acked > s.ackSent {
			s.out = frame.AppendAck(s.out, s.acked)
			s.ackSent = s.acked
			s.acks++
		}
		s.wire += s.told + s.passed
		s.told, s.passed = 0, 0
	}
	out := s.out
	s.out = s.out[:0]
	return out
}

// appendSacks reports every accepted sequence after the cumulative point
// in SACK frames, each carrying the point too.
func (s *Server) appendSacks() {
	ranges := s.ranges[:0]
	n := s.res.len()
	i := 0
	if s.unreportedMin > s.acked {
		i = int(s.unreportedMin - s.acked - 1)
	}
	for ; i < n && s.unreported > 0; i++ {
		p := s.res.at(i)
		if *p != seqAccepted {
			continue
		}
		*p = seqTold
		s.unreported--
		s.wire++
		seq := s.acked + 1 + uint64(i)
		if k := len(ranges); k > 0 && ranges[k-1].Last+1 == seq {
			ranges[k-1].Last = seq
			continue
		}
		if len(ranges) == frame.MaxSackRanges {
			s.out = frame.AppendSack(s.out, s.acked, ranges)
			s.acks++
			ranges = ranges[:0]
		}
		ranges = append(ranges, frame.SeqRange{First: seq, Last: seq})
	}
	if s.unreported != 0 {
		panic(fmt.Sprintf("BUG: session: %d accepted sequences not found after the cumulative point", s.unreported))
	}
	s.unreportedMin, s.timing = ^uint64(0), false
	if len(ranges) > 0 {
		s.out = frame.AppendSack(s.out, s.acked, ranges)
		s.ackSent = s.acked
		s.acks++
	}
	s.ranges = ranges[:0]
}

// SackPending reports whether accepted DATA waits for a SACK: flush again
// within SackDelay even if nothing else happens.
func (s *Server) SackPending() bool {
	return s.state == srvReady && s.unreported > 0 && s.caps&frame.CapSack != 0
}

// Ready reports whether the handshake is done and the session not closed.
func (s *Server) Ready() bool { return s.state == srvReady }

// Closed reports whether the session has ended.
func (s *Server) Closed() bool { return s.state == srvClosed }

// Draining reports whether GoAway was called.
func (s *Server) Draining() bool { return s.draining }

// AgentID returns the HELLO's agent id (valid until Reset).
func (s *Server) AgentID() []byte { return s.agentID }

// Identity returns who the connection acts as: what Auth returned, else
// the agent id.
func (s *Server) Identity() string { return s.identity }

// Granted returns the capabilities WELCOME granted.
func (s *Server) Granted() frame.Capabilities { return s.caps }

// Window returns the granted window.
func (s *Server) Window() uint32 { return uint32(s.window) }

// Unresolved returns how many DATA frames await Accept, Busy or Reject.
func (s *Server) Unresolved() int { return int(s.unresolved) }

// LastSeq returns the last DATA sequence received.
func (s *Server) LastSeq() uint64 { return s.lastSeq }

// Acked returns the cumulative point: every DATA up to it is resolved.
func (s *Server) Acked() uint64 { return s.acked }

// Acks returns how many ACK and SACK frames the session has queued.
func (s *Server) Acks() uint64 { return s.acks }

// RejectCode returns the code of the last EvRejected.
func (s *Server) RejectCode() frame.Code { return s.rejectCode }

// PeerError returns the code and reason of the last EvPeerError; the
// reason aliases the frame's payload.
func (s *Server) PeerError() (frame.Code, []byte) { return s.peerCode, s.peerReason }
