package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/logdist/logdist/frame"
)

// testDicts loads the protocol's test dictionary and a copy of it under
// another id (32769).
func testDicts(tb testing.TB) (*frame.Dict, *frame.Dict) {
	tb.Helper()
	d, err := frame.LoadDict("../frame/testdata/golden/testdict.zdict")
	if err != nil {
		tb.Fatal(err)
	}
	b := bytes.Clone(d.Bytes())
	binary.LittleEndian.PutUint32(b[4:8], 0x8001)
	other, err := frame.ParseDict(b)
	if err != nil {
		tb.Fatal(err)
	}
	return d, other
}

// dictHarness is a harness whose logdist holds d, whose agent offers dict,
// and whose analyzers list what lists(i) says; its DATA frame is
// compressed with d.
func dictHarness(tb testing.TB, d *frame.Dict, upstreamWindow uint32, lists func(i int) []uint32) *harness {
	h := newHarnessOpts(tb, harnessOpts{msgs: 10, caps: frame.CapZstd | frame.CapDict, upstreamWindow: upstreamWindow,
		upstreamDicts: lists, edit: func(c *Config) { c.Dicts = frame.Dicts{d} }})
	h.data = dictFrame(tb, d, 10)
	return h
}

func dictFrame(tb testing.TB, d *frame.Dict, msgs int) []byte {
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
	for i := 0; i < msgs; i++ {
		p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Severity: frame.SevInfo, Hostname: []byte("web-1"),
			App: []byte("api"), Body: []byte("2026-11-26T21:00:00Z INFO request id=3f2a9c path=/api/v1/items status=200 duration_ms=12")})
	}
	f := (&frame.Encoder{Dict: d}).AppendData(nil, 1, p, true)
	if d != nil && frame.DictID(f) != d.ID() {
		tb.Fatalf("the test frame is not compressed with dictionary %d", d.ID())
	}
	return f
}

// agentFrames decodes what the harness's agent was sent.
func agentFrames(tb testing.TB, b []byte) []string {
	tb.Helper()
	lim := frame.DefaultLimits()
	rd := frame.NewReader(bytes.NewReader(b), &lim)
	var out []string
	for {
		h, payload, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		s := h.Type().String()
		if h.Type() == frame.TypeError {
			code, _, _ := frame.DecodeReason(payload)
			s += " " + code.String()
		}
		out = append(out, s)
	}
}

// An agent offering dict is told logdist's dictionaries; its packets
// compressed with one go only to the analyzers that listed it, the others
// anywhere.
func TestDictRouting(t *testing.T) {
	d, _ := testDicts(t)
	h := dictHarness(t, d, 1024, func(i int) []uint32 {
		if i%2 == 0 { // a and c
			return []uint32{0x8001, d.ID()}
		}
		return nil
	})
	var w frame.Welcome
	if err := frame.DecodeWelcome(h.welcome[frame.HeaderSize:], &w); err != nil || w.Caps&frame.CapDict == 0 || !slices.Equal(w.Dicts, []uint32{d.ID()}) {
		t.Fatalf("the agent's WELCOME: %+v %v", w, err)
	}
	for _, u := range h.lp.ups {
		if want := u.id%2 == 0; u.takesDict(d.ID()) != want {
			t.Fatalf("%s takes dictionary %d: %v", u.name, d.ID(), !want)
		}
	}
	const n = 200
	for i := 0; i < n; i++ {
		h.send()
	}
	got := 0
	for _, u := range h.lp.ups {
		k := u.sess.Unresolved() + u.backlog.len()
		if u.id%2 != 0 && k != 0 {
			t.Fatalf("analyzer %s, which does not hold the dictionary, was given %d of its packets", u.name, k)
		}
		got += k
	}
	if got != n || h.lp.m.dictUnroutable.Get() != 0 {
		t.Fatalf("%d packets at analyzers, %d unroutable; want %d, 0", got, h.lp.m.dictUnroutable.Get(), n)
	}
	h.ackAll()
	if a := h.agent.sess; a.Acked() != a.LastSeq() {
		t.Fatalf("agent acked %d of %d", a.Acked(), a.LastSeq())
	}
	// A packet without a dictionary goes to any analyzer.
	h.data = dictFrame(t, nil, 10)
	for i := 0; i < 100; i++ {
		h.send()
	}
	odd := 0
	for _, u := range h.lp.ups {
		if u.id%2 != 0 {
			odd += u.sess.Unresolved() + u.backlog.len()
		}
	}
	if odd == 0 {
		t.Fatal("no packet without a dictionary went to b or d")
	}
}

// A packet naming a dictionary logdist does not hold is rejected for good
// (ERROR unknown_dictionary); none reaches an analyzer.
func TestDictUnknownRejected(t *testing.T) {
	d, other := testDicts(t)
	h := dictHarness(t, d, 1024, func(int) []uint32 { return []uint32{d.ID(), other.ID()} })
	h.data = dictFrame(t, other, 10)
	h.ac.keep = true
	h.send()
	h.lp.flush()
	if got := agentFrames(t, h.ac.out); !slices.Equal(got, []string{"ERROR unknown_dictionary", "ACK"}) {
		t.Fatalf("the agent got %v", got)
	}
	for _, u := range h.lp.ups {
		if u.sess.Unresolved()+u.backlog.len() != 0 {
			t.Fatalf("analyzer %s was given the packet", u.name)
		}
	}
	for i, c := range errorCodes {
		if c == frame.CodeUnknownDict && h.lp.m.protocolErrors[i].Get() != 1 {
			t.Fatalf("unknown_dictionary counted %d times", h.lp.m.protocolErrors[i].Get())
		}
	}
}

