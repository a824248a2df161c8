package proxy

import (
	"testing"

	"github.com/logdist/logdist/frame"
)

// newest returns the upstream holding the agent's newest packet.
func (h *harness) newest() (int, *upstream) {
	for i, u := range h.lp.ups {
		if seqs := inFlight(u); len(seqs) > 0 && seqs[len(seqs)-1] == h.agent.sess.LastSeq() {
			return i, u
		}
	}
	return -1, nil
}

// The window limits unresolved DATA, not the distance to the cumulative
// ACK point: packets resolved out of order (packet ERROR, BUSY) free their
// slots while an older one is still in flight.
func TestWindowCountsUnresolved(t *testing.T) {
	h := newHarness(t, 1)
	h.send() // seq 1 stays in flight
	for s := 2; s <= 256; s++ {
		h.send()
		i, u := h.newest()
		h.ups[i].in = frame.AppendError(nil, u.sess.Seq(), frame.CodeRejected, "bad")
		u.onTraffic(h.ups[i])
	}
	h.send() // 2 unresolved of a window of 256
	if a := h.agent.sess; h.agent.closed || a.Unresolved() != 2 || a.Acked() != 0 {
		t.Fatalf("closed=%v unresolved=%d acked=%d, want an open connection with 2 unresolved", h.agent.closed, a.Unresolved(), a.Acked())
	}
	// The analyzer acks seq 1's upstream sequence: the ack point jumps over
	// everything resolved out of order.
	for i, u := range h.lp.ups {
		if u.sess.Unresolved() > 0 {
			h.ups[i].in = frame.AppendAck(nil, u.sess.Seq())
			u.onTraffic(h.ups[i])
		}
	}
	if a := h.agent.sess; a.Acked() != a.LastSeq() || a.Unresolved() != 0 {
		t.Fatalf("acked %d of %d, %d unresolved", a.Acked(), a.LastSeq(), a.Unresolved())
	}
}

// A slow analyzer's overflow does not pile up in an unbounded backlog: each
// upstream holds at most twice its window, the rest goes to the bounded
// queue and beyond it is dropped (syslog) or answered BUSY (agents).
func TestBacklogBounded(t *testing.T) {
	h := newHarness(t, 1)
	h.lp.conf.QueueMaxPackets = 100
	for i := 0; i < 20000; i++ {
		r := h.lp.newRecord(h.data, nil, 0, 1)
		r.syslog = true
		h.lp.dispatch(r)
	}
	held := 0
	for _, u := range h.lp.ups {
		if n := u.sess.Unresolved() + u.backlog.len(); n > 2*u.window {
			t.Fatalf("upstream %s holds %d packets, window %d", u.name, n, u.window)
		} else {
			held += n
		}
	}
	if w := h.lp.led.waiting.len(); w > 100 {
		t.Fatalf("%d packets waiting, bound 100", w)
	}
	if live := h.lp.led.live; live != int64(held+h.lp.led.waiting.len()) {
		t.Fatalf("%d records live, %d held and %d waiting", live, held, h.lp.led.waiting.len())
	}
}

// An analyzer that answers BUSY and never ACKs the BUSY'd sequences does
// not stall its connection: settled slots leave the window.
func TestBusyWithoutAckDoesNotStall(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, upstreamWindow: 1})
	for round := 0; round < 20; round++ {
		h.send()
		for i, u := range h.lp.ups {
			if u.sess.Unresolved() > 0 {
				h.ups[i].in = frame.AppendBusy(nil, oldestSeq(u), 0)
				u.onTraffic(h.ups[i])
			}
		}
		h.lp.tick()
	}
	for _, u := range h.lp.ups {
		if u.sess.InFlight() > 0 && u.sess.Unresolved() == 0 {
			t.Fatalf("upstream %s stalled behind a settled slot (backlog %d)", u.name, u.backlog.len())
		}
	}
}

// With skewed weights a full analyzer does not make packets wait while the
// others have room: once the picks run out on it, any selectable analyzer
// with room takes the packet. The picks used to give up after len(ups)+1
// tries: with 0.97/0.01/0.01/0.01 and the heavy analyzer full, 165 of 200
// packets were queued while the light ones had room for 6,144.
func TestFullHeavyAnalyzerSpillsToOthers(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd | frame.CapSack, upstreamWindow: 16,
		weights: []float64{0.97, 0.01, 0.01, 0.01}})
	heavy := h.lp.ups[0]
	room := 0
	for _, u := range h.lp.ups[1:] {
		room += 2 * u.window
	}
	for i := 0; i < 200; i++ {
		h.send()
		// The light analyzers answer at once; the heavy one never does.
		for j, u := range h.lp.ups[1:] {
			if u.sess.Unresolved() > 0 {
				h.ups[j+1].in = frame.AppendAck(nil, u.sess.Seq())
				u.onTraffic(h.ups[j+1])
			}
		}
	}
	if heavy.sess.Unresolved()+heavy.backlog.len() != 2*heavy.window {
		t.Fatalf("setup: the heavy analyzer holds %d, room for %d", heavy.sess.Unresolved()+heavy.backlog.len(), 2*heavy.window)
	}
	if q := h.lp.led.waiting.len(); q != 0 {
		t.Fatalf("%d packets queued while the light analyzers had room for %d", q, room)
	}
	if spilled := h.lp.m.spilled.Get(); spilled == 0 {
		t.Fatal("no packet counted as spilled")
	}
}

// FlushQueue sends a packet held back by an analyzer's BUSY at once,
// without waiting for its retry-after.
func TestFlushQueueSkipsRetryAfter(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd})
	h.send()
	var busy *upstream
	for i, u := range h.lp.ups {
		if u.sess.Unresolved() > 0 {
			busy = u
			h.ups[i].in = frame.AppendBusy(nil, oldestSeq(u), 60_000)
			u.onTraffic(h.ups[i])
		}
	}
	h.lp.tick()
	if busy == nil || h.lp.led.delayed.len() != 1 {
		t.Fatalf("setup: %d packets delayed after BUSY, want 1", h.lp.led.delayed.len())
	}
	h.lp.flushQueue()
	if n := h.lp.led.delayed.len(); n != 0 {
		t.Fatalf("%d packets still delayed after the flush", n)
	}
	inflight := 0
	for _, u := range h.lp.ups {
		inflight += u.sess.Unresolved()
	}
	if inflight != 1 {
		t.Fatalf("%d packets in flight after the flush, want the delayed one", inflight)
	}
}

// Ack latency is sampled at random: a fixed every-32nd packet aliased with
// the picker's period, and with weights 5:3:2 one analyzer never got a
// sample.
func TestAckLatencySamplesEveryAnalyzer(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, weights: []float64{0.5, 0.3, 0.2}})
	for i := 0; i < 2000; i++ {
		h.send()
		for j, u := range h.lp.ups {
			if u.sess.Unresolved() > 0 {
				h.ups[j].in = frame.AppendAck(nil, u.sess.Seq())
				u.onTraffic(h.ups[j])
			}
		}
	}
	for _, u := range h.lp.ups {
		if n := u.st.ackSamples.Load(); n < 5 {
			t.Errorf("analyzer %s: %d ack latency samples", u.name, n)
		}
	}
}
