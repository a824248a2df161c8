package server_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/internal/testtool"
)

// Every log line about one packet names it by agent id and packet id, and
// a stream of bad packets gives one line a second per message and code,
// not one per packet.
func TestPacketLogLines(t *testing.T) {
	var logs testtool.JSONLog
	h := server.HandlerFunc(func(_ context.Context, _ *server.Meta, p *frame.Packet) error {
		if p.ID >= 100 {
			return errors.New("disk full")
		}
		return server.Reject("not today")
	})
	_, addr := start(t, h, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	c := dial(t, addr)
	var b []byte
	for id := uint64(1); id <= 20; id++ { // rejected by the handler
		b = c.AppendData(b, packet(id, 1), id%2 == 0)
	}
	b = c.AppendData(b, packet(100, 1), false) // BUSY: the handler failed
	// A packet whose header says 2 messages and whose (compressed) payload
	// holds 1: it does not decode, but its ids can still be read.
	var enc frame.Encoder
	bad := packet(7777, 1)
	bad.Messages[0].Body = bytes.Repeat([]byte("compressible "), 50)
	c.SetSeq(c.LastSeq() + 1)
	b = enc.AppendCompressed(b, c.LastSeq(), 2, frame.AppendPacket(nil, bad))
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	var rejected, busy, malformed []map[string]any
	for {
		rejected, malformed = nil, nil
		for _, r := range logs.Records(t, "packet rejected") {
			switch r["code"] {
			case "rejected":
				rejected = append(rejected, r)
			case "too_many_messages":
				malformed = append(malformed, r)
			default:
				t.Fatalf("unexpected rejection %v", r)
			}
		}
		busy = logs.Records(t, "handler failed; packet answered BUSY")
		if len(rejected) > 0 && len(busy) > 0 && len(malformed) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lines missing: rejected %v, busy %v, malformed %v", rejected, busy, malformed)
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
	f := func(rec map[string]any, agent string, id float64) {
		t.Helper()
		if rec["agent_id"] != agent || rec["packet_id"] != id || rec["suppressed"] == nil {
			t.Errorf("record %v: want agent_id %q, packet_id %v and suppressed", rec, agent, id)
		}
	}
	f(rejected[0], "agent-1", 1)
	f(busy[0], "agent-1", 100)
	f(malformed[0], "agent-1", 7777) // the rejected flood did not hide it
	// Twenty rejections in a few milliseconds: throttled (a loaded machine
	// may cross one second boundary).
	if len(rejected) > 2 {
		t.Errorf("%d log lines for 20 rejected packets, want them throttled", len(rejected))
	}
	if got := strings.Count(malformed[0]["reason"].(string), "count"); got == 0 {
		t.Errorf("reason %q does not say what is wrong", malformed[0]["reason"])
	}
}
