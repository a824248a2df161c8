package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

// TestConcurrentClientsAcrossShutdown runs clients that keep their window
// full while the server shuts down, and checks the delivery invariant:
// every DATA frame is resolved exactly once, and the packets the handler
// saw are exactly those acknowledged without a BUSY.
func TestConcurrentClientsAcrossShutdown(t *testing.T) {
	const clients, perClient, window = 8, 300, 16
	var mu sync.Mutex
	handled := map[string]bool{}
	h := server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		key := fmt.Sprintf("%s/%d", md.AgentID, p.ID)
		if handled[key] {
			t.Errorf("packet %s handled twice", key)
		}
		handled[key] = true
		return nil
	})
	srv, addr := start(t, h, func(c *server.Config) { c.Window = window; c.DrainTimeout = 5 * time.Second })

	type result struct {
		agent    string
		accepted []uint64
		err      error
	}
	results := make(chan result, clients)
	halfway := make(chan struct{}, clients)
	for i := range clients {
		go func() {
			agent := fmt.Sprintf("agent-%d", i)
			res := result{agent: agent}
			defer func() { results <- res }()
			c, err := servertest.Dial(addr, agent)
			if err != nil {
				res.err = err
				return
			}
			defer c.Close()
			busy := map[uint64]bool{}
			var sent, acked uint64
			goaway := false
			for acked < sent || (!goaway && sent < perClient) {
				for !goaway && sent < perClient && sent-acked < window {
					if _, err := c.Send(&frame.Packet{ID: sent + 1, AgentID: []byte(agent),
						Messages: []frame.Message{{Body: []byte("x")}}}, false); err != nil {
						res.err = err
						return
					}
					sent++
					if sent == perClient/2 {
						halfway <- struct{}{}
					}
				}
				f, err := c.Next()
				if err != nil {
					res.err = fmt.Errorf("sent %d acked %d: %w", sent, acked, err)
					return
				}
				switch f.Type {
				case frame.TypeAck:
					if f.Seq <= acked || f.Seq > sent {
						res.err = fmt.Errorf("ACK %d after %d, %d sent", f.Seq, acked, sent)
						return
					}
					for s := acked + 1; s <= f.Seq; s++ {
						if !busy[s] {
							res.accepted = append(res.accepted, s)
						}
					}
					acked = f.Seq
				case frame.TypeBusy:
					if f.Seq <= acked || busy[f.Seq] {
						res.err = fmt.Errorf("BUSY %d resolves a frame twice", f.Seq)
						return
					}
					busy[f.Seq] = true
				case frame.TypeGoAway:
					goaway = true
				default:
					res.err = fmt.Errorf("unexpected %s", f)
					return
				}
			}
		}()
	}
	for range clients {
		<-halfway
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()

	total := 0
	for range clients {
		r := <-results
		if r.err != nil {
			t.Fatalf("%s: %v", r.agent, r.err)
		}
		mu.Lock()
		for _, id := range r.accepted {
			if !handled[fmt.Sprintf("%s/%d", r.agent, id)] {
				t.Errorf("%s: packet %d acknowledged but never handled", r.agent, id)
			}
		}
		mu.Unlock()
		total += len(r.accepted)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if total != len(handled) {
		t.Fatalf("%d packets acknowledged, %d handled", total, len(handled))
	}
	t.Logf("%d packets accepted before and during the drain", total)
}

// A handler that ignores its cancelled context does not hold Close
// forever: after the drain timeout and as long again, Close returns an
// error naming the stuck connections.
func TestCloseGivesUpOnStuckHandler(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := server.HandlerFunc(func(context.Context, *server.Meta, *frame.Packet) error {
		entered <- struct{}{}
		<-release // deaf to its context
		return nil
	})
	srv, addr := start(t, h, func(c *server.Config) { c.DrainTimeout = 100 * time.Millisecond })
	defer close(release)
	c := dial(t, addr)
	if _, err := c.Send(packet(1, 1), false); err != nil {
		t.Fatal(err)
	}
	<-entered
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "1 connections' handlers still running") {
			t.Fatalf("Close returned %v, want the stuck handler named", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waiting for a handler deaf to its context after 30 s")
	}
}
