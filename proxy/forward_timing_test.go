package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/tracing"
)

// BenchmarkForwardPath measures logdist's CPU cost per packet on the
// per-packet path, without the kernel: parse and check an agent's DATA
// frame, copy it into a record, pick an analyzer, queue the write, take
// the analyzer's ACK, settle the record and queue the agent's ACK.
func BenchmarkForwardPath(b *testing.B) {
	for _, msgs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("msgs=%d", msgs), func(b *testing.B) {
			h := newHarness(b, msgs)
			for i := 0; i < 1000; i++ {
				h.cycle()
			}
			b.SetBytes(int64(len(h.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.cycle()
			}
		})
	}
}

// BenchmarkForwardInFlight is the per-packet path with as much in flight
// as under logbench's default load (ten agents with a window of 256):
// frames of ~1.5 KB arrive 32 to a read, and each analyzer acknowledges
// with a lag that keeps 2,560 packets — 3.8 MB — unacknowledged, so the
// records and frame bytes do not all fit in a core's cache, as in
// production. BenchmarkForwardPath, one packet at a time, never leaves L1.
func BenchmarkForwardInFlight(b *testing.B) {
	const perRead, inFlight = 32, 2560
	h := newHarnessOpts(b, harnessOpts{msgs: 1, caps: frame.CapZstd, agentWindow: 2 * inFlight, upstreamWindow: inFlight})
	p := &frame.Packet{ID: 1, AgentID: []byte("bench-agent")}
	for i := 0; i < 10; i++ {
		body := fmt.Appendf(nil, "2026-11-26T21:00:%02dZ INFO req=%08x path=/api/v1/items/%d status=200 duration_ms=%d user=u%05d", i, i*2654435761, i*7919, i%97, i*31)
		p.Messages = append(p.Messages, frame.Message{Timestamp: int64(i), Severity: frame.SevInfo, Hostname: []byte("web-1"), App: []byte("api"), Body: body})
	}
	one := (&frame.Encoder{}).AppendData(nil, 1, p, false)
	read := make([]byte, 0, perRead*len(one))
	for i := 0; i < perRead; i++ {
		read = append(read, one...)
	}
	lag := make([]uint64, len(h.lp.ups))
	for i, w := range []float64{0.4, 0.3, 0.2, 0.1} {
		lag[i] = uint64(w * inFlight)
	}
	round := func() {
		a := h.agent
		for i := 0; i < perRead; i++ {
			frame.Header(read[i*len(one):]).SetSeq(a.sess.LastSeq() + 1 + uint64(i))
		}
		h.ac.in = read
		a.onTraffic(h.ac)
		for i, u := range h.lp.ups {
			if u.sess.InFlight() <= int(lag[i]) {
				continue
			}
			h.acks[i] = frame.AppendAck(h.acks[i][:0], u.sess.Seq()-lag[i])
			h.ups[i].in = h.acks[i]
			u.onTraffic(h.ups[i])
		}
	}
	for i := 0; i < 4*inFlight/perRead; i++ {
		round()
	}
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += perRead {
		round()
	}
	b.StopTimer()
	if n := h.lp.led.live; n < inFlight*9/10 || n > inFlight+perRead {
		b.Fatalf("%d packets in flight, want about %d", n, inFlight)
	}
}

// BenchmarkForwardTracing is BenchmarkForwardPath (10 messages a packet)
// with tracing off, on with nothing sampled, and on with 1% and all of the
// packets starting a trace (spans exported to a sink that discards them;
// the exporter's goroutine runs beside the benchmark's).
func BenchmarkForwardTracing(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer sink.Close()
	for _, c := range []struct {
		name  string
		on    bool
		ratio float64
	}{{"off", false, 0}, {"sample=0", true, 0}, {"sample=0.01", true, 0.01}, {"sample=1", true, 1}} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, 10)
			if c.on {
				tr, err := tracing.New(tracing.Config{Endpoint: sink.URL, SampleRatio: c.ratio, Service: "logdist-bench"})
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
				h.lp.conf.Tracer = tr
			}
			for i := 0; i < 1000; i++ {
				h.cycle()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.cycle()
			}
		})
	}
}
