package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
)

// agentModel is what an agent knows from the frames logdist wrote to it:
// how each DATA sequence was resolved. It fails the test on any frame that
// resolves a sequence twice or one never sent.
type agentModel struct {
	t        *testing.T
	resolved map[uint64]string // seq → "ack", "sack", "error", "busy"
	ackPoint uint64
	sacks    int
	welcome  frame.Welcome
}

func (m *agentModel) read(b []byte, sent uint64) {
	m.t.Helper()
	lim := frame.DefaultLimits()
	rd := frame.NewReader(bytes.NewReader(b), &lim)
	var ranges []frame.SeqRange
	for {
		h, payload, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			m.t.Fatalf("agent reads a bad frame: %v", err)
		}
		mark := func(seq uint64, how string) {
			m.t.Helper()
			if seq == 0 || seq > sent {
				m.t.Fatalf("%s for sequence %d; %d sent", how, seq, sent)
			}
			if prev, ok := m.resolved[seq]; ok {
				m.t.Fatalf("sequence %d resolved twice: %s, then %s", seq, prev, how)
			}
			m.resolved[seq] = how
		}
		cumulative := func(seq uint64) {
			m.t.Helper()
			if seq > sent {
				m.t.Fatalf("ACK %d; %d sent", seq, sent)
			}
			for ; m.ackPoint < seq; m.ackPoint++ {
				if _, ok := m.resolved[m.ackPoint+1]; !ok {
					m.resolved[m.ackPoint+1] = "ack"
				}
			}
		}
		switch h.Type() {
		case frame.TypeWelcome:
			if err := frame.DecodeWelcome(payload, &m.welcome); err != nil {
				m.t.Fatal(err)
			}
		case frame.TypeAck:
			cumulative(h.Seq())
		case frame.TypeSack:
			m.sacks++
			cumulative(h.Seq())
			if ranges, err = frame.DecodeSack(payload, h.Seq(), ranges[:0]); err != nil {
				m.t.Fatalf("bad SACK: %v", err)
			}
			for _, r := range ranges {
				for s := r.First; s <= r.Last; s++ {
					mark(s, "sack")
				}
			}
		case frame.TypeError:
			mark(h.Seq(), "error")
		case frame.TypeBusy:
			mark(h.Seq(), "busy")
		default:
			m.t.Fatalf("agent got %s", h.Type())
		}
	}
}

// holder returns the index of the upstream whose oldest packet in flight
// is the agent's sequence seq, or -1.
func (h *harness) holder(seq uint64) int {
	for i, u := range h.lp.ups {
		if r, ok := u.sess.Oldest(); ok && r.aseq == seq {
			return i
		}
	}
	return -1
}

// ackAllBut has every upstream but skip acknowledge all it holds, calling
// after (if not nil) after each.
func (h *harness) ackAllBut(skip int, after func()) {
	for i, u := range h.lp.ups {
		if i != skip && u != nil && u.sess.Unresolved() > 0 {
			h.ups[i].in = frame.AppendAck(nil, u.sess.Seq())
			u.onTraffic(h.ups[i])
			if after != nil {
				after()
			}
		}
	}
}

// An agent that offers selective ACKs gets each packet acknowledged as
// soon as its analyzer acknowledges it, not when the slowest analyzer
// holding an older packet does.
func TestSackReportsPacketsOutOfOrder(t *testing.T) {
	h := newHarnessCaps(t, 1, frame.CapZstd|frame.CapSack)
	h.ac.keep = true
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	m.read(h.welcome, 0)
	if m.welcome.Caps&frame.CapSack == 0 {
		t.Fatalf("WELCOME caps %#x: SACK not granted", m.welcome.Caps)
	}
	const n = 40
	for i := 0; i < n; i++ {
		h.send()
	}
	slow := h.holder(1)
	held := map[uint64]bool{}
	for _, seq := range inFlight(h.lp.ups[slow]) {
		held[seq] = true
	}
	h.ackAllBut(slow, nil)
	m.read(h.ac.out, n)
	h.ac.out = h.ac.out[:0]
	if m.sacks == 0 {
		t.Fatal("no SACK written")
	}
	for s := uint64(1); s <= n; s++ {
		if _, ok := m.resolved[s]; ok == held[s] {
			t.Fatalf("sequence %d: resolved=%v, held by the slow analyzer=%v", s, ok, held[s])
		}
	}
	if h.agent.sess.Unresolved() != len(held) {
		t.Fatalf("%d unresolved, want %d", h.agent.sess.Unresolved(), len(held))
	}
	u := h.lp.ups[slow]
	h.ups[slow].in = frame.AppendAck(nil, u.sess.Seq())
	u.onTraffic(h.ups[slow])
	m.read(h.ac.out, n)
	if len(m.resolved) != n || m.ackPoint != n {
		t.Fatalf("%d of %d resolved, ack point %d", len(m.resolved), n, m.ackPoint)
	}
}

