package client_test

import (
	"context"
	"log"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
)

// An agent sends messages through two logdist instances and waits until
// they are acknowledged.
func Example() {
	cfg := client.DefaultConfig()
	cfg.Addrs = []string{"logdist-1:7400", "logdist-2:7400"}
	cfg.AgentID = "web-7"
	cfg.Token = "s3cret"
	cfg.Block = true
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, line := range []string{"started", "listening on :8080"} {
		m := frame.Message{Severity: frame.SevInfo, Facility: 1, App: []byte("web"), Body: []byte(line)}
		if err := c.Send(ctx, m); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		log.Fatalf("not delivered: %v", err)
	}
}