// A packet with a dictionary logdist holds, when no analyzer connection
// listed it, is answered BUSY at once (and counted), not queued where it
// would hold back the other agents' packets; so are the ones already
// queued or in flight when the analyzers that hold it go away.
func TestDictUnroutableBusy(t *testing.T) {
	d, _ := testDicts(t)
	h := dictHarness(t, d, 1024, nil)
	h.ac.keep = true
	h.send()
	h.lp.flush()
	if got := agentFrames(t, h.ac.out); !slices.Equal(got, []string{"BUSY", "ACK"}) {
		t.Fatalf("the agent got %v", got)
	}
	if h.lp.m.dictUnroutable.Get() != 1 || h.lp.led.waiting.len() != 0 || h.lp.led.live != 0 {
		t.Fatalf("unroutable %d, waiting %d, live %d", h.lp.m.dictUnroutable.Get(), h.lp.led.waiting.len(), h.lp.led.live)
	}

	// Analyzers a and c hold it, with a window of 1: two packets each
	// (window and backlog), the rest wait in the queue. Then a and c go.
	h = dictHarness(t, d, 1, func(i int) []uint32 {
		if i%2 == 0 {
			return []uint32{d.ID()}
		}
		return nil
	})
	h.ac.keep = true
	for i := 0; i < 10; i++ {
		h.send()
	}
	if h.lp.led.waiting.len() != 6 {
		t.Fatalf("%d packets waiting, want 6", h.lp.led.waiting.len())
	}
	for _, u := range h.lp.ups {
		if u.id%2 == 0 {
			u.onClose(errors.New("test: analyzer gone"))
		}
	}
	h.lp.drainWaiting()
	h.lp.flush()
	busy := 0
	for _, f := range agentFrames(t, h.ac.out) {
		if f == "BUSY" {
			busy++
		}
	}
	if busy != 10 || h.lp.m.dictUnroutable.Get() != 10 || h.lp.led.waiting.len() != 0 || h.lp.led.live != 0 {
		t.Fatalf("%d BUSY, %d unroutable, %d waiting, %d live; want 10, 10, 0, 0", busy, h.lp.m.dictUnroutable.Get(), h.lp.led.waiting.len(), h.lp.led.live)
	}
	if p, b := h.lp.s.queuedPackets.Load(), h.lp.s.queuedBytes.Load(); p != 0 || b != 0 {
		t.Fatalf("the queue's budget still holds %d packets, %d bytes", p, b)
	}
}

// With dictionaries, the per-packet path of a packet compressed with one
// allocates nothing either.
func TestForwardPathAllocsDict(t *testing.T) {
	d, _ := testDicts(t)
	h := dictHarness(t, d, 1024, func(int) []uint32 { return []uint32{d.ID()} })
	for i := 0; i < 1000; i++ {
		h.cycle()
	}
	if allocs := testing.AllocsPerRun(5000, h.cycle); allocs != 0 {
		t.Fatalf("per-packet path allocates %.2f times per packet with a dictionary, want 0", allocs)
	}
	if a := h.agent.sess; a.Acked() != a.LastSeq() {
		t.Fatalf("agent acked %d of %d packets", a.Acked(), a.LastSeq())
	}
}

// Without dictionaries logdist grants no dict (an agent that offers it
// compresses as before) and offers none to analyzers; the dictionaries are
// fixed at start.
func TestDictNotConfigured(t *testing.T) {
	h := newHarnessCaps(t, 10, frame.CapZstd|frame.CapDict)
	var w frame.Welcome
	if err := frame.DecodeWelcome(h.welcome[frame.HeaderSize:], &w); err != nil || w.Caps&frame.CapDict != 0 || len(w.Dicts) != 0 {
		t.Fatalf("WELCOME %+v %v", w, err)
	}
	if len(h.lp.upCfg.Dicts) != 0 {
		t.Fatalf("logdist offers dictionaries %v to analyzers", h.lp.upCfg.Dicts)
	}
	d, other := testDicts(t)
	a := DefaultConfig()
	a.Dicts = frame.Dicts{d}
	b := a.clone()
	if err := restartChanges(&a, &b); err != nil {
		t.Fatal(err)
	}
	b.Dicts = frame.Dicts{d, other}
	if err := restartChanges(&a, &b); !errors.Is(err, ErrRestartRequired) {
		t.Fatalf("changing the dictionaries: %v", err)
	}
	b.Dicts = frame.Dicts{d, d}
	b.Analyzers = []AnalyzerConfig{{Name: "a", Addr: "127.0.0.1:1", Weight: 1}}
	if err := b.Validate(); err == nil {
		t.Fatal("two dictionaries with one id validated")
	}
}
