package server_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/session"
)

func TestHandshake(t *testing.T) {
	_, addr := start(t, &recorder{}, func(c *server.Config) {
		c.Window = 64
		c.ServerID = "test-server"
		c.IdleTimeout = 7 * time.Second
	})
	f := func(caps frame.Capabilities, window uint32, wantCaps frame.Capabilities, wantWindow uint32) {
		t.Helper()
		c := dialRaw(t, addr)
		err := c.Handshake(&frame.Hello{Caps: caps, Window: window, AgentID: []byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		w := c.Welcome
		if w.Caps != wantCaps || w.Window != wantWindow || w.MaxFrame != frame.DefaultLimits().MaxFrame ||
			w.IdleTimeoutMs != 7000 || string(w.ServerID) != "test-server" {
			t.Fatalf("WELCOME %+v, want caps %b window %d", w, wantCaps, wantWindow)
		}
	}
	f(frame.CapZstd, 10, frame.CapZstd, 10)
	f(0, 1000, 0, 64)
	f(frame.CapZstd|1<<7, 64, frame.CapZstd, 64)
}

func TestHandshakeRejected(t *testing.T) {
	auth := func(h *frame.Hello, _ session.Peer) (string, error) {
		if string(h.Token) != "secret" {
			return "", errors.New("unknown token for agent " + string(h.AgentID))
		}
		return "", nil
	}
	_, addr := start(t, &recorder{}, func(c *server.Config) { c.Auth = auth })

	f := func(name string, send []byte, code frame.Code) {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr)
			if err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			expect(t, c, frame.TypeError, 0, code)
			expectClosed(t, c)
		})
	}
	hello := func(token string, window uint32) []byte {
		return frame.AppendHello(nil, &frame.Hello{Window: window, AgentID: []byte("a"), Token: []byte(token)})
	}
	f("bad token", hello("guess", 8), frame.CodeAuth)
	f("window 0", hello("secret", 0), frame.CodeBadHandshake)
	f("PING first", frame.AppendPing(nil, 1), frame.CodeBadHandshake)
	f("DATA first", (&frame.Encoder{}).AppendData(nil, 1, packet(1, 1), false), frame.CodeBadHandshake)
	f("SACK first", frame.AppendSack(nil, 0, []frame.SeqRange{{First: 5, Last: 5}}), frame.CodeBadHandshake)
	f("garbage first", []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), frame.CodeBadMagic)

	c := dialRaw(t, addr)
	if err := c.Handshake(&frame.Hello{Window: 8, AgentID: []byte("a"), Token: []byte("secret")}); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	_, addr := start(t, &recorder{}, func(c *server.Config) { c.HandshakeTimeout = 100 * time.Millisecond })
	c := dialRaw(t, addr)
	expect(t, c, frame.TypeError, 0, frame.CodeHandshakeTimeout)
	expectClosed(t, c)
}

func TestAckBatched(t *testing.T) {
	rec := &recorder{}
	srv, addr := start(t, rec, nil)
	c := dial(t, addr)
	var b []byte
	for i := range 100 {
		b = c.AppendData(b, packet(uint64(1000+i), 3), i%2 == 0)
	}
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	acks := 0
	for last := uint64(0); last < 100; {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after %d ACKs up to %d: %v", acks, last, err)
		}
		if f.Type != frame.TypeAck || f.Seq <= last {
			t.Fatalf("want a growing ACK after %d, got %s", last, f)
		}
		last = f.Seq
		acks++
	}
	// One write of 100 frames is read in very few reads: the server
	// answers every batch with one cumulative ACK, not one per frame.
	if acks > 10 {
		t.Fatalf("%d ACKs for 100 frames sent in one write; want a few cumulative ones", acks)
	}
	t.Logf("100 DATA frames, %d ACKs", acks)
	for i, id := range rec.ids {
		if id != uint64(1000+i) || rec.seqs[i] != uint64(i+1) {
			t.Fatalf("packet %d: id %d seq %d", i, id, rec.seqs[i])
		}
	}
	if !rec.metas[0].Compressed || rec.metas[1].Compressed || rec.metas[0].AgentID != "agent-1" ||
		rec.metas[0].RawBytes <= rec.metas[0].PayloadBytes {
		t.Fatalf("meta of compressed and plain packets: %+v %+v", rec.metas[0], rec.metas[1])
	}
	var out bytes.Buffer
	srv.Metrics().WritePrometheus(&out)
	for _, want := range []string{
		"frame_server_packets_acked_total 100\n",
		"frame_server_messages_total 300\n",
		`frame_server_frames_total{type="DATA"} 100` + "\n",
		"frame_server_connections_active 1\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, out.String())
		}
	}
}

