package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

// An analyzer: print every message received, acknowledge the packet.
func Example() {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(cfg, server.HandlerFunc(func(ctx context.Context, md *server.Meta, p *frame.Packet) error {
		for _, m := range p.Messages {
			fmt.Printf("%s packet %d: %s %s: %s\n", p.AgentID, p.ID, m.Severity, m.App, m.Body)
		}
		return nil // processed: the server ACKs it
	}))
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Close()

	// An agent sends one packet and waits for its ACK.
	agent, err := servertest.Dial(srv.Addr().String(), "web-1")
	if err != nil {
		panic(err)
	}
	defer agent.Close()
	seq, _ := agent.Send(&frame.Packet{ID: 7, AgentID: []byte("web-1"), Messages: []frame.Message{
		{Severity: frame.SevInfo, App: []byte("nginx"), Body: []byte("GET / 200")},
		{Severity: frame.SevError, App: []byte("nginx"), Body: []byte("upstream timed out")},
	}}, true)
	fmt.Println("acked:", agent.WaitAck(seq) == nil)
	// Output:
	// web-1 packet 7: info nginx: GET / 200
	// web-1 packet 7: err nginx: upstream timed out
	// acked: true
}
