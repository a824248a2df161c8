package analyzerd_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/testtool"
)

// An output that fails every packet (a full disk) gives a line a second
// naming the packet, not one per packet; duplicates are named at debug.
func TestOutputErrorLogThrottled(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here to make writes fail:", err)
	}
	var logs testtool.JSONLog
	a := start(t, func(c *analyzerd.Config) {
		c.Out = "/dev/full"
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := dial(t, a)
	for id := uint64(1); id <= 10; id++ {
		seq, err := c.Send(&frame.Packet{ID: id, AgentID: []byte("web-1"), Messages: []frame.Message{{Body: []byte("m")}}}, false)
		if err != nil {
			t.Fatal(err)
		}
		// BUSY, then (after the ACK covering it) the next one.
		for {
			f, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == frame.TypeBusy && f.Seq == seq {
				break
			}
		}
	}
	recs := logs.Records(t, "cannot write output; packet answered BUSY")
	if len(recs) == 0 || len(recs) > 2 {
		t.Fatalf("%d log lines for 10 failed writes, want them throttled to one a second", len(recs))
	}
	if r := recs[0]; r["agent_id"] != "web-1" || r["packet_id"] != 1.0 || r["suppressed"] != 0.0 || r["err"] == nil {
		t.Fatalf("record %v: want agent_id, packet_id, err and suppressed", r)
	}
}

func TestDuplicateLogNamesPacket(t *testing.T) {
	var logs testtool.JSONLog
	a := start(t, func(c *analyzerd.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := dial(t, a)
	p := &frame.Packet{ID: 42, AgentID: []byte("web-1"), Messages: []frame.Message{{Body: []byte("m")}}}
	send(t, c, p)
	send(t, c, p)
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := logs.Records(t, "duplicate packet: acknowledged, not processed again")
		if len(recs) == 1 {
			if r := recs[0]; r["agent_id"] != "web-1" || r["packet_id"] != 42.0 {
				t.Fatalf("record %v", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d duplicate lines, want 1", len(recs))
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
}