// Whatever order analyzers acknowledge and reject packets in, an agent
// with or without selective ACKs sees every packet resolved exactly once.
func TestResolutionExactlyOnce(t *testing.T) {
	for _, caps := range []frame.Capabilities{frame.CapZstd, frame.CapZstd | frame.CapSack} {
		for seed := uint64(1); seed <= 20; seed++ {
			h := newHarnessCaps(t, 1, caps)
			h.ac.keep = true
			m := &agentModel{t: t, resolved: map[uint64]string{}}
			rng := rand.New(rand.NewPCG(seed, uint64(caps)))
			sent := uint64(0)
			for step := 0; step < 3000; step++ {
				i := rng.IntN(len(h.lp.ups))
				u := h.lp.ups[i]
				switch k := rng.IntN(10); {
				case k < 5 && h.agent.sess.Unresolved() < int(h.agent.sess.Window()):
					h.send()
					sent++
				case k < 9 && u.sess.InFlight() > 0:
					// The analyzer acknowledges part of what it holds.
					to := oldestSeq(u) + uint64(rng.IntN(u.sess.InFlight()))
					h.ups[i].in = frame.AppendAck(nil, to)
					u.onTraffic(h.ups[i])
				case u.sess.Unresolved() > 0:
					// It rejects one packet it holds.
					var seq uint64
					for seq == 0 {
						j := rng.IntN(u.sess.InFlight())
						if _, live := u.sess.Peek(j); live {
							seq = oldestSeq(u) + uint64(j)
						}
					}
					h.ups[i].in = frame.AppendError(nil, seq, frame.CodeRejected, "no")
					u.onTraffic(h.ups[i])
				}
				m.read(h.ac.out, sent)
				h.ac.out = h.ac.out[:0]
			}
			for i, u := range h.lp.ups {
				if u.sess.Unresolved() > 0 {
					h.ups[i].in = frame.AppendAck(nil, u.sess.Seq())
					u.onTraffic(h.ups[i])
				}
			}
			m.read(h.ac.out, sent)
			if uint64(len(m.resolved)) != sent || m.ackPoint != sent {
				t.Fatalf("caps %#x seed %d: %d of %d resolved, ack point %d", caps, seed, len(m.resolved), sent, m.ackPoint)
			}
			if caps&frame.CapSack == 0 && m.sacks != 0 {
				t.Fatalf("an agent that did not offer SACK got %d", m.sacks)
			}
			if caps&frame.CapSack != 0 && m.sacks == 0 {
				t.Fatalf("seed %d: no SACK at all", seed)
			}
		}
	}
}

// With a SACK delay, accepted packets behind a stuck ack point are not
// reported until the delay has passed; then the next flush reports them.
func TestSackDelay(t *testing.T) {
	h := newHarnessCaps(t, 1, frame.CapZstd|frame.CapSack)
	h.setSackDelay(time.Hour)
	h.ac.keep = true
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	const n = 20
	for i := 0; i < n; i++ {
		h.send()
	}
	h.ackAllBut(h.holder(1), nil)
	m.read(h.ac.out, n)
	h.ac.out = h.ac.out[:0]
	if m.sacks != 0 || len(m.resolved) != 0 {
		t.Fatalf("%d SACKs, %d resolved within the delay", m.sacks, len(m.resolved))
	}
	if !h.agent.sess.SackPending() || len(h.lp.sacks.later) != 1 {
		t.Fatalf("SACK pending %v, %d agents to reconsider", h.agent.sess.SackPending(), len(h.lp.sacks.later))
	}
	h.setSackDelay(0) // the delay has passed
	h.lp.flush()
	m.read(h.ac.out, n)
	if m.sacks == 0 || len(m.resolved) != n-h.agent.sess.Unresolved() {
		t.Fatalf("after the delay: %d SACKs, %d resolved, %d unresolved", m.sacks, len(m.resolved), h.agent.sess.Unresolved())
	}
}

