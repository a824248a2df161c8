package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLogger drops records below Error; set -v-worthy logs with testLogger.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// recorder is a Handler that records what it saw and answers with result.
type recorder struct {
	mu     sync.Mutex
	ids    []uint64
	seqs   []uint64
	metas  []server.Meta
	result func(p *frame.Packet) error
}

func (r *recorder) HandlePacket(ctx context.Context, md *server.Meta, p *frame.Packet) error {
	r.mu.Lock()
	r.ids = append(r.ids, p.ID)
	r.seqs = append(r.seqs, md.Seq)
	r.metas = append(r.metas, *md)
	res := r.result
	r.mu.Unlock()
	if res != nil {
		return res(p)
	}
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// start runs a server on 127.0.0.1:0 with cfg changed by edit, closed at the
// end of the test.
func start(t *testing.T, h server.Handler, edit func(*server.Config)) (*server.Server, string) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	cfg.DrainTimeout = 2 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	s, err := server.New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Addr().String()
}

func dial(t *testing.T, addr string) *servertest.Client {
	t.Helper()
	c := dialB(t, addr)
	t.Cleanup(func() { c.Close() })
	return c
}

func dialB(t testing.TB, addr string) *servertest.Client {
	t.Helper()
	c, err := servertest.Dial(addr, "agent-1")
	if err != nil {
		t.Fatalf("cannot connect: %v", err)
	}
	return c
}

func dialRaw(t *testing.T, addr string) *servertest.Client {
	t.Helper()
	c, err := servertest.DialRaw(addr)
	if err != nil {
		t.Fatalf("cannot connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func packet(id uint64, msgs int) *frame.Packet {
	p := &frame.Packet{ID: id, AgentID: []byte("agent-1"), TraceID: []byte("trace-1")}
	for i := range msgs {
		p.Messages = append(p.Messages, frame.Message{
			Timestamp: 1_700_000_000_000_000_000 + int64(i),
			Severity:  frame.SevInfo,
			Facility:  16,
			Hostname:  []byte("host-a"),
			App:       []byte("app"),
			Body:      []byte(fmt.Sprintf("message %d of packet %d", i, id)),
			Attrs:     []frame.Attr{{Key: []byte("k"), Value: []byte("v")}},
		})
	}
	return p
}

// expect reads the next frame and checks its type, sequence and (for
// ERROR/GOAWAY) code.
func expect(t *testing.T, c *servertest.Client, typ frame.Type, seq uint64, code frame.Code) servertest.Frame {
	t.Helper()
	f, err := c.Next()
	if err != nil {
		t.Fatalf("want %s seq=%d, got error %v", typ, seq, err)
	}
	if f.Type != typ || f.Seq != seq || f.Code != code {
		t.Fatalf("want %s seq=%d code=%s, got %s", typ, seq, code, f)
	}
	return f
}

// expectPast is expect, after skipping cumulative ACKs below seq: the
// server answers once per read, and a burst written at once may arrive in
// several reads, each answer ending with the ACK point so far.
func expectPast(t *testing.T, c *servertest.Client, typ frame.Type, seq uint64, code frame.Code) servertest.Frame {
	t.Helper()
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("want %s seq=%d, got error %v", typ, seq, err)
		}
		if f.Type == frame.TypeAck && f.Seq < seq {
			continue
		}
		if f.Type != typ || f.Seq != seq || f.Code != code {
			t.Fatalf("want %s seq=%d code=%s, got %s", typ, seq, code, f)
		}
		return f
	}
}

// expectClosed checks that the server closed the connection.
func expectClosed(t *testing.T, c *servertest.Client) {
	t.Helper()
	f, err := c.Next()
	if err == nil {
		t.Fatalf("want the connection closed, got %s", f)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("want the connection closed, still open: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
