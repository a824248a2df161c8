package proxy

import (
	"context"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
)

// PROTOCOL.md 9: a connection code is fatal whatever the sequence. An
// analyzer's ERROR with a DATA sequence and such a code closes the
// analyzer connection and the packet is re-dispatched; it used to be
// passed to the agent as that packet's rejection, and dropped.
func TestAnalyzerFatalCodeWithSequence(t *testing.T) {
	h := newHarness(t, 1)
	h.ac.keep = true
	h.send()
	i := h.holder(1)
	if i < 0 {
		t.Fatal("setup: no analyzer holds sequence 1")
	}
	u := h.lp.ups[i]
	h.ups[i].in = frame.AppendError(nil, u.sess.Seq(), frame.CodeWindowExceeded, "you sent too much")
	if action := u.onTraffic(h.ups[i]); action != gnet.Close {
		t.Fatalf("analyzer connection kept (action %v) after ERROR window_exceeded with a sequence", action)
	}
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	m.read(h.ac.out, 1)
	if how, ok := m.resolved[1]; ok {
		t.Fatalf("the agent's packet 1 resolved (%s) by an analyzer's connection error", how)
	}
}

// closeCounter counts Close calls on an upstream's connection.
type closeCounter struct {
	*fakeConn
	closes int
}

func (c *closeCounter) Close() error { c.closes++; return nil }

// After an analyzer's GOAWAY the connection closes once nothing is in
// flight, also when the last slot was settled by BUSY and the analyzer's
// last ACK stops before it (it need not ACK what it answered BUSY to): it
// used to stay open, and the analyzer waited its whole drain timeout.
func TestGoAwayTrailingBusyCloses(t *testing.T) {
	h := newHarness(t, 1)
	for k := 0; k < 40; k++ {
		h.send()
	}
	i := h.holder(1)
	u := h.lp.ups[i]
	if u.sess.Unresolved() < 2 {
		t.Fatalf("setup: the analyzer holds %d packets", u.sess.Unresolved())
	}
	cc := &closeCounter{fakeConn: h.ups[i]}
	u.c = cc
	last := u.sess.Seq()
	in := frame.AppendGoAway(nil, frame.CodeShutdown, "draining")
	in = frame.AppendBusy(in, last, 0)
	in = frame.AppendAck(in, last-1)
	cc.in = in
	if action := u.onTraffic(cc); action != gnet.Close && cc.closes == 0 {
		t.Fatalf("GOAWAY connection with nothing in flight left open (in flight %d)", u.sess.Unresolved())
	}
}

// An analyzer cannot answer a packet logdist has not written yet (it is
// still in this wake-up's batch): such an ACK, BUSY or ERROR is a protocol
// violation. Settling it would free the memory the batch is about to
// write, and acknowledge the agent for a packet no analyzer has.
func TestAnswerBeyondWrittenIsViolation(t *testing.T) {
	for _, answer := range []string{"ack", "busy", "error"} {
		t.Run(answer, func(t *testing.T) {
			h := newHarness(t, 1)
			h.ac.keep = true
			// The loop's flush waits for the end of the wake-up: the packet
			// stays in its upstream's batch, unwritten.
			el := &fakeEventLoop{tasks: make(chan gnet.Runnable, 64)}
			h.lp.el = el
			h.send()
			i := h.holder(1)
			u := h.lp.ups[i]
			var in []byte
			switch answer {
			case "ack":
				in = frame.AppendAck(nil, u.sess.Seq())
			case "busy":
				in = frame.AppendBusy(nil, u.sess.Seq(), 0)
			case "error":
				in = frame.AppendError(nil, u.sess.Seq(), frame.CodeMalformed, "no")
			}
			h.ups[i].in = in
			if action := u.onTraffic(h.ups[i]); action != gnet.Close {
				t.Fatalf("%s of an unwritten packet accepted (action %v)", answer, action)
			}
			for len(el.tasks) > 0 {
				(<-el.tasks).Run(context.Background())
			}
			m := &agentModel{t: t, resolved: map[uint64]string{}}
			m.read(h.ac.out, 1)
			if how, ok := m.resolved[1]; ok {
				t.Fatalf("the agent's packet 1 resolved (%s) by an answer to a packet never written", how)
			}
		})
	}
}