func TestBadSequence(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	f := func(name string, seqs ...uint64) {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			var enc frame.Encoder
			var b []byte
			for _, s := range seqs {
				b = enc.AppendData(b, s, packet(s, 1), false)
			}
			if err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			for {
				fr, err := c.Next()
				if err != nil {
					t.Fatal(err)
				}
				if fr.Type == frame.TypeAck {
					continue
				}
				if fr.Type != frame.TypeError || fr.Seq != 0 || fr.Code != frame.CodeBadSequence {
					t.Fatalf("want ERROR bad_sequence, got %s", fr)
				}
				break
			}
			expectClosed(t, c)
		})
	}
	f("gap", 1, 3)
	f("repeat", 1, 2, 2)
	f("starts at 2", 2)
}

func TestWindowExceeded(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	c := dialRaw(t, addr)
	// HELLO and five DATA frames in one write: the server reads them in one
	// go, so none is answered before the fifth arrives.
	b := frame.AppendHello(nil, &frame.Hello{Window: 4, AgentID: []byte("a")})
	for range 5 {
		b = c.AppendData(b, packet(1, 1), false)
	}
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeWelcome, 0, 0)
	expect(t, c, frame.TypeAck, 4, 0) // what was accepted is acknowledged first
	expect(t, c, frame.TypeError, 0, frame.CodeWindowExceeded)
	expectClosed(t, c)
}

func TestFatalDecodeErrors(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	good := (&frame.Encoder{}).AppendData(nil, 1, packet(1, 2), false)
	f := func(name string, edit func(b []byte) []byte, code frame.Code) {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			if err := c.Write(edit(bytes.Clone(good))); err != nil {
				t.Fatal(err)
			}
			expect(t, c, frame.TypeError, 0, code)
			expectClosed(t, c)
		})
	}
	f("bad checksum", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, frame.CodeBadChecksum)
	f("bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, frame.CodeBadMagic)
	f("bad version", func(b []byte) []byte { b[2] = 9; return b }, frame.CodeBadVersion)
	f("bad type", func(b []byte) []byte { b[3] = 0x7f; return b }, frame.CodeBadType)
	f("bad flags", func(b []byte) []byte { b[4] = 0x80; return b }, frame.CodeProtocol)
	f("garbage", func([]byte) []byte { return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64) }, frame.CodeBadMagic)
	f("WELCOME from a client", func([]byte) []byte {
		return frame.AppendWelcome(nil, &frame.Welcome{Window: 1, MaxFrame: 4096})
	}, frame.CodeProtocol)
	f("SACK from a client", func([]byte) []byte {
		return frame.AppendSack(nil, 0, []frame.SeqRange{{First: 5, Last: 5}})
	}, frame.CodeProtocol)
	f("second HELLO", func([]byte) []byte {
		return frame.AppendHello(nil, &frame.Hello{Window: 1, AgentID: []byte("a")})
	}, frame.CodeProtocol)
}

func TestOversizedLengthRejectedFromHeader(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	c := dial(t, addr)
	// Announce 200 MiB and send none of it: the answer must come from the
	// header alone, without buffering or allocating the payload.
	h := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 200<<20, 200<<20, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := c.Write(h); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 0, frame.CodeFrameTooLarge)
	expectClosed(t, c)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("allocated %d bytes answering a 200 MiB header", grew)
	}

	// A control frame is bounded by the protocol, whatever the limits.
	c = dial(t, addr)
	if err := c.Write(frame.AppendHeader(nil, frame.TypeError, 0, 0, 0, 1<<20, 1<<20, 0)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 0, frame.CodeFrameTooLarge)
}

