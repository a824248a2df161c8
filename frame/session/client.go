package session

import (
	"slices"
	"time"

	"github.com/logdist/logdist/frame"
)

// ClientConfig is what a Client says in its HELLO. Owners may share one
// among many sessions; it is read by AppendHello and Handle.
type ClientConfig struct {
	// AgentID names the client (1-255 bytes).
	AgentID string
	// Token authenticates it (0-1024 bytes; empty: none).
	Token string
	// Software is free text, e.g. "logsend/0.3.1".
	Software string
	// Offer is the capabilities offered; WELCOME grants a subset.
	Offer frame.Capabilities
	// Window is the most DATA the client wants unresolved at once; WELCOME
	// may grant fewer.
	Window uint32
	// Dicts are the ids of the zstd dictionaries the client can compress
	// with, in order of preference. With at least one, HELLO offers
	// CapDict (whatever Offer says), and Dict picks the first one the
	// server's WELCOME lists.
	Dicts []uint32
}

// Resolver receives the items of DATA frames as the server resolves them,
// each exactly once, during Client.Handle. Its methods must not call the
// session.
type Resolver[T any] interface {
	// Acked: the server accepted the DATA (ACK, or a SACK range).
	Acked(item T)
	// Busy: the server did not accept it; send it again (as new DATA, here
	// or elsewhere) no sooner than retryAfter from now.
	Busy(item T, retryAfter time.Duration)
	// Rejected: the server rejected it for good with a packet code; do
	// not send it again. reason is valid only during the call.
	Rejected(item T, code frame.Code, reason []byte)
}

// maxPingsOut bounds the PINGs awaiting a PONG on one connection.
const maxPingsOut = 16

type clientState uint8

const (
	cliHandshake clientState = iota
	cliReady
	cliClosed
)

// clientLimits admit what a server may send: control frames only. A DATA
// header from a server is refused before its payload is read.
var clientLimits = func() frame.Limits {
	l := frame.DefaultLimits()
	l.MaxFrame = frame.MaxControlPayload
	l.MaxRaw = frame.MaxControlPayload
	return l
}()

// Client is the connecting side of one connection (see the package doc),
// keeping one item of type T for every DATA frame until the server
// resolves it. The zero value is not usable: call Reset.
type Client[T any] struct {
	cfg   *ClientConfig
	res   Resolver[T]
	state clientState
	// draining is set by GOAWAY: no new DATA; close once nothing is
	// unresolved (Done).
	draining bool

	caps     frame.Capabilities
	window   uint64
	maxFrame uint32
	idleMs   uint32
	serverID []byte
	dicts    []uint32 // the WELCOME's dictionary ids, when CapDict was granted
	awayCode frame.Code
	awayWhy  []byte

	seq     uint64 // last DATA sequence sent
	written uint64 // last DATA sequence the owner has handed to the socket
	// items and live hold DATA base … seq, side by side: each one's item
	// and whether it is unresolved. The head is always live (resolved
	// ones at the head are dropped at once). Two rings rather than one of
	// structs: dropping an item then clears one pointer, where clearing a
	// generic struct costs a call (memclrHasPointers) per packet.
	items      ring[T]
	live       ring[bool]
	base       uint64
	unresolved int

	// Heartbeats: pingSent is the last nonce sent, pingDone the last
	// answered or judged; pingTimes the send times of those in between.
	pingSent  uint64
	pingDone  uint64
	pingTimes [maxPingsOut]int64
	lastPing  int64
	lastRx    int64 // the owner's time of the last frame received
	rtt       int64
	pongOf    int64

	ranges []frame.SeqRange
	out    []byte
}

// NewClient returns a session for a new connection.
func NewClient[T any](cfg *ClientConfig, r Resolver[T]) *Client[T] {
	c := &Client[T]{}
	c.Reset(cfg, r)
	return c
}

