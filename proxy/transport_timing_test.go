package proxy_test

import (
	"bufio"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/bench"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
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

func (passTransport) Client(_ context.Context, nc net.Conn, _, _ string) (net.Conn, error) {
	return passConn{nc}, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAgentTransport sends b.N packets (10 messages, zstd) from four
// logbench connections through logdist (one loop) to a sink that
// acknowledges without decoding, straight to the agent listener (direct)
// or through the transport listener and its socketpair bridge (bridged).
// Everything runs in this process: the difference between the two is the
// bridge's cost. cpu-ns/pkt is the whole process's CPU per packet.
func BenchmarkAgentTransport(b *testing.B) {
	for _, mode := range []string{"direct", "bridged"} {
		b.Run(mode, func(b *testing.B) {
			sink := startSink(b)
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

// startSink starts an analyzer that checks each frame's header and CRC
// and acknowledges it, without decompressing or decoding: the protocol
// session, a reader and a writer, nothing else.
func startSink(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &session.ServerConfig{Limits: frame.DefaultLimits(), Window: 4096, Grant: frame.CapZstd}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				s := session.NewServer(cfg, session.Peer{})
				rd := frame.NewReader(nc, &cfg.Limits)
				rd.SetAdmit(s.CheckHeader)
				bw := bufio.NewWriterSize(nc, 16<<10)
				for {
					if !rd.Ready() {
						bw.Write(s.Flush(0))
						if bw.Flush() != nil {
							return
						}
					}
					h, payload, err := rd.Next()
					if err != nil && h == nil {
						return
					}
					ev, err := s.Handle(h, payload)
					if err != nil {
						bw.Write(s.Flush(0))
						bw.Flush()
						return
					}
					if ev == session.EvData {
						s.Accept(h.Seq())
					}
				}
			}()
		}
	}()
	return ln
}