func TestPacketErrorKeepsConnection(t *testing.T) {
	rec := &recorder{}
	srv, addr := start(t, rec, func(c *server.Config) { c.Limits.MaxField = 16 })
	c := dial(t, addr)

	// Valid header and CRC, but the packet has a byte after its last field.
	junk := append(frame.AppendPacket(nil, packet(1, 1)), 0)
	long := packet(3, 1)
	long.Messages[0].Hostname = bytes.Repeat([]byte("h"), 17) // above MaxField
	b := frame.AppendFrame(nil, frame.TypeData, 1, 1, junk)
	c.SetSeq(1)
	b = c.AppendData(b, packet(2, 1), false)
	b = c.AppendData(b, long, false)
	b = c.AppendData(b, packet(4, 1), true)
	b = appendZstdGarbage(b, 5)
	c.SetSeq(5)
	b = c.AppendData(b, packet(6, 1), false)
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 1, frame.CodeMalformed)
	expect(t, c, frame.TypeError, 3, frame.CodeFieldTooLong)
	expect(t, c, frame.TypeError, 5, frame.CodeBadCompression)
	expect(t, c, frame.TypeAck, 6, 0)
	if got := rec.ids; len(got) != 3 || got[0] != 2 || got[1] != 4 || got[2] != 6 {
		t.Fatalf("handler saw packets %v, want [2 4 6]", got)
	}
	var out bytes.Buffer
	srv.Metrics().WritePrometheus(&out)
	if !strings.Contains(out.String(), `frame_server_packets_rejected_total{code="malformed"} 1`) {
		t.Fatalf("rejects not counted:\n%s", out.String())
	}
}

// appendZstdGarbage appends a DATA frame flagged zstd whose payload is not
// zstd.
func appendZstdGarbage(dst []byte, seq uint64) []byte {
	payload := bytes.Repeat([]byte{0x42}, 64)
	dst = frame.AppendHeader(dst, frame.TypeData, frame.FlagZstd, seq, 1, 64, 1000, frame.Checksum(payload))
	return append(dst, payload...)
}

func TestHandlerVerdicts(t *testing.T) {
	rec := &recorder{result: func(p *frame.Packet) error {
		switch p.ID {
		case 1:
			return server.Busy(250 * time.Millisecond)
		case 2:
			return server.ErrBusy
		case 3:
			return errors.New("disk full")
		case 4:
			return server.Reject("cannot parse this")
		case 6:
			return &frame.Error{Code: frame.CodeInternal, Msg: "analyzer failed"}
		}
		return nil
	}}
	_, addr := start(t, rec, func(c *server.Config) { c.BusyRetryAfter = 70 * time.Millisecond })
	c := dial(t, addr)
	for id := uint64(1); id <= 6; id++ {
		if _, err := c.Send(packet(id, 1), false); err != nil {
			t.Fatal(err)
		}
		switch id {
		case 1:
			if f := expect(t, c, frame.TypeBusy, 1, 0); f.RetryAfter != 250*time.Millisecond {
				t.Fatalf("retry-after %s", f.RetryAfter)
			}
		case 2, 3:
			if f := expect(t, c, frame.TypeBusy, id, 0); f.RetryAfter != 70*time.Millisecond {
				t.Fatalf("retry-after %s", f.RetryAfter)
			}
		case 4:
			if f := expect(t, c, frame.TypeError, 4, frame.CodeRejected); f.Reason != "cannot parse this" {
				t.Fatalf("reason %q", f.Reason)
			}
		}
		switch id {
		case 1, 2, 3, 4:
			// BUSY and ERROR resolve the frame; the ACK after them covers it.
			expect(t, c, frame.TypeAck, id, 0)
		case 5:
			expect(t, c, frame.TypeAck, 5, 0)
		case 6:
			expect(t, c, frame.TypeError, 0, frame.CodeInternal)
			expectClosed(t, c)
		}
	}
}

func TestPingPong(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	c := dial(t, addr)
	if err := c.Write(frame.AppendPing(frame.AppendPing(nil, 42), 1<<63)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypePong, 42, 0)
	expect(t, c, frame.TypePong, 1<<63, 0)
}

func TestIdleTimeout(t *testing.T) {
	_, addr := start(t, &recorder{}, func(c *server.Config) { c.IdleTimeout = 150 * time.Millisecond })
	c := dial(t, addr)
	if _, err := c.Send(packet(1, 1), false); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeAck, 1, 0)
	expect(t, c, frame.TypeError, 0, frame.CodeIdleTimeout)
	expectClosed(t, c)
}