// Reset makes c a fresh session for a new connection, keeping its
// buffers. The previous connection's unresolved items must have been taken
// (TakeUnresolved) first; they are dropped.
func (c *Client[T]) Reset(cfg *ClientConfig, r Resolver[T]) {
	items, live, ranges, out, sid, dicts := c.items, c.live, c.ranges[:0], c.out[:0], c.serverID[:0], c.dicts[:0]
	items.reset()
	live.reset()
	*c = Client[T]{cfg: cfg, res: r, items: items, live: live, ranges: ranges, out: out, serverID: sid, dicts: dicts}
}

// AppendHello appends the HELLO to dst.
func (c *Client[T]) AppendHello(dst []byte) []byte {
	return frame.AppendHello(dst, &frame.Hello{
		Caps:     c.offer(),
		Window:   max(c.cfg.Window, 1),
		MaxFrame: frame.MaxControlPayload, // a server sends control frames only
		AgentID:  []byte(c.cfg.AgentID),
		Token:    []byte(c.cfg.Token),
		Software: []byte(c.cfg.Software),
	})
}

// offer is the capabilities HELLO offers: CapDict with dictionaries only.
func (c *Client[T]) offer() frame.Capabilities {
	if len(c.cfg.Dicts) > 0 {
		return c.cfg.Offer | frame.CapDict
	}
	return c.cfg.Offer &^ frame.CapDict
}

// Admit checks the 32 header bytes at the start of b: a frame a server may
// send in the session's state, within the control-frame limits, before
// any of its payload is buffered. An error ends the connection: write
// Output, then close.
func (c *Client[T]) Admit(b []byte) (frame.Header, error) {
	h, err := frame.ParseHeader(b, &clientLimits)
	if err != nil {
		code := frame.CodeOf(err)
		if !code.Fatal() {
			code = frame.CodeProtocol // per-packet limits: only DATA has them
		}
		return nil, c.violate(code, "bad frame from the server: %v", err)
	}
	if err := c.CheckHeader(h); err != nil {
		return nil, err
	}
	return h, nil
}

// CheckHeader applies the session state's rules to a header that passed
// frame.ParseHeader (for owners whose reader parses headers itself).
func (c *Client[T]) CheckHeader(h frame.Header) error {
	switch c.state {
	case cliClosed:
		return ErrClosed
	case cliHandshake:
		if t := h.Type(); t != frame.TypeWelcome && t != frame.TypeError {
			return c.violate(frame.CodeBadHandshake, "the server answered HELLO with %s, not WELCOME", t)
		}
		return nil
	}
	switch h.Type() {
	case frame.TypeHello, frame.TypeData:
		return c.violate(frame.CodeProtocol, "a server does not send %s", h.Type())
	case frame.TypeWelcome:
		return c.violate(frame.CodeProtocol, "WELCOME after the handshake")
	case frame.TypeSack:
		if c.caps&frame.CapSack == 0 {
			return c.violate(frame.CodeBadType, "SACK without the sack capability granted")
		}
	}
	return nil
}

