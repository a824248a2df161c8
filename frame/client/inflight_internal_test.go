package client

import (
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

// testConn returns a client (never connected) and a connection of it with
// no socket, to drive its frame handlers directly.
func testConn(t *testing.T) (*Client, *conn) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addrs = []string{"127.0.0.1:1"}
	cfg.CloseTimeout = 0
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, &conn{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// An ACK trims the inflight list without leaving the acknowledged packets
// (and their frames) reachable from its backing array, where MaxPending
// does not count them.
func TestAckedPacketsReleased(t *testing.T) {
	c, cn := testConn(t)
	rec := &flushRec{idx: 1, open: 64}
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	for i := 1; i <= 64; i++ {
		p := &packet{id: uint64(i), msgs: 1, size: 1, frame: make([]byte, 1<<10), rec: rec}
		c.pending++
		c.pendMsgs++
		cn.seq++
		cn.inflight = append(cn.inflight, inflight{cn.seq, p})
		cn.unresolved++
	}
	backing := cn.inflight[:cap(cn.inflight)]
	c.mu.Unlock()
	if _, err := cn.onAck(64, nil); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range backing {
		if e.p != nil {
			t.Fatalf("entry %d of the inflight array still holds packet %d after ACK 64", i, e.p.id)
		}
	}
}

// A SACK whose ranges cover sequences long resolved costs nothing: with
// nothing in flight, a hostile server's range 1..2^40 used to be walked
// one sequence at a time under the client's lock.
func TestSackOverResolvedIsCheap(t *testing.T) {
	_, cn := testConn(t)
	cn.seq = 1 << 40 // that many sent and acknowledged
	done := make(chan error, 1)
	go func() {
		_, err := cn.onSack([]frame.SeqRange{{First: 1, Last: 1 << 40}}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onSack still walking a range of 2^40 resolved sequences after 5 s")
	}
}
