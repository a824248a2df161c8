package proxy

import (
	"fmt"
	"slices"

	"github.com/logdist/logdist/frame"
)

// zstd dictionaries (PROTOCOL.md 8.1). logdist forwards payloads as they
// came, so it never compresses or decompresses with a dictionary on the
// packet path; it only makes sure that a payload compressed with one
// reaches an analyzer that holds it:
//
//   - with Config.Dicts, logdist grants the dict capability to agents that
//     offer it and lists those ids: an agent only compresses with one of
//     them (the operator's contract: load a dictionary on logdist only
//     once every analyzer holds it);
//   - logdist offers dict to every analyzer and keeps, per connection, the
//     ids the analyzer's WELCOME listed (the session does);
//   - a packet's dictionary is the Dictionary_ID of its zstd frame header
//     (frame.DictID, a few bytes read, no decompression); the pick skips
//     the analyzers whose connection did not list it, as it skips those
//     that are down or full;
//   - an agent's packet naming a dictionary logdist does not hold is
//     rejected for good (ERROR unknown_dictionary): no analyzer could be
//     trusted to decode it. One naming a dictionary logdist holds, when no
//     ready connection of the loop listed it, is answered BUSY (counted in
//     logdist_dict_unroutable_total) rather than queued: the queue is
//     FIFO, and such a packet at its head would hold back every other
//     agent's packets until an analyzer with the dictionary comes back.
//     The agent resends it after the retry-after.
//
// Without dictionaries none of this runs: the packet path pays one length
// check (lp.dictOf).

// dictOf returns the dictionary r's payload is compressed with, or 0; it
// reads nothing when logdist holds no dictionaries.
func (lp *loop) dictOf(r *record) uint32 {
	if len(lp.conf.Dicts) == 0 {
		return 0
	}
	return frame.DictID(r.buf)
}

// takesDict reports whether the analyzer may be sent a payload compressed
// with dictionary id (0: no dictionary, any may).
func (u *upstream) takesDict(id uint32) bool {
	return id == 0 || u.sess.AcceptsDict(id)
}

// admitDict checks the dictionary of an agent's DATA frame fb before it
// becomes a record: a dictionary logdist does not hold is rejected (ERROR
// unknown_dictionary). It reports whether the packet goes on. Only called
// with dictionaries configured.
func (lp *loop) admitDict(a *agentConn, h frame.Header, fb []byte) bool {
	id := frame.DictID(fb)
	if id == 0 || lp.conf.Dicts.Find(id) != nil {
		return true
	}
	reason := fmt.Sprintf("packet compressed with zstd dictionary %d, which logdist does not hold (it holds %v)", id, lp.conf.Dicts.IDs())
	lp.logPacket("packet rejected: unknown dictionary", frame.CodeUnknownDict, reason, a, h.Seq(), nil, nil)
	lp.m.protocolError(frame.CodeUnknownDict)
	a.resolveError(h.Seq(), frame.CodeUnknownDict, reason)
	return false
}

// strandedDict answers BUSY to an agent's packet that no analyzer took
// because none of the loop's ready connections listed its dictionary, and
// reports whether it did (unroutableDict).
func (lp *loop) strandedDict(r *record) bool {
	if !lp.unroutableDict(r) {
		return false
	}
	lp.busyDict(r)
	return true
}

// unroutableDict reports whether r is an agent's packet compressed with a
// dictionary that none of the loop's ready analyzer connections listed.
// Packets without a dictionary, packets logdist owns (syslog, the spool:
// they wait), and packets some ready connection could take once it has
// room are not: they wait in the queue as any other.
func (lp *loop) unroutableDict(r *record) bool {
	if r.agent == nil {
		return false
	}
	id := lp.dictOf(r)
	if id == 0 {
		return false
	}
	for _, u := range lp.ups {
		if u != nil && u.state == upReady && !u.retiring && u.sess.AcceptsDict(id) {
			return false
		}
	}
	return true
}

// busyDict answers BUSY to r's agent (unroutableDict), counted and
// logged, and frees r.
func (lp *loop) busyDict(r *record) {
	lp.m.dictUnroutable.Inc()
	if ok, suppressed := lp.s.pktLog.Allow(pktLogKey{"dictionary unroutable", frame.CodeUnknownDict}); ok {
		lp.s.log.Warn("no analyzer connection of this loop holds the packet's zstd dictionary; the agent gets BUSY (load the dictionary on the analyzers: analyzerd --dict)",
			"dict", lp.dictOf(r), "loop", lp.idx, "agent", string(r.agent.sess.AgentID()), "suppressed", suppressed)
	}
	lp.busy(r)
}

// dictsChanged reports whether two dictionary sets differ (by id, in
// order): a restart-only setting.
func dictsChanged(a, b frame.Dicts) bool {
	return !slices.Equal(a.IDs(), b.IDs())
}
