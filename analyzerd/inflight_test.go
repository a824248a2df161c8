package analyzerd

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
)

func TestConcurrentCopyIsNotAckedEarly(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Server.DrainTimeout = 50 * time.Millisecond // releases the stuck handler at Close
	cfg.Delay = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var cs [2]*servertest.Client
	for i := range cs {
		if cs[i], err = servertest.Dial(a.Addr().String(), "logdist-1"); err != nil {
			t.Fatal(err)
		}
		defer cs[i].Close()
	}
	p := &frame.Packet{ID: 7, AgentID: []byte("agent-1"), Messages: []frame.Message{{Body: []byte("slow")}}}
	if _, err := cs[0].Send(p, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		n := len(a.inflight)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first copy never started processing")
		}
		time.Sleep(time.Millisecond)
	}
	// While the first copy is being processed, another must not be acked
	// as a duplicate: the first might still fail.
	seq, err := cs[1].Send(p, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cs[1].Next()
	if err != nil || f.Type != frame.TypeBusy || f.Seq != seq {
		t.Fatalf("copy of a packet in progress: got %v %v, want BUSY", f, err)
	}
	if s := a.Stats(); s.Packets != 0 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}
