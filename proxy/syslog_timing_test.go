package proxy

import (
	"fmt"
	"net"
	"testing"

	"github.com/logdist/logdist/frame"
)

// BenchmarkSyslogDatagram measures the syslog path per datagram on one
// loop without the kernel: parse, batch per sender, and every
// SyslogBatchMessages datagrams close the batch (zstd fastest), dispatch it
// and take the analyzer's ACK. msgs/s is 1e9 / ns/op.
func BenchmarkSyslogDatagram(b *testing.B) {
	datagrams := map[string]string{
		"rfc3164": "<13>Nov 26 21:00:00 web-1 nginx[4242]: 10.1.2.3 - - \"GET /api/v1/items/%d HTTP/1.1\" 200 512 \"-\" \"curl/8.5\"",
		"rfc5424": "<165>1 2026-11-26T21:00:00.123456Z gw-3.example.com sshd 811 ID47 [origin ip=\"10.0.0.%d\"][meta seq=\"9\"] Accepted publickey for deploy",
	}
	for _, name := range []string{"rfc3164", "rfc5424"} {
		for _, compress := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/compress=%v", name, compress), func(b *testing.B) {
				h := newHarnessOpts(b, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) { c.SyslogCompress = compress }})
				lp := h.lp
				lp.initSyslog()
				// 16 distinct datagrams, so compression sees varied text.
				var dgs [][]byte
				for i := 0; i < 16; i++ {
					dgs = append(dgs, []byte(fmt.Sprintf(datagrams[name], i)))
				}
				fc := &fakeConn{remote: &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 514}}
				b.ReportAllocs()
				b.SetBytes(int64(len(dgs[0])))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					fc.in = dgs[i&15]
					lp.onDatagram(fc)
					if i%64 == 0 {
						h.ackAll()
					}
				}
				b.StopTimer()
				h.ackAll()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkSyslogManySenders is the cost of a datagram from a new sender
// when SyslogMaxSenders batches are open: the oldest is sealed to make
// room. It must not grow with the number of open batches (spoofed sources
// can make every datagram a new sender); it used to scan them all.
func BenchmarkSyslogManySenders(b *testing.B) {
	for _, senders := range []int{16, 1024, 4096} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			h := newHarnessOpts(b, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) {
				c.SyslogMaxSenders = senders
				c.SyslogCompress = false
			}})
			lp := h.lp
			lp.initSyslog()
			dg := []byte("<13>Nov 26 21:00:00 web-1 app[1]: spoofed")
			fc := &fakeConn{}
			addr := func(i int) *net.UDPAddr {
				return &net.UDPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)), Port: 514}
			}
			for i := 0; i < senders; i++ { // every batch open
				fc.remote, fc.in = addr(i), dg
				lp.onDatagram(fc)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fc.remote, fc.in = addr(senders+i), dg
				lp.onDatagram(fc)
				if i%256 == 0 {
					h.ackAll()
				}
			}
		})
	}
}
