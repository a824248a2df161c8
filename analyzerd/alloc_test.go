package analyzerd_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
)

// TestPerPacketAllocs pins analyzerd's per-packet path (no output, no
// delay) at no heap allocation: a new packet, a duplicate, a packet
// without an agent id of its own; then the whole path over a loopback
// connection, frame/server included, with a new packet id in every frame.
func TestPerPacketAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation pin: not in -short")
	}
	cfg := analyzerd.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := analyzerd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	md := &server.Meta{AgentID: "logdist-1", Seq: 1, RawBytes: 300}
	p := packet("agent-1", 1_764_000_000_000_000_000, "one", "two")
	anon := packet("", 1, "no agent id")
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(2000, fn); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, n)
		}
	}
	f("new packet", func() {
		p.ID++
		if err := a.HandlePacket(ctx, md, p); err != nil {
			t.Fatal(err)
		}
	})
	f("duplicate", func() {
		if err := a.HandlePacket(ctx, md, p); err != nil {
			t.Fatal(err)
		}
	})
	f("agent id from HELLO", func() {
		anon.ID++
		if err := a.HandlePacket(ctx, md, anon); err != nil {
			t.Fatal(err)
		}
	})
	st := a.Stats()
	if st.Packets < 4000 || st.Duplicates < 2000 {
		t.Fatalf("stats %+v: the pins did not run the paths they name", st)
	}

	// Over the wire: batches of 64 plain frames whose packet ids are
	// patched in place (the id is the payload's first 8 bytes).
	if raceEnabled {
		return // goroutines allocate under -race
	}
	b := start(t, nil)
	c := dial(t, b)
	var buf []byte
	var offs []int
	for i := range 64 {
		offs = append(offs, len(buf))
		buf = c.AppendData(buf, packet("agent-1", uint64(i), "a message of some length", "and another one"), false)
	}
	id := uint64(1_764_000_000_000_000_000)
	send := func() {
		seq := c.LastSeq()
		for i, off := range offs {
			h := frame.Header(buf[off:])
			h.SetSeq(seq + 1 + uint64(i))
			payload := buf[off+frame.HeaderSize : off+h.FrameLen()]
			id++
			binary.BigEndian.PutUint64(payload, id)
			binary.BigEndian.PutUint32(h[28:32], frame.Checksum(payload))
		}
		c.SetSeq(seq + uint64(len(offs)))
		if err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAck(c.LastSeq()); err != nil {
			t.Fatal(err)
		}
	}
	c.SetSeq(0)
	if n := testing.AllocsPerRun(50, send); n != 0 {
		t.Errorf("over the wire: %v allocations per batch of 64 packets, want 0", n)
	}
	if st := b.Stats(); st.Packets != 51*64 || st.Duplicates != 0 {
		t.Fatalf("stats %+v, want %d packets and no duplicate", st, 51*64)
	}
}
