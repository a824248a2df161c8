package proxy

import (
	"errors"
	"testing"
	"time"
)

// The ledger around a copied packet: a late analyzer's packet is copied
// to the other; when the late one's connection is lost, its original is
// freed, not re-dispatched (the copy carries the delivery); the copy's
// ACK acknowledges the agent once, and every record leaves the loop.
func TestHedgedOriginalSettled(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, weights: []float64{0.5, 0.5}, edit: func(c *Config) { c.LateAfter = 150 * time.Millisecond }})
	h.send()
	h.lp.flush()
	var late, other *upstream
	for _, u := range h.lp.ups {
		if len(inFlight(u)) == 1 {
			late = u
		} else {
			other = u
		}
	}
	if late == nil || other == nil {
		t.Fatal("the packet is not in flight on exactly one analyzer")
	}
	h.lp.clock()
	late.checkLate(h.lp.now + int64(time.Second)) // a second of silence
	if !late.late || len(inFlight(other)) != 1 || h.lp.m.hedged.Get() != 1 {
		t.Fatalf("after a second of silence: late %v, the other holds %v, hedged %d", late.late, inFlight(other), h.lp.m.hedged.Get())
	}
	if live := h.lp.led.live; live != 2 {
		t.Fatalf("%d records live, want the original and its copy", live)
	}
	// The late analyzer's connection is lost: its original is freed.
	late.onClose(errors.New("test: connection lost"))
	h.lp.runRedo()
	if live := h.lp.led.live; live != 1 || len(inFlight(other)) != 1 || h.lp.m.redispatched.Get() != 0 {
		t.Fatalf("after the loss: %d live, the other holds %v, %d re-dispatched; want the copy alone, none re-dispatched",
			live, inFlight(other), h.lp.m.redispatched.Get())
	}
	acked := h.agent.sess.Acked()
	h.ackAll()
	h.lp.flush()
	if h.agent.sess.Acked() != acked+1 || h.lp.led.live != 0 {
		t.Fatalf("after the copy's ACK: agent acked %d (was %d), %d records live", h.agent.sess.Acked(), acked, h.lp.led.live)
	}
}
