package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/syslog"
)

// UDP syslog ingest.
//
// Datagrams arrive on a second gnet engine (UDP forces SO_REUSEPORT and
// level-triggered mode, which the agent engine should not inherit). Each of
// its event loops is a loop like the agent loops — its own upstream
// connections, cursor and queue — so a syslog packet travels exactly like
// an agent packet. A loop parses each datagram, appends it to the open
// batch of its sender's IP address, and closes a batch into a DATA packet
// by count, by size or by age (SyslogLinger). The packet's agent id is
// "syslog/<sender IP>". UDP senders get no acks: a packet that cannot be
// queued is dropped and counted, and the kernel's own drops on the socket
// are exported from /proc/net/udp.

// maxDatagram is the read buffer: larger than any UDP payload (65,507
// bytes over IPv4), so a datagram is never cut short by logdist.
const maxDatagram = 64 << 10

// syslogIngest is one loop's syslog state. Only that loop touches it.
type syslogIngest struct {
	parser  *syslog.Parser
	msg     syslog.Message
	fm      frame.Message
	batches map[netip.Addr]*syslogBatch
	free    []*syslogBatch
	nextID  uint64
	enc     frame.Encoder
}

type syslogBatch struct {
	addr    netip.Addr
	agentID []byte
	opened  int64
	b       frame.PacketBuilder
}

func newSyslogIngest(s *Server) *syslogIngest {
	si := &syslogIngest{
		parser:  syslog.NewParser(syslog.Config{}),
		batches: map[netip.Addr]*syslogBatch{},
		nextID:  uint64(time.Now().UnixNano()),
	}
	si.enc.Level = zstd.SpeedFastest
	return si
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
	var addr netip.Addr
	if ua, ok := c.RemoteAddr().(*net.UDPAddr); ok {
		addr = ua.AddrPort().Addr().Unmap()
	}
	lp.ingestSyslog(data, addr)
	lp.requestFlush()
}

// ingestSyslog parses one syslog message (a datagram, or one RFC 6587
// frame from a TCP stream) and appends it to its sender's batch. data is
// only read during the call.
func (lp *loop) ingestSyslog(data []byte, addr netip.Addr) {
	s := lp.s
	si := lp.syslog
	m := lp.m
	format := si.parser.Parse(data, &si.msg)
	m.syslogFormat[format].Inc()
	fm := &si.fm
	sm := &si.msg
	fm.Timestamp = sm.Timestamp
	if fm.Timestamp == 0 {
		fm.Timestamp = lp.wallNow()
	}
	fm.Severity, fm.Facility = frame.Severity(sm.Severity), sm.Facility
	lim := &s.cfg.Limits
	fm.Hostname = clipField(sm.Hostname, int(lim.MaxField))
	fm.App = clipField(sm.App, int(lim.MaxField))
	fm.Body = sm.Body
	if len(fm.Body) > int(lim.MaxBody) {
		fm.Body = fm.Body[:lim.MaxBody]
		m.syslogClipped.Inc()
	}
	fm.Attrs = sm.Attrs
	if len(fm.Attrs) > int(lim.MaxAttrs) {
		fm.Attrs = fm.Attrs[:lim.MaxAttrs]
		m.syslogClipped.Inc()
	}
	for i := range fm.Attrs {
		a := &fm.Attrs[i]
		a.Key = clipField(a.Key, int(lim.MaxField))
		if len(a.Value) > int(lim.MaxBody) {
			a.Value = a.Value[:lim.MaxBody]
		}
	}

	b := si.batches[addr]
	size := frame.MessageSize(fm)
	if b != nil && b.b.Len()+size > s.cfg.SyslogBatchBytes {
		lp.sealBatch(b)
		b = nil
	}
	if b == nil {
		b = lp.openBatch(addr)
	}
	b.b.Add(fm)
	if int(b.b.Count()) >= s.cfg.SyslogBatchMessages {
		lp.sealBatch(b)
	}
}

func (lp *loop) openBatch(addr netip.Addr) *syslogBatch {
	si := lp.syslog
	if len(si.batches) >= lp.s.cfg.SyslogMaxSenders {
		// Too many senders with open batches: close the oldest.
		var oldest *syslogBatch
		for _, b := range si.batches {
			if oldest == nil || b.opened < oldest.opened {
				oldest = b
			}
		}
		lp.sealBatch(oldest)
	}
	var b *syslogBatch
	if n := len(si.free); n > 0 {
		b = si.free[n-1]
		si.free = si.free[:n-1]
	} else {
		b = &syslogBatch{}
	}
	if b.addr != addr || b.agentID == nil {
		b.addr = addr
		b.agentID = []byte("syslog/" + addr.String())
	}
	b.opened = lp.now
	si.nextID++
	b.b.Reset(si.nextID, b.agentID, nil)
	si.batches[addr] = b
	if !lp.batchesOpen.Load() {
		lp.batchesOpen.Store(true)
		select {
		case lp.s.batchWake <- struct{}{}:
		default: // the ticker is being woken already
		}
	}
	return b
}