func TestSlowTrickleClosedByDeadline(t *testing.T) {
	_, addr := start(t, &recorder{}, func(c *server.Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := dial(t, addr)
	// One byte of a valid frame every 20 ms keeps bytes flowing, far
	// within the idle timeout between bytes; the frame never completes in
	// time and the per-frame deadline ends it.
	b := c.AppendData(nil, packet(1, 5), false)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, x := range b {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Conn.Write([]byte{x}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	f := expect(t, c, frame.TypeError, 0, frame.CodeIdleTimeout)
	if !strings.Contains(f.Reason, "not complete") {
		t.Fatalf("reason %q", f.Reason)
	}
	expectClosed(t, c)
}

func TestShutdownSendsGoAway(t *testing.T) {
	rec := &recorder{}
	srv, addr := start(t, rec, func(c *server.Config) { c.DrainTimeout = 10 * time.Second })
	c := dial(t, addr)
	if _, err := c.Send(packet(1, 1), false); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeAck, 1, 0)

	closed := make(chan error)
	go func() { closed <- srv.Close() }()
	expect(t, c, frame.TypeGoAway, 0, frame.CodeShutdown)
	// The listener is closed: new connections are refused.
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Error("server still accepts connections after Close")
	}
	// DATA after GOAWAY is handed back, not processed.
	if _, err := c.Send(packet(2, 1), false); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, c, frame.TypeBusy, 2, 0); f.RetryAfter != 0 {
		t.Fatalf("retry-after %s, want 0", f.RetryAfter)
	}
	if rec.count() != 1 {
		t.Fatalf("handler saw %d packets, want 1", rec.count())
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a client was still connected")
	default:
	}
	c.Close() // the client leaves: Close returns without waiting for the drain timeout
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the last client left")
	}
}

