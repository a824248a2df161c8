package proxy

import (
	"github.com/logdist/logdist/frame/session"
	"github.com/panjf2000/gnet/v2"
)

// handler routes gnet's callbacks. Agent connections carry an *agentConn
// as their context, upstream connections an *upstream (set before OnOpen
// through the Enroll context), agents bridged in from the transport
// listener a *bridgedAgent until OnOpen replaces it. A loop-native TLS
// connection's socket carries its *tlsConn, which routes the callbacks
// again with itself as the connection (and one of the above as its
// context).
//
// The same type serves both engines: udp marks the syslog engine, whose
// context-less traffic is datagrams.
type handler struct {
	gnet.BuiltinEventEngine
	s      *Server
	udp    bool
	booted chan struct{}
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	if h.udp {
		h.s.udp.eng = eng
	} else {
		h.s.eng = eng
	}
	close(h.booted)
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch x := c.Context().(type) {
	case *tlsConn: // loop-native TLS: the connection inside sees x
		return x.open(c, h)
	case *upstream:
		return x.onOpen(c)
	case *bridgedAgent:
		return h.s.loopFor(c.EventLoop(), false).openAgent(c, session.Peer{Addr: x.remote, Identity: x.identity})
	}
	if h.udp {
		return nil, gnet.None
	}
	lp := h.s.loopFor(c.EventLoop(), false)
	h.s.accepted.Add(1)
	return lp.openAgent(c, session.Peer{Addr: c.RemoteAddr()})
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *tlsConn:
		return x.traffic(h)
	case *agentConn:
		return x.onTraffic(c)
	case *upstream:
		return x.onTraffic(c)
	}
	if h.udp {
		h.s.loopFast(c.EventLoop()).onDatagram(c)
		return gnet.None
	}
	panic("BUG: proxy: traffic on a connection with no context")
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *tlsConn:
		x.closing(err, h)
	case *agentConn:
		x.onClose(err)
	case *upstream:
		if x.c == c {
			x.onClose(err)
		}
	}
	return gnet.None
}
