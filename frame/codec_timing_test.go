package frame

import (
	"bytes"
	"fmt"
	"testing"
)

// The packet benchmarks come in a size family (1, 10, 100 messages of
// realistic ~200-byte log lines), uncompressed and zstd. SetBytes is the
// frame's size on the wire; the "raw/wire" metric is the compression ratio.

var benchSizes = []int{1, 10, 100}

func benchModes(b *testing.B, fn func(b *testing.B, p *Packet, compress bool)) {
	for _, compress := range []bool{false, true} {
		mode := "plain"
		if compress {
			mode = "zstd"
		}
		for _, n := range benchSizes {
			p := realisticPacket(n, uint64(n))
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) { fn(b, p, compress) })
		}
	}
}

// reportRatio must run after the benchmark loop: resetting the timer drops
// reported metrics.
func reportRatio(b *testing.B, frame []byte) {
	h := Header(frame)
	b.ReportMetric(float64(h.RawLen())/float64(h.PayloadLen()), "raw/wire")
}

func BenchmarkEncodeData(b *testing.B) {
	benchModes(b, func(b *testing.B, p *Packet, compress bool) {
		var enc Encoder
		buf := enc.AppendData(nil, 1, p, compress)
		b.ReportAllocs()
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			buf = enc.AppendData(buf[:0], 1, p, compress)
		}
		reportRatio(b, buf)
	})
}

func BenchmarkDecodeData(b *testing.B) {
	benchModes(b, func(b *testing.B, p *Packet, compress bool) {
		var enc Encoder
		frame := enc.AppendData(nil, 1, p, compress)
		dec := NewDecoder(DefaultLimits())
		var got Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		defer reportRatio(b, frame) // after the loop: b.Loop's timer reset drops metrics
		for b.Loop() {
			// What a receiver does per frame: header, checksum, packet.
			h, err := ParseHeader(frame, &dec.Limits)
			if err != nil {
				b.Fatal(err)
			}
			payload := frame[HeaderSize:h.FrameLen()]
			if err := h.Check(payload); err != nil {
				b.Fatal(err)
			}
			if err := dec.Decode(h, payload, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeDataParallel: the zstd decoders are pooled process-wide;
// this shows whether the pool holds up with every core decoding.
func BenchmarkDecodeDataParallel(b *testing.B) {
	var enc Encoder
	frame := enc.AppendData(nil, 1, realisticPacket(100, 100), true)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	b.RunParallel(func(pb *testing.PB) {
		dec := NewDecoder(DefaultLimits())
		var got Packet
		for pb.Next() {
			if err := dec.Decode(Header(frame), frame[HeaderSize:], &got); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReader: frames through Reader.Next from a byte stream, 100
// frames of 10 messages per iteration, zstd; payloads are not decoded.
func BenchmarkReader(b *testing.B) {
	var enc Encoder
	var stream []byte
	for i := 1; i <= 100; i++ {
		stream = enc.AppendData(stream, uint64(i), realisticPacket(10, uint64(i)), true)
	}
	lim := DefaultLimits()
	var src bytes.Reader
	r := NewReader(&src, &lim)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		src.Reset(stream)
		r.r.Reset(&src)
		for i := 0; i < 100; i++ {
			if _, _, err := r.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
