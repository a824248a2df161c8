package proxy

import (
	"net"
	"net/netip"

	"github.com/VictoriaMetrics/metrics"
)

// Listeners, the values of logdist_allow_refused_total's listener label.
const (
	listenerAgent     = "agent"
	listenerAgentTLS  = "agent_tls"
	listenerSyslogUDP = "syslog_udp"
	listenerSyslogTCP = "syslog_tcp"
	listenerSyslogTLS = "syslog_tls"
)

// allows reports whether Config.Allow lets ip in: an empty list allows
// every peer. A connection without an address (a Unix socket) is local
// and allowed. The list is short and scanned in order: no allocation, no
// lock, so it runs per datagram too.
func (st *settings) allows(ip netip.Addr) bool {
	if len(st.Allow) == 0 || !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("") // fe80::1%eth0 is matched as fe80::1
	for _, p := range st.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ownDial reports whether a connection from peer is one of
// discoverLoops' to our own listener, which --allow must not refuse.
func (s *Server) ownDial(peer net.Addr) bool {
	ta, ok := peer.(*net.TCPAddr)
	if !ok {
		return false
	}
	_, own := s.ownPorts.Load(ta.Port)
	return own
}

// allowsConn is allows for an accepted connection's peer.
func (st *settings) allowsConn(nc net.Conn) bool {
	if len(st.Allow) == 0 {
		return true
	}
	return st.allows(addrOf(nc.RemoteAddr()))
}

// addrOf is the IP of a TCP or UDP address (unmapped), or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// allowRefused counts the peers each listener turned away (Config.Allow).
type allowRefused struct {
	agent, agentTLS, syslogUDP, syslogTCP, syslogTLS *metrics.Counter
}

func newAllowRefused(set *metrics.Set) allowRefused {
	c := func(l string) *metrics.Counter {
		return set.GetOrCreateCounter(`logdist_allow_refused_total{listener="` + l + `"}`)
	}
	return allowRefused{
		agent: c(listenerAgent), agentTLS: c(listenerAgentTLS),
		syslogUDP: c(listenerSyslogUDP), syslogTCP: c(listenerSyslogTCP), syslogTLS: c(listenerSyslogTLS),
	}
}