// fakeEventLoop queues what Execute is given, for the test goroutine to
// run as the loop would.
type fakeEventLoop struct {
	gnet.EventLoop
	tasks chan gnet.Runnable
}

func (f *fakeEventLoop) Execute(_ context.Context, r gnet.Runnable) error {
	f.tasks <- r
	return nil
}

// A SACK deferred behind a stuck ack point goes out when the delay has
// passed even if nothing else wakes the loop: a timer has it flush again
// (without it, the SACK waited for the next tick, up to 50 ms).
func TestSackDelayTimer(t *testing.T) {
	h := newHarnessCaps(t, 1, frame.CapZstd|frame.CapSack)
	el := &fakeEventLoop{tasks: make(chan gnet.Runnable, 64)}
	h.lp.el = el
	h.setSackDelay(5 * time.Millisecond)
	h.ac.keep = true
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	run := func() { // run what the loop was asked to run so far
		for {
			select {
			case r := <-el.tasks:
				if err := r.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
			default:
				return
			}
		}
	}
	const n = 20
	for i := 0; i < n; i++ {
		h.send()
		run()
	}
	h.ackAllBut(h.holder(1), run)
	m.read(h.ac.out, n)
	h.ac.out = h.ac.out[:0]
	if m.sacks != 0 {
		t.Fatal("SACK before the delay")
	}
	// Nothing else happens; the timer's flush must come.
	select {
	case r := <-el.tasks:
		if err := r.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush was scheduled for the deferred SACK")
	}
	run()
	m.read(h.ac.out, n)
	if m.sacks == 0 || len(m.resolved) != n-h.agent.sess.Unresolved() {
		t.Fatalf("after the timer: %d SACKs, %d resolved, %d unresolved", m.sacks, len(m.resolved), h.agent.sess.Unresolved())
	}
	h.lp.sacks.timer.Stop()
}

// A slow analyzer that still acknowledges, a packet at a time, moves the
// ack point at every flush. The packets the others accepted beyond it are
// reported all the same once they have waited the SACK delay: the rule is
// their age, not whether the point moved.
func TestSackWhileAckPointCreeps(t *testing.T) {
	h := newHarnessCaps(t, 1, frame.CapZstd|frame.CapSack)
	const delay = 10 * time.Millisecond
	h.setSackDelay(delay)
	h.ac.keep = true
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	const n = 60
	for i := 0; i < n; i++ {
		h.send()
	}
	slow := h.holder(1)
	u := h.lp.ups[slow]
	if u.sess.Unresolved() < 8 {
		t.Fatalf("setup: the analyzer holding sequence 1 holds only %d packets", u.sess.Unresolved())
	}
	t0 := h.lp.preciseNow() // before the first packet is accepted
	h.ackAllBut(slow, nil)
	read := func() { m.read(h.ac.out, n); h.ac.out = h.ac.out[:0] }
	read()
	if m.sacks != 0 {
		t.Fatal("a SACK before the delay")
	}
	steps := 0
	for m.sacks == 0 && u.sess.Unresolved() > 1 {
		h.lp.base = h.lp.base.Add(-delay / 4) // a quarter of the delay passes
		before := h.agent.sess.Acked()
		h.ups[slow].in = frame.AppendAck(nil, oldestSeq(u))
		u.onTraffic(h.ups[slow])
		h.lp.flush()
		read()
		if h.agent.sess.Acked() == before {
			t.Fatal("the ack point did not move")
		}
		steps++
	}
	if m.sacks == 0 {
		t.Fatalf("no SACK in %d steps (%v) while the ack point crept forward", steps, time.Duration(steps)*delay/4)
	}
	if waited := time.Duration(h.lp.preciseNow() - t0); waited < delay {
		t.Fatalf("SACK after %v, before the delay had passed", waited)
	}
	if got := len(m.resolved); got != n-u.sess.Unresolved() {
		t.Fatalf("agent knows %d packets resolved, %d are", got, n-u.sess.Unresolved())
	}
}
