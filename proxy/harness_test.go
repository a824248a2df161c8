package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// fakeConn stands in for a gnet.Conn in tests that drive a loop's
// callbacks directly, without sockets: the per-packet path can then be
// measured (allocations, CPU) without the kernel. Methods the proxy does
// not call panic through the nil embedded interface.
type fakeConn struct {
	gnet.Conn
	in      []byte
	keep    bool   // keep what is written in out
	out     []byte // with keep: everything written
	written int
	writes  int
	ctx     any
	remote  net.Addr
}

func (f *fakeConn) Next(n int) ([]byte, error) {
	if n < 0 || n > len(f.in) {
		n = len(f.in)
	}
	b := f.in[:n]
	f.in = f.in[n:]
	return b, nil
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n > len(f.in) {
		return f.in, io.ErrShortBuffer
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) { f.in = f.in[n:]; return n, nil }
func (f *fakeConn) InboundBuffered() int       { return len(f.in) }
func (f *fakeConn) Write(b []byte) (int, error) {
	if f.keep {
		f.out = append(f.out, b...)
	}
	f.written += len(b)
	f.writes++
	return len(b), nil
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	f.written += n
	f.writes++
	return n, nil
}
func (f *fakeConn) Close() error          { return nil }
func (f *fakeConn) Fd() int               { return -1 } // no socket: flush uses Writev
func (f *fakeConn) OutboundBuffered() int { return 0 }
func (f *fakeConn) RemoteAddr() net.Addr {
	if f.remote != nil {
		return f.remote
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}
func (f *fakeConn) SetContext(v any) { f.ctx = v }
func (f *fakeConn) Context() any     { return f.ctx }

// harness is one loop with an agent and four ready upstreams, driven by
// hand.
type harness struct {
	lp      *loop
	agent   *agentConn
	ac      *fakeConn
	ups     []*fakeConn
	data    []byte // one DATA frame; its sequence is rewritten per send
	welcome []byte // what the agent got for its HELLO
	acks    [][]byte
}

// harnessOpts are what a test may change in the harness's setup.
type harnessOpts struct {
	msgs           int                // messages per DATA frame
	caps           frame.Capabilities // offered in the agent's HELLO
	agentWindow    uint32             // granted to the agent (default 256)
	upstreamWindow uint32             // granted by each analyzer (default 1024)
	weights        []float64          // of the analyzers a, b, c, d (default 0.4/0.3/0.2/0.1)
	upstreamCaps   frame.Capabilities // granted by each analyzer's WELCOME (default zstd)
	edit           func(*Config)

	// upstreamDicts gives the dictionaries analyzer i lists (nil: none).
	upstreamDicts func(i int) []uint32
}

func newHarness(tb testing.TB, msgs int) *harness {
	return newHarnessOpts(tb, harnessOpts{msgs: msgs, caps: frame.CapZstd})
}

// newHarnessCaps is newHarness with an agent offering caps in its HELLO.
func newHarnessCaps(tb testing.TB, msgs int, caps frame.Capabilities) *harness {
	return newHarnessOpts(tb, harnessOpts{msgs: msgs, caps: caps})
}

func newHarnessOpts(tb testing.TB, o harnessOpts) *harness {
	if o.agentWindow == 0 {
		o.agentWindow = 256
	}
	if o.upstreamWindow == 0 {
		o.upstreamWindow = 1024
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SyslogUDP = ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Balancer.Logger = cfg.Logger
	cfg.Balancer.SlowStart = 0
	cfg.SackDelay = 0 // tests of the delay set it
	cfg.Window = o.agentWindow
	cfg.UpstreamWindow = o.upstreamWindow
	if o.weights == nil {
		o.weights = []float64{0.4, 0.3, 0.2, 0.1}
	}
	for i, w := range o.weights {
		cfg.Analyzers = append(cfg.Analyzers, AnalyzerConfig{Name: string(rune('a' + i)), Addr: fmt.Sprintf("127.0.0.1:%d", i+1), Weight: w})
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{lp: newLoop(s, nil, 0)}
	h.lp.reconcile()
	for i, u := range h.lp.ups {
		fc := &fakeConn{}
		if _, action := u.onOpen(fc); action != gnet.None {
			tb.Fatal("upstream refused to open")
		}
		w := frame.Welcome{Caps: o.upstreamCaps | frame.CapZstd, Window: o.upstreamWindow, MaxFrame: 1 << 20}
		if o.upstreamDicts != nil {
			if w.Dicts = o.upstreamDicts(i); len(w.Dicts) > 0 {
				w.Caps |= frame.CapDict
			}
		}
		fc.in = frame.AppendWelcome(nil, &w)
		u.onTraffic(fc)
		s.set.Report(u.id, balancer.HeartbeatOK)
		if !u.accepting() {
			tb.Fatalf("upstream %s not ready", u.name)
		}
		h.ups = append(h.ups, fc)
		h.acks = append(h.acks, make([]byte, 0, frame.HeaderSize))
	}
	h.ac = &fakeConn{}
	if _, action := h.lp.openAgent(h.ac, session.Peer{Addr: h.ac.RemoteAddr()}); action != gnet.None {
		tb.Fatal("agent refused")
	}
	h.agent = h.ac.ctx.(*agentConn)
	h.ac.in = frame.AppendHello(nil, &frame.Hello{Caps: o.caps, Window: o.agentWindow, MaxFrame: 1 << 20, AgentID: []byte("bench-agent")})
	h.ac.keep = true
	h.agent.onTraffic(h.ac)
	h.welcome, h.ac.out, h.ac.keep = h.ac.out, nil, false
	if !h.agent.sess.Ready() {
		tb.Fatal("agent handshake failed")
	}
	msgs := max(o.msgs, 1)
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
	for i := 0; i < msgs; i++ {
		p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Severity: frame.SevInfo, Hostname: []byte("web-1"),
			App: []byte("api"), Body: []byte("2026-11-26T21:00:00Z INFO request id=3f2a9c path=/api/v1/items status=200 duration_ms=12")})
	}
	h.data = (&frame.Encoder{}).AppendData(nil, 1, p, true)
	return h
}

// setSackDelay changes the SACK delay of the running settings, as a
// reconfiguration would (the test owns the loop).
func (h *harness) setSackDelay(d time.Duration) {
	h.lp.conf.SackDelay = d
	h.lp.conf.agents.SackDelay = d
}

// cycle sends one DATA frame from the agent and acknowledges it from
// whichever upstream got it: the whole per-packet path.
func (h *harness) cycle() {
	a := h.agent
	frame.Header(h.data).SetSeq(a.sess.LastSeq() + 1)
	h.ac.in = h.data
	a.onTraffic(h.ac)
	h.ackAll()
}

// ackAll has every analyzer acknowledge all it holds.
func (h *harness) ackAll() {
	for i, u := range h.lp.ups {
		if u == nil || u.sess.Unresolved() == 0 {
			continue
		}
		h.acks[i] = frame.AppendAck(h.acks[i][:0], u.sess.Seq())
		h.ups[i].in = h.acks[i]
		u.onTraffic(h.ups[i])
	}
}

// send makes the harness agent send one more DATA frame.
func (h *harness) send() {
	a := h.agent
	frame.Header(h.data).SetSeq(a.sess.LastSeq() + 1)
	h.ac.in = append([]byte(nil), h.data...)
	a.onTraffic(h.ac)
}

// forward sends h.data once, flushes, and returns what the upstreams were
// written, all of them together.
func (h *harness) forward() []byte {
	for _, u := range h.ups {
		u.keep, u.out = true, nil
	}
	h.send()
	h.lp.flush()
	var got []byte
	for _, u := range h.ups {
		got = append(got, u.out...)
	}
	return got
}

// oldestSeq returns the upstream sequence of u's oldest unanswered packet.
func oldestSeq(u *upstream) uint64 {
	return u.sess.Seq() - uint64(u.sess.InFlight()) + 1
}

// inFlight returns the agent sequences of the packets u holds, oldest
// first, answered ones left out.
func inFlight(u *upstream) []uint64 {
	var seqs []uint64
	for i := 0; i < u.sess.InFlight(); i++ {
		if r, live := u.sess.Peek(i); live {
			seqs = append(seqs, r.aseq)
		}
	}
	return seqs
}

func TestForwardPathAllocs(t *testing.T) {
	h := newHarness(t, 10)
	for i := 0; i < 1000; i++ { // warm the free lists and metric buckets
		h.cycle()
	}
	acked := h.agent.sess.Acked()
	if allocs := testing.AllocsPerRun(5000, h.cycle); allocs != 0 {
		t.Fatalf("per-packet path allocates %.2f times per packet, want 0", allocs)
	}
	if a := h.agent.sess; a.Acked() <= acked || a.Acked() != a.LastSeq() {
		t.Fatalf("agent acked %d of %d packets", a.Acked(), a.LastSeq())
	}
	if live := h.lp.live.Load(); live != 0 {
		t.Fatalf("%d records still live after every packet was acked", live)
	}
}

// Tracing off (no Config.Tracer), a packet that comes with a sampled trace
// context costs no allocation either: it is forwarded with its context
// (here stripped in place, as the harness's analyzers do not grant the
// trace capability).
func TestForwardPathAllocsTraced(t *testing.T) {
	h := newHarness(t, 10)
	tc := frame.NewTraceContext([16]byte{1, 2, 3}, [8]byte{4, 5, 6}, true)
	h.data = frame.AppendWithTrace(nil, h.data, &tc)
	for i := 0; i < 1000; i++ {
		h.cycle()
	}
	acked := h.agent.sess.Acked()
	if allocs := testing.AllocsPerRun(5000, h.cycle); allocs != 0 {
		t.Fatalf("per-packet path allocates %.2f times per traced packet, want 0", allocs)
	}
	if a := h.agent.sess; a.Acked() <= acked || a.Acked() != a.LastSeq() {
		t.Fatalf("agent acked %d of %d packets", a.Acked(), a.LastSeq())
	}
}
