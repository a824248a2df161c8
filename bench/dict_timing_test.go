package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/zdict"
)

// The zstd dictionary benchmark behind docs/PERFORMANCE.md, "zstd
// dictionaries": compression ratio and encode/decode time of packets of
// 1, 10 and 100 messages of logbench's log text (logtext.go, 200-byte
// bodies, hostnames, apps), without and with a dictionary, at zstd's
// fastest and default levels.
//
// The dictionary is trained as `logdist dict train --spool` would from
// captured traffic: 20,000 one-message packets generated from one seed.
// The measured packets come from another seed: none of them was trained
// on.
//
//	go test -run '^$' -bench BenchmarkDict -count 5 ./bench/
const (
	dictTrainSeed   = 1001
	dictMeasureSeed = 2002
	dictSamples     = 20000
	dictID          = 0x10D1C7
)

// dictPackets returns n packets of msgs messages each, as logbench builds
// them, from seed.
func dictPackets(seed uint64, n, msgs int) []*frame.Packet {
	g := newTextGen(seed)
	ts := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	out := make([]*frame.Packet, n)
	for i := range out {
		p := &frame.Packet{ID: 1_795_000_000_000_000_000 + uint64(i), AgentID: []byte("logbench-4242"), Messages: make([]frame.Message, msgs)}
		for j := range p.Messages {
			ts = ts.Add(time.Duration(g.rng.IntN(2000)) * time.Microsecond)
			p.Messages[j] = g.message(ts, 200)
		}
		out[i] = p
	}
	return out
}

var benchDict = sync.OnceValues(func() (*frame.Dict, error) {
	var samples [][]byte
	for _, p := range dictPackets(dictTrainSeed, dictSamples, 1) {
		samples = append(samples, frame.AppendPacket(nil, p))
	}
	b, err := zdict.Train(samples, zdict.Options{ID: dictID, Size: zdict.DefaultSize})
	if err != nil {
		return nil, err
	}
	return frame.ParseDict(b)
})

// dictCase is one column of the table: a level, with or without the
// dictionary.
type dictCase struct {
	name  string
	level zstd.EncoderLevel
	dict  bool
	fast  bool // frame.Encoder.FastDecode
}

var dictCases = []dictCase{
	{"fastest/none", zstd.SpeedFastest, false, false},
	{"fastest/dict", zstd.SpeedFastest, true, false},
	{"default/none", zstd.SpeedDefault, false, false},
	{"default/dict", zstd.SpeedDefault, true, false},
	{"fastest/none/fastdecode", zstd.SpeedFastest, false, true},
	{"fastest/dict/fastdecode", zstd.SpeedFastest, true, true},
	{"default/none/fastdecode", zstd.SpeedDefault, false, true},
	{"default/dict/fastdecode", zstd.SpeedDefault, true, true},
}

// dictBench runs fn for every case and packet size with the case's
// encoder and decoder, over a rotation of distinct packets (so that
// neither side sees one packet over and over).
func dictBench(b *testing.B, fn func(b *testing.B, enc *frame.Encoder, dec *frame.Decoder, ps []*frame.Packet, frames [][]byte)) {
	d, err := benchDict()
	if err != nil {
		b.Fatal(err)
	}
	for _, msgs := range []int{1, 10, 100} {
		n := 256
		if msgs == 100 {
			n = 64
		}
		ps := dictPackets(dictMeasureSeed, n, msgs)
		for _, c := range dictCases {
			enc := &frame.Encoder{Level: c.level, FastDecode: c.fast}
			dec := frame.NewDecoder(frame.DefaultLimits())
			if c.dict {
				enc.Dict = d
				dec.Dicts = frame.Dicts{d}
			}
			frames := make([][]byte, n)
			var raw, wire int
			for i, p := range ps {
				frames[i] = enc.AppendData(nil, 1, p, true)
				h := frame.Header(frames[i])
				raw += int(h.RawLen())
				wire += int(h.PayloadLen())
			}
			ratio := float64(raw) / float64(wire)
			b.Run(fmt.Sprintf("%s/%d", c.name, msgs), func(b *testing.B) {
				b.ReportAllocs()
				fn(b, enc, dec, ps, frames)
				b.ReportMetric(ratio, "ratio") // after the loop: b.Loop's timer reset drops metrics
			})
		}
	}
}

