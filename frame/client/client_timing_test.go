package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/client/clienttest"
)

// BenchmarkSend measures Send plus delivery (batching, zstd, TCP, a fake
// server decoding every packet) with messages of a few sizes, from
// parallel goroutines.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			srv := clienttest.Start(b, "127.0.0.1:0", clienttest.Options{CountOnly: true})
			cfg := client.DefaultConfig()
			cfg.Addrs = []string{srv.Addr()}
			cfg.Block = true
			c, err := client.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			body := make([]byte, size)
			for i := range body {
				body[i] = "abcdefghijklmnopqrstuvwxyz "[i%27]
			}
			m := msg(string(body))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Send(context.Background(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := c.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}
