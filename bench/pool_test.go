package bench

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
)

// TestPoolStampsIDs builds pools of every kind (zstd, plain, traced),
// stamps ids into copies of their frames and decodes them as a receiver
// does: every frame passes the header and checksum checks and decodes to
// its packet with the stamped id, with frame's decoder and with zstd's
// streaming one (another code path of the library).
func TestPoolStampsIDs(t *testing.T) {
	lim := frame.DefaultLimits()
	dict := testDict(t)
	for _, tc := range []struct {
		name     string
		compress bool
		dict     bool
		trace    float64
		msgs     int
		size     int
		fast     bool // FastDecode
	}{
		{"zstd", true, false, 0, 10, 200, false},
		{"zstd/traced", true, false, 0.5, 10, 200, false},
		{"zstd/one-small", true, false, 0, 1, 12, false},
		{"zstd/large", true, false, 0, 100, 1000, false}, // 100 KB raw: one block or more
		{"zstd/dict", true, true, 0, 10, 200, false},
		{"zstd/dict/one", true, true, 0.5, 1, 200, false},
		{"zstd/dict/large", true, true, 0, 100, 1000, false},
		{"zstd/fastdecode", true, false, 0, 10, 200, true},
		{"zstd/fastdecode/large", true, false, 0, 100, 1000, true},
		{"zstd/dict/fastdecode", true, true, 0.5, 10, 200, true},
		{"plain", false, false, 0, 10, 200, false},
		{"plain/traced", false, false, 0.5, 3, 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var zenc *zstd.Encoder
			var d *frame.Dict
			if tc.dict {
				d = dict
			}
			if tc.compress {
				level := defaultLevel
				if d != nil {
					level = dictLevel
				}
				var err error
				if zenc, err = newZstdEncoder(level, d, tc.fast); err != nil {
					t.Fatal(err)
				}
				defer zenc.Close()
			}
			p, err := buildPool(newTextGen(7), zenc, d, []byte("agent-7"), 16, tc.msgs, tc.size, &lim)
			if err != nil {
				t.Fatal(err)
			}
			if tc.trace > 0 {
				p.trace(rand.New(rand.NewPCG(1, 2)), tc.trace)
			}
			zopts := []zstd.DOption{zstd.WithDecoderConcurrency(1)}
			if d != nil {
				zopts = append(zopts, zstd.WithDecoderDicts(d.Bytes()))
			}
			zd, err := zstd.NewReader(nil, zopts...)
			if err != nil {
				t.Fatal(err)
			}
			defer zd.Close()
			dec := frame.NewDecoder(lim)
			if d != nil {
				dec.Dicts = frame.Dicts{d}
			}
			var pk, first frame.Packet
			compressed := 0
			for i, f := range p.frames {
				for _, id := range []uint64{0, 1, 0x0123456789abcdef, ^uint64(0), rand.Uint64()} {
					g := append([]byte(nil), f...)
					p.stamp(g, int32(i), id)
					h, err := frame.ParseHeader(g, &lim)
					if err != nil {
						t.Fatalf("frame %d id %#x: %v", i, id, err)
					}
					payload := g[frame.HeaderSize:]
					if err := h.Check(payload); err != nil {
						t.Fatalf("frame %d id %#x: %v", i, id, err)
					}
					if err := dec.Decode(h, payload, &pk); err != nil {
						t.Fatalf("frame %d id %#x: %v", i, id, err)
					}
					if pk.ID != id || string(pk.AgentID) != "agent-7" || len(pk.Messages) != tc.msgs {
						t.Fatalf("frame %d decodes to id %#x agent %q %d messages; want %#x agent-7 %d", i, pk.ID, pk.AgentID, len(pk.Messages), id, tc.msgs)
					}
					// Only the id changed: the rest is the packet as built.
					raw, _ := dec.Raw(h, payload)
					want := append([]byte(nil), raw...)
					if h.Compressed() {
						compressed++
						body := payload
						if h.Traced() {
							body = body[frame.TraceSize:]
						}
						if err := zd.Reset(bytes.NewReader(body)); err != nil {
							t.Fatal(err)
						}
						got, err := io.ReadAll(zd)
						if err != nil || !bytes.Equal(got, want) {
							t.Fatalf("frame %d: the streaming decoder read %d bytes (%v), want the %d of the packet", i, len(got), err, len(want))
						}
					}
					if id == 0 {
						if err := frame.DecodePacket(want, h.Count(), &lim, &first); err != nil {
							t.Fatal(err)
						}
						if first.Messages[0].Timestamp != pk.Messages[0].Timestamp {
							t.Fatal("messages differ between ids")
						}
					}
				}
			}
			if tc.compress && tc.msgs >= 10 && compressed == 0 {
				t.Fatal("no frame of the zstd pool is compressed")
			}
		})
	}
}