// Handle processes one frame whose header passed Admit (or CheckHeader)
// and whose payload passed h.Check; now is the owner's clock in
// nanoseconds. Resolved items go to the Resolver during the call. An
// error ends the connection: write Output and close; take the unresolved
// items with TakeUnresolved to send them again.
func (c *Client[T]) Handle(h frame.Header, payload []byte, now int64) (Event, error) {
	if c.state == cliClosed {
		return EvNone, ErrClosed
	}
	c.lastRx = now
	if c.state == cliHandshake {
		return c.welcome(h, payload)
	}
	switch h.Type() {
	case frame.TypeAck:
		if err := c.checkSeq(h.Seq(), "acknowledged"); err != nil {
			return EvNone, err
		}
		return c.ackTo(h.Seq()), nil
	case frame.TypeSack:
		return c.sack(h.Seq(), payload)
	case frame.TypeBusy:
		ms, err := frame.DecodeBusy(payload)
		if err != nil {
			return EvNone, c.violate(frame.CodeProtocol, "malformed BUSY")
		}
		i, err := c.liveSlot(h.Seq(), "BUSY")
		if err != nil {
			return EvNone, err
		}
		item := c.settle(i)
		c.dropSettled()
		c.res.Busy(item, time.Duration(ms)*time.Millisecond)
		return EvResolved, nil
	case frame.TypeError:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return EvNone, c.violate(frame.CodeProtocol, "malformed ERROR")
		}
		if h.Seq() == 0 || code.Fatal() {
			// A connection code is fatal whatever the sequence (PROTOCOL.md 9).
			c.state = cliClosed
			return EvNone, &frame.RemoteError{Seq: h.Seq(), Code: code, Reason: string(reason)}
		}
		i, err := c.liveSlot(h.Seq(), "ERROR")
		if err != nil {
			return EvNone, err
		}
		item := c.settle(i)
		c.dropSettled()
		c.res.Rejected(item, code, reason)
		return EvResolved, nil
	case frame.TypeGoAway:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return EvNone, c.violate(frame.CodeProtocol, "malformed GOAWAY")
		}
		c.draining = true
		c.awayCode, c.awayWhy = code, append(c.awayWhy[:0], reason...)
		return EvGoAway, nil
	case frame.TypePing:
		c.out = frame.AppendPong(c.out, h.Seq())
		return EvPing, nil
	case frame.TypePong:
		if n := h.Seq(); n > c.pingDone && n <= c.pingSent {
			c.pongOf = c.pingTimes[n%maxPingsOut]
			c.rtt = now - c.pongOf
			c.pingDone = n
			return EvPong, nil
		}
		return EvNone, nil
	}
	return EvNone, c.violate(frame.CodeProtocol, "unexpected %s from the server", h.Type())
}

func (c *Client[T]) welcome(h frame.Header, payload []byte) (Event, error) {
	switch h.Type() {
	case frame.TypeWelcome:
	case frame.TypeError:
		code, reason, err := frame.DecodeReason(payload)
		if err != nil {
			return EvNone, c.violate(frame.CodeProtocol, "malformed ERROR in the handshake")
		}
		c.state = cliClosed
		return EvNone, &Refused{Code: code, Reason: string(reason)}
	default:
		return EvNone, c.violate(frame.CodeBadHandshake, "the server answered HELLO with %s, not WELCOME", h.Type())
	}
	w := frame.Welcome{Dicts: c.dicts[:0]}
	if err := frame.DecodeWelcome(payload, &w); err != nil {
		return EvNone, c.violate(frame.CodeBadHandshake, "malformed WELCOME")
	}
	c.caps = w.Caps & c.offer()
	if c.caps&frame.CapDict != 0 {
		c.dicts = w.Dicts
	}
	c.window = uint64(min(w.Window, max(c.cfg.Window, 1)))
	c.maxFrame = w.MaxFrame
	c.idleMs = w.IdleTimeoutMs
	c.serverID = append(c.serverID[:0], w.ServerID...)
	c.state = cliReady
	return EvWelcome, nil
}

// checkSeq refuses an answer for a sequence not yet written.
func (c *Client[T]) checkSeq(seq uint64, what string) error {
	if seq > c.written {
		return c.violate(frame.CodeProtocol, "the server %s sequence %d; only %d were sent", what, seq, c.written)
	}
	return nil
}

// ackTo accepts every unresolved DATA up to seq.
func (c *Client[T]) ackTo(seq uint64) Event {
	ev := EvNone
	for c.items.len() > 0 && c.base <= seq {
		item, live := c.pop()
		if live {
			c.unresolved--
			c.res.Acked(item)
			ev = EvResolved
		}
	}
	c.dropSettled()
	return ev
}

func (c *Client[T]) sack(cum uint64, payload []byte) (Event, error) {
	ranges, err := frame.DecodeSack(payload, cum, c.ranges[:0])
	c.ranges = ranges[:0]
	if err != nil {
		return EvNone, c.violate(frame.CodeProtocol, "malformed SACK: %v", err)
	}
	if err := c.checkSeq(cum, "acknowledged"); err != nil {
		return EvNone, err
	}
	if err := c.checkSeq(ranges[len(ranges)-1].Last, "acknowledged"); err != nil {
		return EvNone, err
	}
	ev := c.ackTo(cum)
	for _, r := range ranges {
		if c.items.len() == 0 {
			break
		}
		// Only where packets are: below base everything is resolved, and
		// nothing was sent after seq (a hostile 1..2^40 costs nothing).
		first, last := max(r.First, c.base), min(r.Last, c.seq)
		for q := first; q <= last; q++ {
			if i := int(q - c.base); *c.live.at(i) {
				c.res.Acked(c.settle(i))
				ev = EvResolved
			}
		}
	}
	c.dropSettled()
	return ev, nil
}

