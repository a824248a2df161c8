package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/panjf2000/gnet/v2"
)

// UDP syslog ingest. Datagrams arrive on a second gnet engine (UDP forces
// SO_REUSEPORT and level-triggered mode, which the agent engine should not
// inherit). Each of its event loops is a loop like the agent loops — its
// own upstream connections, cursor and ledger — with a syslog ingest. The
// kernel's own drops on the socket are exported from /proc/net/udp.

// maxDatagram is the read buffer: larger than any UDP payload (65,507
// bytes over IPv4), so a datagram is never cut short by logdist.
const maxDatagram = 64 << 10

// syslogUDP is the UDP syslog engine.
type syslogUDP struct {
	eng   gnet.Engine
	addr  *net.UDPAddr
	runEr chan error
}

// startSyslogUDP claims the port (refusing one another process holds),
// runs the UDP engine and waits until it is bound.
func startSyslogUDP(s *Server, conf *settings) (*syslogUDP, error) {
	// With SO_REUSEPORT each loop binds its own socket: port 0 would give
	// each a different port. Pick one free port for all.
	ua, err := claimUDPPort(conf.SyslogUDP)
	if err != nil {
		return nil, fmt.Errorf("proxy: cannot listen for syslog on udp %s: %w", conf.SyslogUDP, err)
	}
	u := &syslogUDP{addr: ua, runEr: make(chan error, 1)}
	s.udp = u // OnBoot sets u.eng
	h := &handler{s: s, udp: true, booted: make(chan struct{})}
	go func() {
		u.runEr <- gnet.Run(h, "udp://"+ua.String(),
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(conf.loops()),
			gnet.WithReusePort(true),
			gnet.WithReadBufferCap(maxDatagram),
			gnet.WithSocketRecvBuffer(conf.SyslogRecvBuffer),
			gnet.WithLogger(gnetLogger{s.syslogLog}),
		)
	}()
	select {
	case <-h.booted:
	case err := <-u.runEr:
		s.udp = nil
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return nil, fmt.Errorf("proxy: cannot listen for syslog on udp %s: %w", ua, err)
	}
	s.mset.GetOrCreateGauge("logdist_syslog_kernel_drops_total", u.kernelDrops)
	s.syslogLog.Info("listening for syslog", "addr", "udp://"+ua.String())
	return u, nil
}

func (u *syslogUDP) stop() error {
	err := u.eng.Stop(context.Background())
	if rerr := <-u.runEr; rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// SyslogAddr returns the UDP syslog address, or nil when disabled.
func (s *Server) SyslogAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.addr
}

// onDatagram handles one datagram on loop lp.
func (lp *loop) onDatagram(c gnet.Conn) {
	data, _ := c.Next(-1)
	m := lp.m
	m.syslogDatagrams.Inc()
	m.syslogBytes.Add(len(data))
	if len(data) >= maxDatagram {
		m.syslogTruncated.Inc()
	}
	if len(data) == 0 {
		m.syslogEmpty.Inc()
		return
	}
	if lp.s.draining.Load() {
		m.syslogShutdownDropped.Inc() // see Server.stop
		return
	}
	addr := addrOf(c.RemoteAddr())
	if !lp.conf.allows(addr) {
		lp.s.allowRefused.syslogUDP.Inc()
		return
	}
	lp.ingestSyslog(data, addr)
	lp.requestFlush()
}

// kernelDrops sums the kernel's drop counters of the UDP sockets bound to
// the syslog port, from /proc/net/udp and /proc/net/udp6 (Linux; 0
// elsewhere).
func (u *syslogUDP) kernelDrops() float64 {
	port := strings.ToUpper(strconv.FormatInt(int64(u.addr.Port), 16))
	for len(port) < 4 {
		port = "0" + port
	}
	var total float64
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... drops (last field)
			if len(fields) < 13 || !strings.HasSuffix(fields[1], ":"+port) {
				continue
			}
			if d, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				total += d
			}
		}
		f.Close()
	}
	return total
}