func TestShutdownDrainTimeout(t *testing.T) {
	inHandler := make(chan struct{})
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		close(inHandler)
		<-ctx.Done() // a stuck handler is released by the drain timeout
		return ctx.Err()
	})
	srv, addr := start(t, h, func(c *server.Config) { c.DrainTimeout = 100 * time.Millisecond })
	c := dial(t, addr)
	idle := dial(t, addr) // never leaves on its own
	if _, err := c.Send(packet(1, 1), false); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	expect(t, idle, frame.TypeGoAway, 0, frame.CodeShutdown)
	expectClosed(t, idle)
	if err := srv.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := srv.Serve(mustListen(t)); !errors.Is(err, server.ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestHandshakeDuringShutdown(t *testing.T) {
	srv, addr := start(t, &recorder{}, func(c *server.Config) { c.DrainTimeout = 5 * time.Second })
	c := dialRaw(t, addr)
	waitFor(t, "the connection to be tracked", func() bool { return activeConns(srv) == 1 })
	closed := make(chan error)
	go func() { closed <- srv.Close() }()
	waitFor(t, "the listener to close", func() bool {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	err := c.Handshake(&frame.Hello{Window: 1, AgentID: []byte("late")})
	var re *frame.RemoteError
	if !errors.As(err, &re) || re.Code != frame.CodeShutdown {
		t.Fatalf("HELLO during shutdown: %v, want ERROR shutdown", err)
	}
	c.Close()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestMaxConns(t *testing.T) {
	srv, addr := start(t, &recorder{}, func(c *server.Config) { c.MaxConns = 1 })
	dial(t, addr)
	waitFor(t, "one connection", func() bool { return activeConns(srv) == 1 })
	c := dialRaw(t, addr)
	expect(t, c, frame.TypeError, 0, frame.CodeOverloaded)
}

func TestServersShareNothing(t *testing.T) {
	var srvs []*server.Server
	for i := range 3 {
		srv, addr := start(t, &recorder{}, nil)
		srvs = append(srvs, srv)
		c := dial(t, addr)
		var b []byte
		for range i + 1 {
			b = c.AppendData(b, packet(1, 1), false)
		}
		if err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAck(uint64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	for i, srv := range srvs {
		var out bytes.Buffer
		srv.Metrics().WritePrometheus(&out)
		want := "frame_server_packets_acked_total " + string(rune('1'+i)) + "\n"
		if !strings.Contains(out.String(), want) {
			t.Errorf("server %d: want %q in\n%s", i, want, out.String())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(name string, edit func(*server.Config), ok bool) {
		t.Helper()
		cfg := server.DefaultConfig()
		edit(&cfg)
		_, err := server.New(cfg, &recorder{})
		if (err == nil) != ok {
			t.Errorf("%s: New error %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, server.ErrBadConfig) {
			t.Errorf("%s: %v does not wrap ErrBadConfig", name, err)
		}
	}
	f("default", func(*server.Config) {}, true)
	f("window 0", func(c *server.Config) { c.Window = 0 }, false)
	f("max frame 0", func(c *server.Config) { c.Limits.MaxFrame = 0 }, false)
	f("no idle timeout", func(c *server.Config) { c.IdleTimeout = 0 }, false)
	f("no handshake timeout", func(c *server.Config) { c.HandshakeTimeout = 0 }, false)
	f("negative drain", func(c *server.Config) { c.DrainTimeout = -1 }, false)
	f("negative max conns", func(c *server.Config) { c.MaxConns = -1 }, false)
	f("long server id", func(c *server.Config) { c.ServerID = strings.Repeat("x", 256) }, false)
	if _, err := server.New(server.DefaultConfig(), nil); err == nil {
		t.Error("New accepted a nil handler")
	}
}

func activeConns(srv *server.Server) int {
	var out bytes.Buffer
	srv.Metrics().WritePrometheus(&out)
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "frame_server_connections_active "); ok {
			return int(v[0] - '0')
		}
	}
	return -1
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestRunAndListenAndServe(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	cfg.DrainTimeout = 100 * time.Millisecond

	s1, err := server.New(cfg, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s1.Run(ctx) }()
	waitFor(t, "Run to listen", func() bool { return s1.Addr() != nil })
	c := dial(t, s1.Addr().String())
	if _, err := c.Send(packet(1, 1), false); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeAck, 1, 0)
	c.Close()
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}

	s2, err := server.New(cfg, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s2.ListenAndServe() }()
	waitFor(t, "ListenAndServe to listen", func() bool { return s2.Addr() != nil })
	dial(t, s2.Addr().String())
	s2.Close()
	if err := <-served; !errors.Is(err, server.ErrClosed) {
		t.Fatalf("ListenAndServe after Close: %v", err)
	}
}

// PROTOCOL.md 3.1 rules 8-10: a DATA header over MaxRaw or MaxMessages,
// or with a count its raw length cannot hold, rejects that packet only
// (ERROR with its sequence); its payload is skipped and the connection
// goes on. They used to close the connection, and a client whose limits
// are larger resent the same packet on every new one.
func TestHeaderPacketLimitsRejectOnePacket(t *testing.T) {
	rec := &recorder{}
	_, addr := start(t, rec, func(c *server.Config) {
		c.Limits.MaxMessages = 10
		c.Limits.MaxFrame = 32 << 10
		c.Limits.MaxRaw = 64 << 10
	})
	c := dial(t, addr)
	b := c.AppendData(nil, packet(1, 11), false) // 11 messages > MaxMessages
	big := packet(2, 1)
	big.Messages[0].Body = bytes.Repeat([]byte("x"), 70<<10) // raw > MaxRaw
	b = c.AppendData(b, big, true)
	payload := bytes.Repeat([]byte{1}, 16) // 100 messages cannot fit in 16 bytes
	b = frame.AppendHeader(b, frame.TypeData, 0, 3, 100, 16, 16, frame.Checksum(payload))
	b = append(b, payload...)
	c.SetSeq(3)
	b = c.AppendData(b, packet(4, 1), false)
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expectPast(t, c, frame.TypeError, 1, frame.CodeTooManyMessages)
	expectPast(t, c, frame.TypeError, 2, frame.CodeRawTooLarge)
	expectPast(t, c, frame.TypeError, 3, frame.CodeTooManyMessages)
	expectPast(t, c, frame.TypeAck, 4, 0)
	if got := rec.ids; len(got) != 1 || got[0] != 4 {
		t.Fatalf("handler saw packets %v, want [4]", got)
	}
}

// A peer that has not said HELLO and announces a large frame costs
// nothing: the header alone is refused (only a HELLO of at most 4 KiB is
// admitted before the handshake). The server used to allocate the
// announced payload at once, then to buffer what arrived until the
// handshake timeout.
func TestAnnouncedLengthNotAllocated(t *testing.T) {
	_, addr := start(t, &recorder{}, func(c *server.Config) {
		c.Limits.MaxFrame = 128 << 20
		c.Limits.MaxRaw = 128 << 20
		c.HandshakeTimeout = 300 * time.Millisecond
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := dialRaw(t, addr)
	b := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 128<<20, 128<<20, 0)
	b = append(b, make([]byte, 4096)...) // and 4 KiB of it
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 0, frame.CodeBadHandshake)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("allocated %d MiB for 4 KiB of a 128 MiB frame", grew>>20)
	}
}

// PROTOCOL.md 4: receivers ignore the sequence of HELLO. A HELLO with a
// sequence used to be refused with bad_handshake, which clients take as
// permanent.
func TestHelloSequenceIgnored(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	c := dialRaw(t, addr)
	b := frame.AppendHello(nil, &frame.Hello{Window: 8, AgentID: []byte("a")})
	frame.Header(b).SetSeq(7)
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeWelcome, 0, 0)
}

// warnCounter counts log records at Warn and above.
type warnCounter struct{ n *atomic.Int64 }

func (h warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h warnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h warnCounter) WithGroup(string) slog.Handler      { return h }

// Packet ERROR frames from a client are logged at most once per interval,
// like rejects: 5,000 of them in 185 KB used to be 5,000 Warn records.
func TestPeerErrorsLogThrottled(t *testing.T) {
	var n atomic.Int64
	_, addr := start(t, &recorder{}, func(c *server.Config) { c.Logger = slog.New(warnCounter{&n}) })
	c := dial(t, addr)
	var b []byte
	for i := range 5000 {
		b = frame.AppendError(b, uint64(i+1), frame.CodeMalformed, "x")
	}
	b = frame.AppendPing(b, 9)
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypePong, 9, 0)
	if n.Load() > 10 {
		t.Fatalf("%d Warn records for 5000 packet ERRORs", n.Load())
	}
}

// A zstd frame without a content size that decodes past the header's raw
// length is a zip bomb: raw_too_large 0x105 (PROTOCOL.md 8), whatever
// error the zstd library gives. One made by the zstd command-line tool
// from 100 KB of zeros used to be answered bad_compression 0x104.
func TestZipBombFromZstdCLI(t *testing.T) {
	_, addr := start(t, &recorder{}, nil)
	c := dial(t, addr)
	z := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x55, 0x00, 0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x9b, 0x86,
		0x39, 0xc0, 0x02, 0xdb, 0x23, 0x4e, 0xf3} // head -c 100000 /dev/zero | zstd -c
	b := frame.AppendHeader(nil, frame.TypeData, frame.FlagZstd, 1, 1, uint32(len(z)), 4096, frame.Checksum(z))
	if err := c.Write(append(b, z...)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 1, frame.CodeRawTooLarge)
}

// A slow handler behind a backlog still answers while the backlog lasts:
// ACKs at least every answerEvery (plus a packet's handling), not only
// once the read buffer is empty. With 5 ms per packet and 150 packets
// buffered, the server used to be silent for 750 ms, longer than a
// client's heartbeat timeout: logdist marked a slow, live analyzer down.
func TestSlowHandlerAnswersDuringBacklog(t *testing.T) {
	rec := &recorder{result: func(*frame.Packet) error {
		time.Sleep(5 * time.Millisecond) // the slow analyzer being simulated, not a wait
		return nil
	}}
	_, addr := start(t, rec, nil)
	c := dial(t, addr)
	var b []byte
	const n = 150
	for i := range n {
		b = c.AppendData(b, packet(uint64(1+i), 1), false)
	}
	sent := time.Now()
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	var gaps []time.Duration
	last, prev := uint64(0), sent
	for last < n {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after ACK %d: %v", last, err)
		}
		if f.Type != frame.TypeAck {
			continue
		}
		now := time.Now()
		gaps = append(gaps, now.Sub(prev))
		prev, last = now, f.Seq
	}
	worst := slices.Max(gaps)
	t.Logf("%d ACKs over %v, longest silence %v", len(gaps), time.Since(sent), worst)
	if worst > 200*time.Millisecond {
		t.Fatalf("silent for %v with a backlog of a 5 ms handler; want answers every ~10 ms", worst)
	}
	if len(gaps) < 10 {
		t.Fatalf("%d ACKs for %d packets handled over ~750 ms; want them spread", len(gaps), n)
	}
}
