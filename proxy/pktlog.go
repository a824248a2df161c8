package proxy

import (
	"log/slog"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/logthrottle"
)

// Log lines about one packet (rejected, refused by an analyzer) name it by
// its agent id and packet id, the ids an analyzer deduplicates by, so that
// one packet can be followed across agent, logdist and analyzer logs. A
// stream of bad packets would write one line each: they are throttled to
// one a second per message and code, with how many were held back.

// pktLogKey is what the per-packet log lines are throttled by.
type pktLogKey struct {
	msg  string
	code frame.Code
}

// pktLogEvery is the least time between two lines of one message and
// code.
const pktLogEvery = time.Second

// packetLog is the Server's throttle of them, shared by its loops.
type packetLog = logthrottle.Keyed[pktLogKey]

func newPacketLog() *packetLog {
	return logthrottle.NewKeyed[pktLogKey](pktLogEvery)
}

// logPacket logs msg at level warn about the DATA frame fb (header and
// payload) that agent a (nil: gone, or syslog) sent as seq, unless a line
// of the same message and code went out less than pktLogEvery ago. pkt is
// the packet decoded from fb, or nil: the ids are then read from fb, which
// costs a decompression, paid only for a line that is written.
func (lp *loop) logPacket(msg string, code frame.Code, reason string, a *agentConn, seq uint64, fb []byte, pkt *frame.Packet, extra ...slog.Attr) {
	ok, suppressed := lp.s.pktLog.Allow(pktLogKey{msg, code})
	if !ok {
		return
	}
	var (
		id    uint64
		agent []byte
		known bool
	)
	switch {
	case pkt != nil:
		id, agent, known = pkt.ID, pkt.AgentID, true
	case len(fb) >= frame.HeaderSize:
		if raw, err := lp.dec.Raw(frame.Header(fb[:frame.HeaderSize]), fb[frame.HeaderSize:]); err == nil {
			id, agent, known = frame.PacketIDs(raw, lp.conf.Limits.MaxField)
		}
	}
	attrs := make([]slog.Attr, 0, 8+len(extra))
	attrs = append(attrs, slog.String("code", code.String()))
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if a != nil {
		attrs = append(attrs, slog.String("remote", a.remote))
		if len(agent) == 0 { // the packet is the connection's agent's (analyzers dedup so)
			agent = a.sess.AgentID()
		}
	}
	if known {
		attrs = append(attrs, slog.String("agent_id", string(agent)), slog.Uint64("packet_id", id))
	}
	attrs = append(attrs, slog.Uint64("seq", seq))
	attrs = append(attrs, extra...)
	attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	lp.s.log.LogAttrs(lp.s.ctx, slog.LevelWarn, msg, attrs...)
}
