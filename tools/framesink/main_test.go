package main

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/session"
)

// The sink acknowledges what an agent sends (the real client library, over
// a real socket), counts it, and leaves nothing running once closed.
func TestSinkAcknowledgesAndCounts(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{ln: ln}
	scfg := &session.ServerConfig{Limits: frame.DefaultLimits(), Window: 64, Grant: frame.CapZstd | frame.CapSack, ServerID: "framesink"}
	done := make(chan struct{})
	go func() { l.accept(scfg, 2<<20); close(done) }()

	cfg := client.DefaultConfig()
	cfg.Addrs = []string{ln.Addr().String()}
	cfg.AgentID = "sink-test"
	cfg.Block = true
	cfg.BatchMessages = 10
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 1000 {
		if err := c.Send(ctx, frame.Message{Severity: frame.SevInfo, Body: []byte("line " + string(rune('a'+i%26)))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("not acknowledged: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := l.packets.Load(); got < 100 {
		t.Fatalf("sink counted %d packets for 1000 messages in packets of at most 10", got)
	}
	_ = ln.Close()
	<-done
}
