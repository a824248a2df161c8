package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

// TestPerPacketPathAllocs pins the server's per-packet path at no heap
// allocation, over a real loopback connection: batches of 64 DATA frames
// (10 messages each, zstd or not) written at once and acknowledged — read,
// checksum, decompression, decoding, the handler call, the session, the
// batched ACK — with one packet at a time and with workers.
func TestPerPacketPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation pin: not in -short")
	}
	for _, conc := range []int{1, 4} {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("concurrency=%d/zstd=%v", conc, compress), func(t *testing.T) {
				if raceEnabled && (compress || conc > 1) {
					t.Skip("pooled zstd decoders and goroutines allocate under -race")
				}
				h := server.HandlerFunc(func(context.Context, *server.Meta, *frame.Packet) error { return nil })
				_, addr := start(t, h, func(c *server.Config) { c.Concurrency = conc })
				c := dial(t, addr)
				send := batchSender(t, c, 64, compress)
				if n := testing.AllocsPerRun(100, send); n != 0 {
					t.Fatalf("%v allocations per batch of 64 packets, want 0", n)
				}
			})
		}
	}
}

// batchSender returns a function that writes n pre-encoded DATA frames in
// one write, with the client's next sequence numbers, and waits for the
// ACK of the last: allocation-free on the client's side.
func batchSender(t testing.TB, c *servertest.Client, n int, compress bool) func() {
	var b []byte
	var offs []int
	for i := range n {
		offs = append(offs, len(b))
		b = c.AppendData(b, packet(uint64(i+1), 10), compress)
	}
	c.SetSeq(0)
	return func() {
		seq := c.LastSeq()
		for i, off := range offs {
			frame.Header(b[off:]).SetSeq(seq + 1 + uint64(i))
		}
		c.SetSeq(seq + uint64(n))
		if err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAck(c.LastSeq()); err != nil {
			t.Fatal(err)
		}
	}
}
