package proxy

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// listenerAddr reads the bound address from a duplicate of the listener's
// socket (gnet does not expose it; with port 0 it is the only way to learn
// the port).
func listenerAddr(eng gnet.Engine, network, addr string) (net.Addr, error) {
	fd, err := eng.DupListener(network, addr)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	case *syscall.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}, nil
	}
	return nil, fmt.Errorf("unexpected socket address %T", sa)
}

// claimUDPPort checks that no other socket holds the UDP port of addr and
// returns the address with the port the kernel picked if it was 0. It
// binds the port without SO_REUSEPORT, which the kernel refuses while any
// socket holds it: another logdist (same user) would otherwise join the
// port's SO_REUSEPORT group and silently take part of the datagrams. The
// probe socket is closed before the loops bind theirs.
func claimUDPPort(addr string) (*net.UDPAddr, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w (is another logdist or syslog daemon using it? two processes on one UDP port split its datagrams between them)", err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
}

// discoverLoops makes sure every event loop has its upstream connections
// (and so heartbeats and health) before the first agent arrives. gnet hands
// out loops only through connections, and its round-robin balancer gives
// consecutive connections consecutive loops, so a few short connections to
// our own listener reach every loop (--allow lets them in: they come from
// this host, see openAgent). A failure here is harmless: a loop
// also sets itself up when its first agent connects.
func (s *Server) discoverLoops() {
	var dial net.Addr = s.addr
	if addr, ok := s.addr.(*net.TCPAddr); ok {
		d := &net.TCPAddr{IP: addr.IP, Port: addr.Port}
		if d.IP == nil || d.IP.IsUnspecified() {
			d.IP = net.IPv4(127, 0, 0, 1)
		}
		dial = d
	}
	want := s.conf.Load().loops()
	s.discovering.Store(true)
	defer s.discovering.Store(false)
	for i := 0; i < 4*want && s.loopCount() < want; i++ {
		n0 := s.accepted.Load()
		c, err := net.DialTimeout(dial.Network(), dial.String(), time.Second)
		if err != nil {
			s.log.Debug("loop discovery: cannot dial own listener; loops will set up on first agent", "addr", dial.String(), "err", err)
			return
		}
		// Wait until gnet has opened it on a loop, then close it.
		deadline := time.Now().Add(time.Second)
		for s.accepted.Load() == n0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_ = c.Close()
	}
}
