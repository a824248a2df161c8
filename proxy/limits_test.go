package proxy_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/proxy"
)

// expectError reads frames (skipping a WELCOME) until the ERROR the
// connection must end with.
func expectError(t *testing.T, c *servertest.Client, code frame.Code) {
	t.Helper()
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("want ERROR %s, got %v", code, err)
		}
		if f.Type == frame.TypeWelcome {
			continue
		}
		if f.Type != frame.TypeError || f.Seq != 0 || f.Code != code {
			t.Fatalf("got %s, want ERROR seq=0 %s", f, code)
		}
		return
	}
}

// Before HELLO, a header announcing a large payload is refused as soon as
// its 32 bytes are in (frame/limits.go: an unauthenticated peer makes
// logdist buffer at most 4 KiB). It used to be buffered until the payload
// came or the handshake timed out.
func TestNonHelloHeaderRefusedAtOnce(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) { c.HandshakeTimeout = time.Minute })
	defer stopAll(t, s, as)
	c, err := servertest.DialRaw(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<20, 1<<20, 0)); err != nil {
		t.Fatal(err)
	}
	c.Timeout = 10 * time.Second // well below the handshake timeout
	expectError(t, c, frame.CodeBadHandshake)
}

func dialFrom(t *testing.T, local, addr string) (*servertest.Client, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return servertest.New(nc), nil
}

// --max-conns and --max-conns-per-ip bound agent connections: one over
// gets ERROR overloaded, and a place frees when a connection closes.
func TestConnectionLimits(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) {
		c.MaxConns = 3
		c.MaxConnsPerIP = 2
	})
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	addr := s.Addr().String()
	hello := func(c *servertest.Client, id string) error {
		return c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte(id)})
	}
	var open []*servertest.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := dialFrom(t, "127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if err := hello(c, "a"); err != nil {
			t.Fatalf("connection %d from 127.0.0.1: %v", i, err)
		}
	}
	// A third from the same address is one too many for it...
	c, err := dialFrom(t, "127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, c, frame.CodeOverloaded)
	c.Close()
	// ...but not for another address, up to the global bound.
	c, err = dialFrom(t, "127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, c)
	if err := hello(c, "b"); err != nil {
		t.Fatalf("connection from 127.0.0.2: %v", err)
	}
	c, err = dialFrom(t, "127.0.0.3", addr)
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, c, frame.CodeOverloaded)
	c.Close()
	// A closed connection frees its place.
	open[0].Close()
	open = open[1:]
	waitFor(t, "a place to free", 5*time.Second, func() bool {
		c, err := dialFrom(t, "127.0.0.1", addr)
		if err != nil {
			return false
		}
		ok := hello(c, "a") == nil
		if ok {
			open = append(open, c)
		} else {
			c.Close()
		}
		return ok
	})
}

// Half-sent frames count against --max-partial-bytes, across agents: the
// connection whose partial frame would cross it is closed with ERROR
// overloaded, and a connection that closes gives its bytes back. 300
// connections each holding half of a 1 MiB frame took logdist from 11 MB
// to 331 MB.
func TestPartialFramesBounded(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) { c.MaxPartialBytes = 1 << 20 })
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	const part = 400 << 10
	holder := func(id string) *servertest.Client {
		t.Helper()
		c, err := servertest.DialRaw(s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte(id)}); err != nil {
			t.Fatal(err)
		}
		b := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<20-64, 1<<20-64, 0)
		if err := c.Write(append(b, make([]byte, part)...)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	partial := func() float64 { return metricSum(s, "logdist_partial_frame_bytes") }
	a := holder("a")
	defer a.Close()
	waitFor(t, "a's half frame counted", 5*time.Second, func() bool { return partial() >= part })
	b := holder("b")
	defer b.Close()
	waitFor(t, "b's half frame counted", 5*time.Second, func() bool { return partial() >= 2*part })
	c := holder("c") // 1.2 MiB: over the bound
	defer c.Close()
	expectError(t, c, frame.CodeOverloaded)
	a.Close()
	b.Close()
	waitFor(t, "the bytes given back", 5*time.Second, func() bool { return partial() == 0 })
}

// A frame left half-sent for the idle timeout closes the connection, even
// if the peer trickles a byte now and then (which keeps it from being
// idle).
func TestTricklingFrameTimesOut(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) { c.IdleTimeout = 300 * time.Millisecond })
	defer stopAll(t, s, as)
	c, err := servertest.DialRaw(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte("t")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1000, 1000, 0)); err != nil {
		t.Fatal(err)
	}
	done := make(chan servertest.Frame, 1)
	go func() {
		f, _ := c.Next()
		done <- f
	}()
	tick := time.NewTicker(50 * time.Millisecond) // the trickle
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-done:
			if f.Type != frame.TypeError || f.Code != frame.CodeIdleTimeout {
				t.Fatalf("got %s, want ERROR idle_timeout", f)
			}
			return
		case <-tick.C:
			c.Conn.Write([]byte{0})
		case <-deadline:
			t.Fatal("a trickling half-sent frame kept its connection open")
		}
	}
}

// The ERROR reaches the agent even when what it sent after the refused
// header is left unread. logdist half-closes and drains the connection
// before closing it: a plain close makes the kernel answer the unread
// bytes with a reset, which on a real network can overtake and destroy the
// ERROR (on loopback the kernel happens to deliver the ERROR first, so
// this test shows the behaviour, not the race).
func TestRefusalSurvivesUnreadPayload(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, nil)
	defer stopAll(t, s, as)
	for i := 0; i < 5; i++ {
		c, err := servertest.DialRaw(s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 512<<10, 512<<10, 0)
		b = append(b, make([]byte, 512<<10)...)
		c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Conn.Write(b) // as an agent would: all of it, then read the answers
		expectError(t, c, frame.CodeBadHandshake)
		c.Close()
	}
}

// The proxy's agents go through the same Auth hook as the analyzer
// library's clients: a refused HELLO is ERROR auth and a close.
func TestAuthHook(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) {
		c.Auth = func(h *frame.Hello, _ session.Peer) (string, error) {
			if string(h.Token) != "s3cret" {
				return "", fmt.Errorf("unknown token for agent %s", h.AgentID)
			}
			return "fleet-a", nil
		}
	})
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	c, err := servertest.DialRaw(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte("a"), Token: []byte("guess")})
	var re *frame.RemoteError
	if !errors.As(err, &re) || re.Code != frame.CodeAuth || !strings.Contains(re.Reason, "unknown token for agent a") {
		t.Fatalf("wrong token: %v, want ERROR auth with the hook's reason", err)
	}
	ok, err := servertest.DialRaw(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if err := ok.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte("a"), Token: []byte("s3cret")}); err != nil {
		t.Fatalf("right token: %v", err)
	}
	sendAll(t, ok, "a", 1, 10, 8)
}
