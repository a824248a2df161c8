package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
)

// BenchmarkServerData measures DATA frames through a server over loopback:
// the client writes batches of 64 frames and waits for the ACK of each
// batch. Sizes are messages per packet.
func BenchmarkServerData(b *testing.B) {
	for _, msgs := range []int{1, 10, 100} {
		for _, compress := range []bool{false, true} {
			b.Run(fmt.Sprintf("msgs=%d/zstd=%v", msgs, compress), func(b *testing.B) {
				benchData(b, msgs, compress)
			})
		}
	}
}

func benchData(b *testing.B, msgs int, compress bool) {
	h := server.HandlerFunc(func(context.Context, *server.Meta, *frame.Packet) error { return nil })
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	srv, err := server.New(cfg, h)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c := dialB(b, srv.Addr().String())
	defer c.Close()

	const batch = 64
	p := packet(1, msgs)
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(p.RawSize()))
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		buf = buf[:0]
		for range n {
			buf = c.AppendData(buf, p, compress)
		}
		if err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := c.WaitAck(c.LastSeq()); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
}