func BenchmarkDictEncode(b *testing.B) {
	dictBench(b, func(b *testing.B, enc *frame.Encoder, _ *frame.Decoder, ps []*frame.Packet, _ [][]byte) {
		buf := make([]byte, 0, 64<<10)
		i := 0
		for b.Loop() {
			buf = enc.AppendData(buf[:0], 1, ps[i], true)
			if i++; i == len(ps) {
				i = 0
			}
		}
	})
}

func BenchmarkDictDecode(b *testing.B) {
	dictBench(b, func(b *testing.B, _ *frame.Encoder, dec *frame.Decoder, _ []*frame.Packet, frames [][]byte) {
		var p frame.Packet
		i := 0
		for b.Loop() {
			f := frames[i]
			if err := dec.Decode(frame.Header(f), f[frame.HeaderSize:], &p); err != nil {
				b.Fatal(err)
			}
			if i++; i == len(frames) {
				i = 0
			}
		}
	})
}

// TestDictGain checks the targets on the benchmark's data at both
// levels: with the dictionary, 1-message packets compress at least 2×
// and 10-message packets at least 1.5× smaller than without. The figures
// are deterministic (seeded text, a fixed dictionary id).
func TestDictGain(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains a dictionary on 20,000 packets (slow under -short and -race; the ratios have nothing concurrent)")
	}
	d, err := benchDict()
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		for _, msgs := range []int{1, 10, 100} {
			var raw, plain, with int
			for _, p := range dictPackets(dictMeasureSeed, 256, msgs) {
				f := (&frame.Encoder{Level: level}).AppendData(nil, 1, p, true)
				g := (&frame.Encoder{Level: level, Dict: d}).AppendData(nil, 1, p, true)
				raw += int(frame.Header(f).RawLen())
				plain += len(f) - frame.HeaderSize
				with += len(g) - frame.HeaderSize
			}
			r0, r1 := float64(raw)/float64(plain), float64(raw)/float64(with)
			t.Logf("level %v, %3d messages: ratio %.2f without, %.2f with the dictionary: %.2fx", level, msgs, r0, r1, r1/r0)
			want := map[int]float64{1: 2, 10: 1.5, 100: 1}[msgs]
			if r1/r0 < want {
				t.Errorf("level %v, %d messages: %.2fx better with the dictionary, want at least %.1fx", level, msgs, r1/r0, want)
			}
		}
	}
}

// TestDictBuilders compares the two ways of choosing the dictionary's
// content (internal/zdict), trained and measured as TestDictGain: the
// figures of docs/PERFORMANCE.md's builder table.
func TestDictBuilders(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains two dictionaries on 20,000 packets (slow under -short and -race)")
	}
	var samples [][]byte
	for _, p := range dictPackets(dictTrainSeed, dictSamples, 1) {
		samples = append(samples, frame.AppendPacket(nil, p))
	}
	for _, b := range []zdict.Builder{zdict.BuilderCover, zdict.BuilderKlauspost} {
		start := time.Now()
		raw, err := zdict.Train(samples, zdict.Options{ID: dictID, Size: zdict.DefaultSize, Builder: b})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		d, err := frame.ParseDict(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
			line := fmt.Sprintf("builder %-9s (trained in %v), level %-7v:", b, took.Round(10*time.Millisecond), level)
			for _, msgs := range []int{1, 10, 100} {
				var raw, with int
				for _, p := range dictPackets(dictMeasureSeed, 256, msgs) {
					g := (&frame.Encoder{Level: level, Dict: d}).AppendData(nil, 1, p, true)
					raw += int(frame.Header(g).RawLen())
					with += len(g) - frame.HeaderSize
				}
				line += fmt.Sprintf("  %d msgs ratio %.2f", msgs, float64(raw)/float64(with))
			}
			t.Log(line)
		}
	}
}