// liveSlot returns the index of DATA seq if it is unresolved, or a
// violation: BUSY and ERROR name a DATA in flight (PROTOCOL.md 4.4).
func (c *Client[T]) liveSlot(seq uint64, what string) (int, error) {
	if err := c.checkSeq(seq, "answered "+what+" to"); err != nil {
		return 0, err
	}
	if seq >= c.base && seq-c.base < uint64(c.items.len()) {
		if i := int(seq - c.base); *c.live.at(i) {
			return i, nil
		}
	}
	return 0, c.violate(frame.CodeProtocol, "%s for sequence %d, which is not in flight", what, seq)
}

// settle resolves the live DATA at index i out of order and returns its
// item, for the Resolver; the caller then drops the settled ones at the
// head.
func (c *Client[T]) settle(i int) T {
	var zero T
	p := c.items.at(i)
	item := *p
	*p = zero
	*c.live.at(i) = false
	c.unresolved--
	return item
}

// pop removes the oldest tracked DATA and returns its item and whether
// it was unresolved.
func (c *Client[T]) pop() (T, bool) {
	c.base++
	return c.items.pop(), c.live.pop()
}

// dropSettled drops resolved slots at the head: the gap is measured from
// the oldest unresolved DATA (PROTOCOL.md 11.1), and a server need not
// move its cumulative point past a BUSY.
func (c *Client[T]) dropSettled() {
	for c.items.len() > 0 && !*c.live.at(0) {
		c.pop()
	}
}

// CanSend reports whether a DATA may be sent now: the handshake is done,
// no GOAWAY came, the window has room, and the newest DATA would stay
// within frame.SeqGapWindows windows of the oldest unresolved one.
func (c *Client[T]) CanSend() bool {
	if c.state != cliReady || c.draining || uint64(c.unresolved) >= c.window {
		return false
	}
	return c.items.len() == 0 || c.seq+1-c.base < frame.SeqGapWindows*c.window
}

// Send numbers a DATA frame and keeps item until it is resolved. If f is
// not nil it is the frame, whose header's sequence is set. It returns the
// sequence. Call it only when CanSend.
func (c *Client[T]) Send(item T, f []byte) uint64 {
	if !c.CanSend() {
		panic("BUG: session: Send while CanSend is false")
	}
	c.seq++
	if f != nil {
		frame.Header(f[:frame.HeaderSize]).SetSeq(c.seq)
	}
	if c.items.len() == 0 {
		c.base = c.seq
	}
	c.items.push(item)
	c.live.push(true)
	c.unresolved++
	return c.seq
}

// MarkWritten tells the session that every DATA sent so far has been
// handed to the socket (or committed to be written before anything else
// is read): an answer for a later sequence is a violation. An owner that
// frees an item's bytes when it is resolved calls it only once they are
// written, so a lying server cannot make it free bytes still queued.
func (c *Client[T]) MarkWritten() { c.written = c.seq }

// Fatal ends the session for a reason the owner found: ERROR seq 0 with
// code goes in the output. A no-op once closed.
func (c *Client[T]) Fatal(code frame.Code, reason string) {
	if c.state == cliClosed {
		return
	}
	c.out = frame.AppendError(c.out, 0, code, reason)
	c.state = cliClosed
}

func (c *Client[T]) violate(code frame.Code, format string, args ...any) *Violation {
	v := violation(code, format, args...)
	c.Fatal(code, v.Reason)
	return v
}

// Close marks the session ended without a word (the connection is gone).
func (c *Client[T]) Close() { c.state = cliClosed }

