package proxy

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
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
// our own listener reach every loop (--allow lets them in: bindOwnDial). A
// failure here is harmless: a loop
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
	d := net.Dialer{Timeout: time.Second}
	if ta, ok := dial.(*net.TCPAddr); ok {
		d.Control = s.bindOwnDial(ta.IP)
	}
	defer s.ownPorts.Clear()
	for i := 0; i < 4*want && s.loopCount() < want; i++ {
		n0 := s.accepted.Load()
		c, err := d.Dial(dial.Network(), dial.String())
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

// bindOwnDial binds a discovery dial's socket to ip and a port the kernel
// picks, and records the port before the connect, so that openAgent knows
// the connection as ours however fast a loop opens it: --allow lets in
// exactly these connections, not every local peer.
func (s *Server) bindOwnDial(ip net.IP) func(network, address string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			var sa unix.Sockaddr
			if ip4 := ip.To4(); ip4 != nil {
				sa = &unix.SockaddrInet4{Addr: [4]byte(ip4)}
			} else {
				sa6 := &unix.SockaddrInet6{}
				copy(sa6.Addr[:], ip.To16())
				sa = sa6
			}
			if err = unix.Bind(int(fd), sa); err != nil {
				return
			}
			var got unix.Sockaddr
			if got, err = unix.Getsockname(int(fd)); err != nil {
				return
			}
			switch g := got.(type) {
			case *unix.SockaddrInet4:
				s.ownPorts.Store(g.Port, struct{}{})
			case *unix.SockaddrInet6:
				s.ownPorts.Store(g.Port, struct{}{})
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}
}