// sealBatch turns an open batch into a DATA packet and dispatches it.
func (lp *loop) sealBatch(b *syslogBatch) {
	si := lp.syslog
	delete(si.batches, b.addr)
	if len(si.batches) == 0 {
		lp.batchesOpen.Store(false)
	}
	if len(si.free) < 1024 {
		si.free = append(si.free, b)
	}
	count := b.b.Count()
	if count == 0 {
		return
	}
	raw := b.b.Raw()
	r := lp.newRecord(nil, nil, 0, count)
	if lp.s.cfg.SyslogCompress {
		r.own = si.enc.AppendCompressed(r.own[:0], 1, count, raw)
	} else {
		n := uint32(len(raw))
		r.own = frame.AppendHeader(r.own[:0], frame.TypeData, 0, 1, count, n, n, frame.Checksum(raw))
		r.own = append(r.own, raw...)
	}
	r.buf = r.own
	r.syslog = true
	lp.m.syslogBatches.Inc()
	lp.m.syslogMessages.Add(int(count))
	lp.dispatch(r)
}

// sealOld closes batches open longer than the linger time (and all of them
// with all set, at shutdown).
func (lp *loop) sealOld(now int64, all bool) {
	if lp.syslog == nil {
		return
	}
	linger := int64(lp.s.cfg.SyslogLinger)
	for _, b := range lp.syslog.batches {
		if all || now-b.opened >= linger {
			lp.sealBatch(b)
		}
	}
}

func clipField(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// startSyslogUDP runs the UDP engine and waits until it is bound.
func (s *Server) startSyslogUDP() error {
	// With SO_REUSEPORT each loop binds its own socket: port 0 would give
	// each a different port. Pick one free port for all.
	ra, err := reservePort("udp", s.cfg.SyslogUDP)
	if err != nil {
		return fmt.Errorf("proxy: cannot listen for syslog on udp %s: %w", s.cfg.SyslogUDP, err)
	}
	addr := ra.String()
	h := &handler{s: s, udp: true, booted: make(chan struct{})}
	go func() {
		err := gnet.Run(h, "udp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.loops()),
			gnet.WithReusePort(true),
			gnet.WithReadBufferCap(maxDatagram),
			gnet.WithSocketRecvBuffer(s.cfg.SyslogRecvBuffer),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		s.udpErr <- err
	}()
	select {
	case <-h.booted:
	case err := <-s.udpErr:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("proxy: cannot listen for syslog on udp %s: %w", addr, err)
	}
	ua := ra.(*net.UDPAddr)
	s.udpAddr = ua
	s.mset.GetOrCreateGauge("logdist_syslog_kernel_drops_total", s.kernelDrops)
	s.log.Info("listening for syslog", "addr", "udp://"+ua.String())
	return nil
}

// SyslogAddr returns the UDP syslog address, or nil when disabled.
func (s *Server) SyslogAddr() net.Addr {
	if s.udpAddr == nil {
		return nil
	}
	return s.udpAddr
}

// kernelDrops sums the kernel's drop counters of the UDP sockets bound to
// the syslog port, from /proc/net/udp and /proc/net/udp6 (Linux; 0
// elsewhere).
func (s *Server) kernelDrops() float64 {
	if s.udpAddr == nil {
		return 0
	}
	port := strings.ToUpper(strconv.FormatInt(int64(s.udpAddr.Port), 16))
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

// flushSyslog seals every open batch on every syslog loop (at shutdown,
// before the drain).
func (s *Server) flushSyslog() {
	loops := s.snapshotLoops()
	done := make(chan struct{}, len(loops))
	n := 0
	for _, lp := range loops {
		n++
		err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if lp.syslog != nil { // read on the loop: TCP syslog sets it there
				lp.clock()
				lp.sealOld(lp.now, true)
				lp.flush()
			}
			done <- struct{}{}
			return nil
		}))
		if err != nil {
			n--
		}
	}
	for ; n > 0; n-- {
		select {
		case <-done:
		case <-time.After(time.Second):
			return
		}
	}
}
