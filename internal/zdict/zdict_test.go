package zdict

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func samples(n int) [][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "2026-12-06T17:00:%02dZ level=INFO req_id=%016x path=/api/v2/orders/%d status=200 latency=%.2fms msg=%q",
			r.IntN(60), r.Uint64(), r.IntN(1e6), r.Float64()*50, "request served")
	}
	return out
}

func TestTrain(t *testing.T) {
	s := samples(2000)
	for _, b := range []Builder{BuilderCover, BuilderKlauspost} {
		d, err := Train(s, Options{ID: 4242, Size: 8 << 10, Builder: b})
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		info, err := zstd.InspectDictionary(d)
		if err != nil || info.ID() != 4242 || info.ContentSize() == 0 || info.ContentSize() > 8<<10 {
			t.Fatalf("%s: id %d content %d: %v", b, info.ID(), info.ContentSize(), err)
		}
		// It compresses a sample it was not trained on better than zstd
		// alone.
		probe := samples(2001)[2000]
		plain, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		with, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderDict(d))
		if err != nil {
			t.Fatal(err)
		}
		if a, b := len(plain.EncodeAll(probe, nil)), len(with.EncodeAll(probe, nil)); b >= a {
			t.Fatalf("%d bytes with the dictionary, %d without", b, a)
		}
	}
	// The same samples and id give the same dictionary (cover).
	a, _ := Train(s, Options{ID: 7, Size: 4096})
	b, _ := Train(s, Options{ID: 7, Size: 4096})
	if !bytes.Equal(a, b) {
		t.Fatal("cover is not deterministic")
	}
	// A random id is in [32768, 2^31).
	d, err := Train(s[:100], Options{Size: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := zstd.InspectDictionary(d); info.ID() < 32768 || info.ID() >= 1<<31 {
		t.Fatalf("random id %d", info.ID())
	}
}

func TestTrainErrors(t *testing.T) {
	f := func(want string, s [][]byte, o Options) {
		t.Helper()
		if _, err := Train(s, o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want an error saying %q", err, want)
		}
	}
	f("want at least 10", samples(9), Options{})
	f("not in [256, 4 MiB]", samples(20), Options{Size: 100})
	f("unknown builder", samples(20), Options{Builder: "magic"})
	short := make([][]byte, 20)
	for i := range short {
		short[i] = []byte("abc")
	}
	f("nothing in common", short, Options{})
}

// cover takes the segments whose substrings recur most, the best last.
func TestCover(t *testing.T) {
	common := []byte("this phrase is in every sample, ")
	var s [][]byte
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200; i++ {
		noise := make([]byte, 40)
		for j := range noise {
			noise[j] = byte('a' + r.IntN(26))
		}
		s = append(s, append(append([]byte(nil), noise...), common...))
	}
	c := cover(s, 600)
	if len(c) == 0 || len(c) > 600 {
		t.Fatalf("%d bytes of content", len(c))
	}
	if !bytes.Contains(c[len(c)-coverK:], common[:16]) {
		t.Fatalf("the phrase every sample has is not in the last segment")
	}
}
