package session

// Event is what Handle made of a frame, for the owner to act on.
type Event uint8

const (
	// EvNone: nothing for the owner (a PONG, say).
	EvNone Event = iota
	// EvHello: the handshake succeeded; WELCOME is in the output. AgentID,
	// Identity, Granted and Window now tell the connection's terms.
	EvHello
	// EvData: a DATA frame entered the window; resolve its sequence
	// (h.Seq()) with Accept, Busy or Reject, now or later.
	EvData
	// EvRejected: a DATA frame whose header broke a per-packet limit
	// (PROTOCOL.md 3.1 rules 8-10) was rejected; its ERROR is in the
	// output. RejectCode tells which.
	EvRejected
	// EvBusy: a DATA frame arrived after GOAWAY and was answered BUSY with
	// retry-after 0.
	EvBusy
	// EvPing: a PING was answered with PONG.
	EvPing
	// EvPeerError: the client reported a per-packet ERROR (it has no DATA
	// from us, so this is only logged). PeerError tells what.
	EvPeerError
	// EvWelcome: (clients) the handshake succeeded.
	EvWelcome
	// EvResolved: (clients) items were handed to the Resolver.
	EvResolved
	// EvPong: (clients) a PONG matched an outstanding PING; RTT tells how
	// long it took.
	EvPong
	// EvGoAway: (clients) the server is draining: send no new DATA here.
	EvGoAway
)
