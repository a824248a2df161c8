package proxy_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/bench"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/proxy"
)

// passTransport wraps nothing, but its connections go through the
// transport listener and the socketpair bridge: what the seam costs
// without TLS's own work.
type passTransport struct{}

type passConn struct{ net.Conn }

func (passTransport) Server(_ context.Context, nc net.Conn) (net.Conn, error) {
	return passConn{nc}, nil
}

func (passTransport) Client(_ context.Context, nc net.Conn, _ string) (net.Conn, error) {
	return passConn{nc}, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAgentTransport sends b.N packets (10 messages, zstd) from four
// logbench connections through logdist (one loop) to an analyzer that
// acknowledges without decoding, straight to the agent listener (direct)
// or through the transport listener and its socketpair bridge (bridged).
// Everything runs in this process: the difference between the two is the
// bridge's cost. cpu-ns/pkt is the whole process's CPU per packet.
func BenchmarkAgentTransport(b *testing.B) {
	for _, mode := range []string{"direct", "bridged"} {
		b.Run(mode, func(b *testing.B) {
			scfg := server.DefaultConfig()
			scfg.Addr = "127.0.0.1:0"
			scfg.Logger = testLogger(nil)
			sink, err := server.New(scfg, server.HandlerFunc(func(context.Context, *server.Meta, *frame.Packet) error { return nil }))
			if err != nil {
				b.Fatal(err)
			}
			if err := sink.Start(); err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			cfg := proxy.DefaultConfig()
			cfg.Listen = "127.0.0.1:0"
			cfg.SyslogUDP = ""
			cfg.Loops = 1
			cfg.Logger = testLogger(nil)
			cfg.Balancer.Logger = cfg.Logger
			cfg.Analyzers = []proxy.AnalyzerConfig{{Name: "sink", Addr: sink.Addr().String(), Weight: 1}}
			cfg.TransportListen = "127.0.0.1:0"
			cfg.AgentTransport = passTransport{}
			s, err := proxy.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			defer s.Stop(context.Background())
			target := s.Addr().String()
			if mode == "bridged" {
				target = s.TransportAddr().String()
			}
			bc := bench.DefaultConfig()
			bc.Target = target
			bc.Conns = 4
			bc.Packets = int64(max(b.N, 4))
			bc.ProgressInterval = 0
			b.ResetTimer()
			cpu0 := cpuTime()
			res, err := bench.Run(context.Background(), bc)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.PacketsAcked != uint64(bc.Packets) || res.Errors != 0 {
				b.Fatalf("%d of %d acknowledged, %d errors (%s)", res.PacketsAcked, bc.Packets, res.Errors, res.LastError)
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(bc.Packets), "cpu-ns/pkt")
			b.ReportMetric(res.LatencyMs.P99, "p99-ms")
		})
	}
}
