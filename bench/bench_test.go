package bench

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/proxy/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink is an in-process analyzer counting what it accepts; verdict, if
// set, decides each packet.
type sink struct {
	packets  atomic.Int64
	messages atomic.Int64
	mu       sync.Mutex
	ids      map[uint64]int
	verdict  func(p *frame.Packet) error
}

func (s *sink) HandlePacket(ctx context.Context, md *server.Meta, p *frame.Packet) error {
	if s.verdict != nil {
		if err := s.verdict(p); err != nil {
			return err
		}
	}
	s.packets.Add(1)
	s.messages.Add(int64(len(p.Messages)))
	s.mu.Lock()
	s.ids[p.ID]++
	s.mu.Unlock()
	return nil
}

func startSink(t *testing.T, edit func(*server.Config), verdict func(*frame.Packet) error) (*sink, string) {
	t.Helper()
	s := &sink{ids: map[uint64]int{}, verdict: verdict}
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DrainTimeout = time.Second
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return s, srv.Addr().String()
}

func testConfig(target string) Config {
	cfg := DefaultConfig()
	cfg.Target = target
	cfg.Conns = 3
	cfg.Window = 16
	cfg.DrainTimeout = 5 * time.Second
	// zstd's encoders and decoders come from sync.Pools, which the race
	// detector empties at random: compressed runs are slow under -race,
	// so most tests send uncompressed packets.
	cfg.Compress = false
	cfg.PoolSize = 64
	if testing.Verbose() {
		cfg.Progress = os.Stderr
		cfg.ProgressInterval = 500 * time.Millisecond
	}
	return cfg
}

func TestRunSendsExactPackets(t *testing.T) {
	s, addr := startSink(t, nil, nil)
	cfg := testConfig(addr)
	cfg.Packets = 500
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacketsSent != 500 || res.PacketsAcked != 500 || res.MessagesAcked != 5000 {
		t.Fatalf("sent %d acked %d messages %d, want 500/500/5000", res.PacketsSent, res.PacketsAcked, res.MessagesAcked)
	}
	if got := s.packets.Load(); got != 500 {
		t.Fatalf("server accepted %d packets, want 500", got)
	}
	// Each connection cycles through its own 64 bodies, each time with a
	// new packet id: 500 packets, 500 ids, consecutive over the run.
	if len(s.ids) != 500 {
		t.Fatalf("server saw %d distinct packet ids, want 500", len(s.ids))
	}
	lo := ^uint64(0)
	for id, n := range s.ids {
		if n != 1 {
			t.Fatalf("packet id %d accepted %d times, want once", id, n)
		}
		lo = min(lo, id)
	}
	for id := lo; id < lo+500; id++ {
		if s.ids[id] != 1 {
			t.Fatalf("packet id %d (of %d…%d) not accepted", id, lo, lo+499)
		}
	}
	if !res.UniqueIDs || res.PoolBodies != 3*64 {
		t.Fatalf("result says unique ids %v, %d bodies; want true, 192", res.UniqueIDs, res.PoolBodies)
	}
	if res.Errors != 0 || res.Busy != 0 || res.Reconnects != 0 || res.Unresolved != 0 {
		t.Fatalf("errors %d busy %d reconnects %d unresolved %d, want none", res.Errors, res.Busy, res.Reconnects, res.Unresolved)
	}
	if res.Window != 16 || res.Conns != 3 || res.Compress != "none" {
		t.Fatalf("result describes window %d conns %d compress %s", res.Window, res.Conns, res.Compress)
	}
	// The derived figures agree with the counts.
	if res.DurationS <= 0 {
		t.Fatalf("duration %g", res.DurationS)
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*math.Max(1, want) {
			t.Fatalf("%s = %g, want %g", what, got, want)
		}
	}
	if res.CompressionRatio != 1 {
		t.Fatalf("uncompressed run reports compression %g", res.CompressionRatio)
	}
	near("packets_per_sec", res.PacketsPerSec, 500/res.DurationS)
	near("messages_per_sec", res.MessagesPerSec, 5000/res.DurationS)
	near("mbytes_per_sec", res.MBytesPerSec, float64(res.BytesSent)/res.DurationS/1e6)
	if got := float64(res.BytesSent) / 500; math.Abs(got-res.PacketBytes) > 0.05*res.PacketBytes {
		t.Fatalf("bytes_sent/packets_sent = %g, mean frame %g", got, res.PacketBytes)
	}
	l := res.LatencyMs
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max*1.001) {
		t.Fatalf("latency percentiles out of order: %+v", l)
	}
}