func TestSplitZstdRejectsWhatItCannotSplice(t *testing.T) {
	for _, z := range [][]byte{
		nil,
		{0x28, 0xB5, 0x2F, 0xFD},
		{1, 2, 3, 4, 0x20, 5},
		{0x28, 0xB5, 0x2F, 0xFD, 0x24, 5, 1, 0, 0}, // checksum flag
		{0x28, 0xB5, 0x2F, 0xFD, 0x20, 5},          // no block
	} {
		if _, err := splitZstd(z); err == nil {
			t.Fatalf("splitZstd(%x) accepted", z)
		}
	}
}

// BenchmarkStamp is the generator's per-packet cost of a unique id: copy
// the frame into the batch, patch the id, compute the checksum again.
func BenchmarkStamp(b *testing.B) {
	lim := frame.DefaultLimits()
	zenc, err := newZstdEncoder(defaultLevel, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	defer zenc.Close()
	p, err := buildPool(newTextGen(1), zenc, nil, []byte("logbench-1"), 64, 10, 200, &lim)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		idx := int32(i % len(p.frames))
		if len(buf) > 60<<10 {
			buf = buf[:0]
		}
		start := len(buf)
		buf = append(buf, p.frames[idx]...)
		p.stamp(buf[start:], idx, uint64(i))
	}
}

// BenchmarkPoolDecode compares what a receiver spends on logbench's frames
// (the id in a raw block ahead of the compressed rest) with what it spends
// on the agent library's (frame.Encoder): the same 2,048 packets of 10
// messages, ParseHeader, checksum and Decoder.Decode each.
func BenchmarkPoolDecode(b *testing.B) {
	lim := frame.DefaultLimits()
	const n = 2048
	zenc, err := newZstdEncoder(defaultLevel, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	defer zenc.Close()
	p, err := buildPool(newTextGen(1), zenc, nil, []byte("logbench-1"), n, 10, 200, &lim)
	if err != nil {
		b.Fatal(err)
	}
	for i := range p.frames {
		p.stamp(p.frames[i], int32(i), 1_764_000_000_000_000_000+uint64(i))
	}
	// The same packets (same text seed), as the agent library frames them.
	g := newTextGen(1)
	pk := frame.Packet{AgentID: []byte("logbench-1"), Messages: make([]frame.Message, 10)}
	enc := frame.Encoder{Level: defaultLevel}
	agent := make([][]byte, n)
	ts := time.Now()
	for i := range agent {
		pk.ID = 1_764_000_000_000_000_000 + uint64(i)
		for j := range pk.Messages {
			ts = ts.Add(time.Duration(g.rng.IntN(2000)) * time.Microsecond)
			pk.Messages[j] = g.message(ts, 200)
		}
		agent[i] = enc.AppendData(nil, 1, &pk, true)
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{{"agent", agent}, {"logbench", p.frames}} {
		b.Run(tc.name, func(b *testing.B) {
			var wire int
			for _, f := range tc.frames {
				wire += len(f)
			}
			dec := frame.NewDecoder(lim)
			var pk frame.Packet
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				f := tc.frames[i%n]
				h, err := frame.ParseHeader(f, &lim)
				if err == nil {
					err = h.Check(f[frame.HeaderSize:])
				}
				if err == nil {
					err = dec.Decode(h, f[frame.HeaderSize:], &pk)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(wire)/n, "B/frame")
		})
	}
}
