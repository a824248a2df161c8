// Package zdict trains zstd dictionaries for logdist's packets (`logdist
// dict train`). A dictionary is two things: content, bytes that a
// compressed payload may refer back to as if they came just before it,
// and entropy tables (literals, match lengths, offsets) tuned to the
// samples. klauspost/compress builds the tables and writes the zstd
// dictionary format (zstd.BuildDict); the content is chosen either by
// its own builder (dict.BuildZstdDict, BuilderKlauspost) or by the COVER
// algorithm of zstd's reference trainer (BuilderCover, the default):
// segments of the samples whose 8-byte substrings occur most often
// across them, the best ones last (nearest the payload, cheapest to
// refer to). On logdist's packets COVER's content compresses a
// 1-message packet about 20% better than klauspost's (docs/PERFORMANCE.md,
// "zstd dictionaries").
package zdict

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	kdict "github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
)

// Builder chooses how the dictionary's content is selected.
type Builder string

const (
	// BuilderCover selects content with the COVER algorithm (Liao,
	// Petri, Moffat, Wirth, "Effective Construction of Relative
	// Lempel-Ziv Dictionaries", 2016), as `zstd --train` does.
	BuilderCover Builder = "cover"
	// BuilderKlauspost is klauspost/compress's dict.BuildZstdDict.
	BuilderKlauspost Builder = "klauspost"
)

// Options tune Train.
type Options struct {
	// ID is the dictionary id, which the protocol names it by; 0 draws one
	// at random from [32768, 2^31), the range RFC 8878 leaves for private
	// use.
	ID uint32
	// Size is the content's size in bytes (default 64 KiB). A larger one
	// holds more of the samples' vocabulary, and costs every encoder and
	// decoder that much memory more.
	Size int
	// Builder selects the content (default BuilderCover).
	Builder Builder
	// Level is the encoder level the entropy tables are tuned for
	// (default zstd.SpeedDefault, the agents' default).
	Level zstd.EncoderLevel
}

// DefaultSize is the default content size.
const DefaultSize = 64 << 10

// Cover's parameters: segments of coverK bytes, scored by their distinct
// coverD-byte substrings (d-mers), counted in a table of 2^coverBits.
// Measured on logbench's log text (the cover parameter sweep in
// docs/PERFORMANCE.md): k from 256 to 1024 and d 6 or 8 are within 2% of
// each other.
const (
	coverK    = 512
	coverD    = 8
	coverBits = 20
)

// MinSamples is the fewest samples Train takes: a dictionary is about
// what samples have in common.
const MinSamples = 10

// Train builds a zstd dictionary from samples: each one a unit the way it
// will be compressed (for logdist, a raw packet).
func Train(samples [][]byte, o Options) ([]byte, error) {
	if len(samples) < MinSamples {
		return nil, fmt.Errorf("zdict: %d samples; want at least %d (a few thousand is better)", len(samples), MinSamples)
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Size < 256 || o.Size > 1<<22 {
		return nil, fmt.Errorf("zdict: size %d not in [256, 4 MiB]", o.Size)
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.ID == 0 {
		o.ID = 32768 + rand.Uint32N(1<<31-32768)
	}
	total := 0
	for _, s := range samples {
		total += len(s)
	}
	switch o.Builder {
	case BuilderKlauspost:
		return kdict.BuildZstdDict(samples, kdict.Options{MaxDictSize: o.Size, HashBytes: 6, ZstdDictID: o.ID, ZstdLevel: o.Level})
	case BuilderCover, "":
	default:
		return nil, fmt.Errorf("zdict: unknown builder %q (want %s or %s)", o.Builder, BuilderCover, BuilderKlauspost)
	}
	content := cover(samples, min(o.Size, total))
	if len(content) < 8 {
		return nil, errors.New("zdict: the samples have nothing in common to build a dictionary of")
	}
	return zstd.BuildDict(zstd.BuildDictOptions{
		ID:       o.ID,
		Contents: samples,
		History:  content,
		Offsets:  [3]int{1, 4, 8},
		Level:    o.Level,
	})
}

func dmer(b []byte) uint32 {
	return uint32((binary.LittleEndian.Uint64(b) * 0xcf1bbcdcb7a56463) >> (64 - coverBits))
}

// cover returns up to size bytes of content chosen from the samples: the
// samples, end to end, are cut into one epoch per segment the content
// holds; from each epoch, in turn, the coverK-byte segment whose distinct
// d-mers are most frequent over all the samples is taken, and its d-mers
// no longer count (the next segment brings something new). The first
// taken goes last. Rounds go on through the epochs until the content is
// full or nothing scores.
func cover(samples [][]byte, size int) []byte {
	freq := make([]uint32, 1<<coverBits)
	var all []byte
	for _, s := range samples {
		for i := 0; i+coverD <= len(s); i++ {
			freq[dmer(s[i:])]++
		}
		all = append(all, s...)
	}
	k := min(coverK, len(all))
	epochs := max(1, size/k)
	epochSize := len(all) / epochs
	if epochSize < k {
		epochs, epochSize = 1, len(all)
	}
	out := make([]byte, size)
	tail := size
	seen := make([]uint16, 1<<coverBits)
	for round := 0; tail > 0; round++ {
		took := false
		for e := 0; e < epochs && tail > 0; e++ {
			lo, hi := e*epochSize, min((e+1)*epochSize, len(all))
			if e == epochs-1 {
				hi = len(all)
			}
			at, ok := bestSegment(all[lo:hi], k, freq, seen)
			if !ok {
				continue
			}
			seg := all[lo+at : lo+at+k]
			for i := 0; i+coverD <= len(seg); i++ {
				freq[dmer(seg[i:])] = 0
			}
			n := min(len(seg), tail)
			copy(out[tail-n:], seg[len(seg)-n:])
			tail -= n
			took = true
		}
		if !took {
			break
		}
	}
	return out[tail:]
}

// bestSegment returns the start of the k-byte segment of b whose distinct
// d-mers have the highest total frequency, and false if none scores.
// seen counts the d-mers in the window; it is all zero again on return.
func bestSegment(b []byte, k int, freq []uint32, seen []uint16) (int, bool) {
	if len(b) < k {
		return 0, false
	}
	n := k - coverD + 1 // d-mers starting in a window
	var score, best uint64
	bestAt := -1
	last := len(b) - coverD
	for i := 0; i <= last; i++ {
		h := dmer(b[i:])
		if seen[h] == 0 {
			score += uint64(freq[h])
		}
		seen[h]++
		if i >= n { // the d-mer at i-n leaves the window
			o := dmer(b[i-n:])
			if seen[o]--; seen[o] == 0 {
				score -= uint64(freq[o])
			}
		}
		if start := i - n + 1; start >= 0 && start+k <= len(b) && score > best {
			best, bestAt = score, start
		}
	}
	for i := max(0, last-n+1); i <= last; i++ {
		seen[dmer(b[i:])] = 0
	}
	return bestAt, bestAt >= 0
}
