package proxy

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
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

func newHarness(tb testing.TB, msgs int) *harness {
	return newHarnessCaps(tb, msgs, frame.CapZstd)
}

// newHarnessCaps is newHarness with an agent offering caps in its HELLO.
func newHarnessCaps(tb testing.TB, msgs int, caps frame.Capabilities) *harness {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SyslogUDP = ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Balancer.Logger = cfg.Logger
	cfg.Balancer.SlowStart = 0
	cfg.SackDelay = 0 // tests of the delay set it
	for i, w := range []float64{0.4, 0.3, 0.2, 0.1} {
		cfg.Analyzers = append(cfg.Analyzers, AnalyzerConfig{Name: string(rune('a' + i)), Addr: "127.0.0.1:1", Weight: w})
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{lp: newLoop(s, nil, 0)}
	for _, u := range h.lp.ups {
		fc := &fakeConn{}
		u.onOpen(fc)
		fc.in = frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd, Window: 1024, MaxFrame: 1 << 20})
		u.onTraffic(fc)
		s.set.Report(u.id, balancer.HeartbeatOK)
		if !u.accepting() {
			tb.Fatalf("upstream %s not ready", u.name)
		}
		h.ups = append(h.ups, fc)
		h.acks = append(h.acks, make([]byte, 0, frame.HeaderSize))
	}
	h.ac = &fakeConn{}
	if _, action := h.lp.openAgent(h.ac); action != gnet.None {
		tb.Fatal("agent refused")
	}
	h.agent = h.ac.ctx.(*agentConn)
	h.ac.in = frame.AppendHello(nil, &frame.Hello{Caps: caps, Window: 256, MaxFrame: 1 << 20, AgentID: []byte("bench-agent")})
	h.ac.keep = true
	h.agent.onTraffic(h.ac)
	h.welcome, h.ac.out, h.ac.keep = h.ac.out, nil, false
	if h.agent.state != agentReady {
		tb.Fatal("agent handshake failed")
	}
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
	for i := 0; i < msgs; i++ {
		p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Severity: frame.SevInfo, Hostname: []byte("web-1"),
			App: []byte("api"), Body: []byte("2026-11-26T21:00:00Z INFO request id=3f2a9c path=/api/v1/items status=200 duration_ms=12")})
	}
	h.data = (&frame.Encoder{}).AppendData(nil, 1, p, true)
	return h
}

// cycle sends one DATA frame from the agent and acknowledges it from
// whichever upstream got it: the whole per-packet path.
func (h *harness) cycle() {
	a := h.agent
	frame.Header(h.data).SetSeq(a.lastSeq + 1)
	h.ac.in = h.data
	a.onTraffic(h.ac)
	for i, u := range h.lp.ups {
		if u.inflight.len() == 0 {
			continue
		}
		h.acks[i] = frame.AppendAck(h.acks[i][:0], u.nextSeq)
		h.ups[i].in = h.acks[i]
		u.onTraffic(h.ups[i])
	}
}

func TestForwardPathAllocs(t *testing.T) {
	h := newHarness(t, 10)
	for i := 0; i < 1000; i++ { // warm the free lists and metric buckets
		h.cycle()
	}
	acked := h.agent.acked
	if allocs := testing.AllocsPerRun(5000, h.cycle); allocs != 0 {
		t.Fatalf("per-packet path allocates %.2f times per packet, want 0", allocs)
	}
	if h.agent.acked <= acked || h.agent.acked != h.agent.lastSeq {
		t.Fatalf("agent acked %d of %d packets", h.agent.acked, h.agent.lastSeq)
	}
	if live := h.lp.live.Load(); live != 0 {
		t.Fatalf("%d records still live after every packet was acked", live)
	}
}