// TakeUnresolved calls fn with every unresolved item, oldest first, and
// forgets them: the connection is gone and they are to be sent again.
func (c *Client[T]) TakeUnresolved(fn func(T)) {
	for c.items.len() > 0 {
		if item, live := c.pop(); live {
			fn(item)
		}
	}
	c.unresolved = 0
}

// Output returns the frames the session queued (PONG, PING, ERROR) and
// empties the queue; the bytes are valid until the next call on c.
func (c *Client[T]) Output() []byte {
	out := c.out
	c.out = c.out[:0]
	return out
}

// HasOutput reports whether Output has something to write.
func (c *Client[T]) HasOutput() bool { return len(c.out) > 0 }

// Ready reports whether the handshake is done and the session not closed.
func (c *Client[T]) Ready() bool { return c.state == cliReady }

// Closed reports whether the session has ended.
func (c *Client[T]) Closed() bool { return c.state == cliClosed }

// Draining reports whether the server sent GOAWAY.
func (c *Client[T]) Draining() bool { return c.draining }

// GoAway returns the GOAWAY's code and reason (valid until Reset).
func (c *Client[T]) GoAway() (frame.Code, []byte) { return c.awayCode, c.awayWhy }

// Done reports whether a draining session has nothing left unresolved:
// close it.
func (c *Client[T]) Done() bool { return c.draining && c.unresolved == 0 }

// Granted returns the capabilities WELCOME granted.
func (c *Client[T]) Granted() frame.Capabilities { return c.caps }

// Dicts returns the dictionary ids the server's WELCOME listed (none
// unless CapDict was granted); valid until Reset.
func (c *Client[T]) Dicts() []uint32 { return c.dicts }

// AcceptsDict reports whether the server listed dictionary id: a payload
// compressed with it may be sent on this connection.
func (c *Client[T]) AcceptsDict(id uint32) bool { return slices.Contains(c.dicts, id) }

// Dict returns the first of the client's dictionaries (ClientConfig.Dicts)
// that the server listed, or 0: compress without one.
func (c *Client[T]) Dict() uint32 {
	for _, id := range c.cfg.Dicts {
		if c.AcceptsDict(id) {
			return id
		}
	}
	return 0
}

// Window returns the window: min(asked, granted).
func (c *Client[T]) Window() int { return int(c.window) }

// MaxFrame returns the largest DATA payload the server accepts.
func (c *Client[T]) MaxFrame() uint32 { return c.maxFrame }

// IdleTimeout returns the server's idle timeout (0: none).
func (c *Client[T]) IdleTimeout() time.Duration {
	return time.Duration(c.idleMs) * time.Millisecond
}

// ServerID returns the WELCOME's server id (valid until Reset).
func (c *Client[T]) ServerID() []byte { return c.serverID }

// Unresolved returns how many DATA frames await their resolution.
func (c *Client[T]) Unresolved() int { return c.unresolved }

// Seq returns the last DATA sequence sent.
func (c *Client[T]) Seq() uint64 { return c.seq }

// Oldest returns the item of the oldest unresolved DATA.
func (c *Client[T]) Oldest() (T, bool) {
	if c.items.len() == 0 {
		var zero T
		return zero, false
	}
	return *c.items.at(0), true
}

// Peek returns the item of the i-th DATA in flight counting from the
// oldest unresolved one, and whether it is unresolved, for owners that
// want to touch items before a large ACK resolves them (i < InFlight()).
func (c *Client[T]) Peek(i int) (T, bool) {
	return *c.items.at(i), *c.live.at(i)
}

// InFlight returns how many sequences are tracked from the oldest
// unresolved one to the last sent (resolved ones in between included).
func (c *Client[T]) InFlight() int { return c.items.len() }

// Covers returns how many tracked sequences an ACK for seq would settle.
func (c *Client[T]) Covers(seq uint64) int {
	if c.items.len() == 0 || seq < c.base {
		return 0
	}
	return int(min(seq-c.base+1, uint64(c.items.len())))
}