func TestRunCompressedWithDuration(t *testing.T) {
	s, addr := startSink(t, nil, nil)
	cfg := testConfig(addr)
	cfg.Compress = true
	cfg.Conns = 2
	cfg.Rate = 200
	cfg.Duration = 300 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacketsAcked == 0 || res.PacketsAcked != res.PacketsSent || int64(res.PacketsAcked) != s.packets.Load() {
		t.Fatalf("sent %d acked %d server %d", res.PacketsSent, res.PacketsAcked, s.packets.Load())
	}
	// 200/s for 0.3 s is 60 packets; the schedule never sends more.
	if res.PacketsSent > 60 {
		t.Fatalf("sent %d packets, the schedule has 60", res.PacketsSent)
	}
	if res.CompressionRatio <= 1 || res.Compress != "zstd" {
		t.Fatalf("compressed run reports compression %s %g", res.Compress, res.CompressionRatio)
	}
}

func TestRatePacing(t *testing.T) {
	_, addr := startSink(t, nil, nil)
	cfg := testConfig(addr)
	cfg.Conns = 2
	cfg.Rate = 400
	cfg.Packets = 100
	began := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacketsAcked != 100 {
		t.Fatalf("acked %d, want 100", res.PacketsAcked)
	}
	// The 100th packet is due 99/400 s after the start: a loose lower
	// bound only (no speed threshold).
	if d := time.Since(began); d < 200*time.Millisecond {
		t.Fatalf("100 packets at 400/s took %v, want at least ~250ms", d)
	}
}

func TestBusyIsResent(t *testing.T) {
	var refused atomic.Int64
	s, addr := startSink(t, nil, func(p *frame.Packet) error {
		if p.ID%7 == 0 && refused.Add(1) <= 20 {
			return server.Busy(time.Millisecond)
		}
		return nil
	})
	cfg := testConfig(addr)
	cfg.Packets = 300
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Busy == 0 || res.PacketsAcked != 300 || res.PacketsSent != 300+res.Busy {
		t.Fatalf("busy %d acked %d sent %d, want every BUSY resent and 300 acked", res.Busy, res.PacketsAcked, res.PacketsSent)
	}
	if s.packets.Load() != 300 {
		t.Fatalf("server accepted %d packets, want 300", s.packets.Load())
	}
	// A resend carries its packet's id: 300 ids, each accepted once.
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) != 300 {
		t.Fatalf("server accepted %d distinct ids, want 300", len(s.ids))
	}
	for id, n := range s.ids {
		if n != 1 {
			t.Fatalf("packet id %d accepted %d times", id, n)
		}
	}
}

func TestRejectedPacketIsAnError(t *testing.T) {
	var first atomic.Uint64
	_, addr := startSink(t, nil, func(p *frame.Packet) error {
		if first.CompareAndSwap(0, p.ID) {
			return server.Reject("test")
		}
		return nil
	})
	cfg := testConfig(addr)
	cfg.Conns = 1
	cfg.Packets = 50
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 1 || res.PacketsAcked != 49 || res.LastError == "" {
		t.Fatalf("errors %d acked %d last error %q, want 1 rejected and 49 acked", res.Errors, res.PacketsAcked, res.LastError)
	}
}

func TestHandlerFailureIsResent(t *testing.T) {
	// An unclassified handler error is answered BUSY: the packet comes
	// back and every packet still ends up acknowledged once.
	var n atomic.Int64
	s, addr := startSink(t, nil, func(p *frame.Packet) error {
		if n.Add(1) == 40 {
			return context.Canceled // unclassified: BUSY
		}
		return nil
	})
	cfg := testConfig(addr)
	cfg.Conns = 2
	cfg.Packets = 200
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacketsAcked != 200 || s.packets.Load() != 200 || res.Busy != 1 {
		t.Fatalf("acked %d, server %d, busy %d, want 200 acked once each after 1 BUSY", res.PacketsAcked, s.packets.Load(), res.Busy)
	}
}

func TestIdleConnsHeldAcrossIdleTimeout(t *testing.T) {
	_, addr := startSink(t, func(c *server.Config) { c.IdleTimeout = time.Second }, nil)
	cfg := testConfig(addr)
	cfg.Conns = 0
	cfg.IdleConns = 20
	cfg.Duration = 2500 * time.Millisecond // two and a half idle timeouts
	var ready atomic.Int64
	cfg.OnIdleReady = func(n int) { ready.Store(int64(n)) }
	began := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < cfg.Duration {
		t.Fatalf("idle connections held for %v, want the %v duration", d, cfg.Duration)
	}
	if res.IdleConns != 20 || ready.Load() != 20 || res.IdleConnsLost != 0 {
		t.Fatalf("idle %d (ready %d), lost %d: want 20 held through the idle timeout", res.IdleConns, ready.Load(), res.IdleConnsLost)
	}
}

