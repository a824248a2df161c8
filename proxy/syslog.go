package proxy

import (
	"context"
	"net/netip"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/syslog"
)

// Syslog batching, shared by UDP datagrams (syslogudp.go) and TCP streams
// (syslogtcp.go). A loop parses each message, appends it to the open batch
// of its sender's IP address, and closes a batch into a DATA packet by
// count, by size or by age (SyslogLinger). The packet's agent id is
// "syslog/<sender IP>", and it travels exactly like an agent packet. Syslog
// senders get no acks: a UDP packet that cannot be queued is dropped and
// counted; a TCP stream is not read while the queue is full.

// syslogIngest is one loop's syslog state. Only that loop touches it.
type syslogIngest struct {
	udp     bool // a loop of the UDP engine
	parser  *syslog.Parser
	msg     syslog.Message
	fm      frame.Message
	batches map[netip.Addr]*syslogBatch
	// oldest and newest are the ends of the open batches' list, by the
	// time they opened: the oldest closes first when too many are open.
	oldest, newest *syslogBatch
	free           []*syslogBatch
	nextID         uint64
	enc            frame.Encoder
	redBuf         []byte // the redacted text of the message being batched
}

type syslogBatch struct {
	addr       netip.Addr
	agentID    []byte
	opened     int64
	prev, next *syslogBatch // in the open list
	b          frame.PacketBuilder
}

// initSyslog gives the loop its syslog state, the first time it takes a
// syslog message.
func (lp *loop) initSyslog() {
	if lp.syslog != nil {
		return
	}
	si := &syslogIngest{
		parser:  syslog.NewParser(syslog.Config{}),
		batches: map[netip.Addr]*syslogBatch{},
		nextID:  uint64(time.Now().UnixNano()),
	}
	si.enc.Level = zstd.SpeedFastest
	lp.syslog = si
	// Syslog loops keep record buffers up to their batch size, which they
	// fill every time.
	lp.led.maxBuf = max(lp.led.maxBuf, lp.conf.SyslogBatchBytes+frame.HeaderSize+64)
}

// ingestSyslog parses one syslog message (a datagram, or one RFC 6587
// frame from a TCP stream) and appends it to its sender's batch. data is
// only read during the call.
func (lp *loop) ingestSyslog(data []byte, addr netip.Addr) {
	conf := lp.conf
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
	lim := &conf.Limits
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
	if rd := conf.Redactor; rd != nil {
		si.redBuf = si.redBuf[:0]
		if k := rd.Message(fm, &si.redBuf, lim); k > 0 {
			m.redactedMessages.Add(k)
		}
	}

	b := si.batches[addr]
	size := frame.MessageSize(fm)
	if b != nil && b.b.Len()+size > conf.SyslogBatchBytes {
		lp.sealBatch(b)
		b = nil
	}
	if b == nil {
		b = lp.openBatch(addr)
	}
	b.b.Add(fm)
	if int(b.b.Count()) >= conf.SyslogBatchMessages {
		lp.sealBatch(b)
	}
}

// openBatch opens a batch for addr, closing the oldest first if
// SyslogMaxSenders are open: O(1), as spoofed sources can make every
// datagram a new sender.
func (lp *loop) openBatch(addr netip.Addr) *syslogBatch {
	si := lp.syslog
	if len(si.batches) >= lp.conf.SyslogMaxSenders {
		lp.sealBatch(si.oldest)
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
	b.prev, b.next = si.newest, nil
	if si.newest != nil {
		si.newest.next = b
	} else {
		si.oldest = b
	}
	si.newest = b
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
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		si.oldest = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		si.newest = b.prev
	}
	b.prev, b.next = nil, nil
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
	if lp.conf.SyslogCompress {
		si.enc.FastDecode = lp.conf.FastDecode // it reloads
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
	lp.ingest(r)
}

// sealOld closes batches open longer than the linger time (and all of them
// with all set, at shutdown). The list is in opening order: it stops at
// the first batch young enough.
func (lp *loop) sealOld(now int64, all bool) {
	if lp.syslog == nil {
		return
	}
	linger := int64(lp.conf.SyslogLinger)
	for b := lp.syslog.oldest; b != nil; b = lp.syslog.oldest {
		if !all && now-b.opened < linger {
			return
		}
		lp.sealBatch(b)
	}
}

// syslogQueueFull reports whether the wait queue has no room left for one
// more syslog batch: TCP syslog is not read past it. With a spool that
// is not full, batches spill to it: TCP syslog is read on, unless the
// worker is behind.
func (lp *loop) syslogQueueFull() bool {
	s, conf := lp.s, lp.conf
	if d := s.dur; d != nil && !d.full.Load() {
		return lp.sp.pendingBytes+conf.SyslogBatchBytes > maxSpoolPending
	}
	return int(s.queuedPackets.Load()) >= conf.QueueMaxPackets ||
		s.queuedBytes.Load()+int64(conf.SyslogBatchBytes) > conf.QueueMaxBytes
}

func clipField(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// flushSyslog seals every open batch on every loop (at shutdown, before
// the drain).
func (s *Server) flushSyslog() {
	loops := s.snapshotLoops()
	done := make(chan struct{}, len(loops))
	n := 0
	for _, lp := range loops {
		err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if lp.syslog != nil { // read on the loop: TCP syslog sets it there
				lp.clock()
				lp.sealOld(lp.now, true)
				lp.flush()
			}
			done <- struct{}{}
			return nil
		}))
		if err == nil {
			n++
		}
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case <-done:
		case <-t.C:
			return
		}
	}
}