func TestMessageTextIsNotTriviallyCompressible(t *testing.T) {
	lim := frame.DefaultLimits()
	zenc, err := newZstdEncoder(defaultLevel, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer zenc.Close()
	p, err := buildPool(newTextGen(1), zenc, nil, []byte("agent"), 64, 10, 200, &lim)
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(p.rawBytes) / float64(p.wire-64*frame.HeaderSize)
	if ratio >= 8 || ratio <= 1 {
		t.Fatalf("compression ratio %.2f, want realistic text (1 < ratio < 8)", ratio)
	}
	// Bodies are exactly the size asked for, printable, and differ.
	g := newTextGen(2)
	seen := map[string]bool{}
	for range 100 {
		m := g.message(time.Now(), 200)
		if len(m.Body) != 200 {
			t.Fatalf("body of %d bytes, want 200", len(m.Body))
		}
		for _, b := range m.Body {
			if b < 0x20 || b > 0x7e {
				t.Fatalf("body has byte %#x: %q", b, m.Body)
			}
		}
		seen[string(m.Body)] = true
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct bodies of 100", len(seen))
	}
}

func TestScheduleTimeOf(t *testing.T) {
	s, err := Profile("spike", 1)
	if err != nil {
		t.Fatal(err)
	}
	// 100 → 5,000 packets/s over 120 s: (100+5000)/2 × 120 packets.
	if got := s.Packets(); math.Abs(got-306000) > 1e-6 {
		t.Fatalf("spike has %g packets, want 306000", got)
	}
	f := func(n float64, want time.Duration) {
		t.Helper()
		got, ok := s.TimeOf(n)
		if !ok || math.Abs(float64(got-want)) > float64(time.Millisecond) {
			t.Fatalf("TimeOf(%g) = %v %v, want %v", n, got, ok, want)
		}
	}
	f(0, 0)
	f(100, 851_848*time.Microsecond) // 100t + 20.4167t² = 100
	f(306000-1e-9, 120*time.Second)
	if _, ok := s.TimeOf(306000); ok {
		t.Fatal("TimeOf past the end is ok")
	}
	var prev time.Duration
	for n := 0.0; n < 306000; n += 997 {
		d, _ := s.TimeOf(n)
		if d < prev {
			t.Fatalf("TimeOf not monotonic at %g", n)
		}
		prev = d
	}
	for _, name := range ProfileNames() {
		s, err := Profile(name, 60)
		if err != nil || s.validate() != nil {
			t.Fatalf("profile %s: %v", name, err)
		}
	}
	if _, err := Profile("nope", 1); err == nil {
		t.Fatal("unknown profile accepted")
	}
	if _, err := Profile("baseline", 0); err == nil {
		t.Fatal("scale 0 accepted")
	}
	b, _ := Profile("baseline", 10)
	if b.Duration() != 30*time.Second || b.RateAt(time.Second) != 10000 {
		t.Fatalf("baseline at scale 10: %v at %g/s", b.Duration(), b.RateAt(time.Second))
	}
}

func TestShares(t *testing.T) {
	row := func(name string, w float64, packets uint64) status.Analyzer {
		return status.Analyzer{Name: name, Weight: w, Packets: packets}
	}
	before := []status.Analyzer{row("a1", 0.4, 100), row("a2", 0.3, 50), row("a3", 0.2, 0), row("a4", 0.1, 7)}
	after := []status.Analyzer{row("a1", 0.4, 4100), row("a2", 0.3, 3050), row("a3", 0.2, 1990), row("a4", 0.1, 1017)}
	shares, worst := Shares(before, after)
	want := []float64{0.4, 0.3, 0.199, 0.101}
	for i, s := range shares {
		if math.Abs(s.ActualShare-want[i]) > 1e-9 || math.Abs(s.WeightShare-after[i].Weight) > 1e-9 {
			t.Fatalf("%s: share %g weight share %g, want %g %g", s.Name, s.ActualShare, s.WeightShare, want[i], after[i].Weight)
		}
	}
	if math.Abs(*worst-0.001) > 1e-9 {
		t.Fatalf("max share error %g, want 0.001", *worst)
	}
}

func TestValidate(t *testing.T) {
	f := func(edit func(*Config)) {
		t.Helper()
		c := DefaultConfig()
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
	f(func(c *Config) { c.Target = "" })
	f(func(c *Config) { c.Conns = 0 })
	f(func(c *Config) { c.Rate = -1 })
	f(func(c *Config) { c.Duration = 0 })
	f(func(c *Config) { c.MsgsPerPacket = 0 })
	f(func(c *Config) { c.MsgSize = 0 })
	f(func(c *Config) { c.Window = 0 })
	f(func(c *Config) { c.Packets = 5; c.Profile = Constant(1, time.Second) })
	if _, err := AnalyzersURL("http://"); err == nil {
		t.Fatal("admin URL without host accepted")
	}
	if u, _ := AnalyzersURL("127.0.0.1:7480"); u != "http://127.0.0.1:7480/api/v1/analyzers" {
		t.Fatalf("admin URL %s", u)
	}
}
