package arena

import (
	"math/rand/v2"
	"testing"
)

// TestArenaLiveFramesNeverOverlap allocates and frees frames in random
// order and checks that no two live frames share a byte, that each keeps
// its contents, and that the arena stays within its bound.
func TestArenaLiveFramesNeverOverlap(t *testing.T) {
	type live struct {
		b   []byte
		c   *Chunk
		tag byte
	}
	a := Arena{MaxChunks: 6}
	rng := rand.New(rand.NewPCG(1, 2))
	var frames []live
	fallbacks := 0
	for i := 0; i < 200000; i++ {
		if len(frames) > 0 && (rng.IntN(2) == 0 || len(frames) > 3000) {
			j := rng.IntN(len(frames))
			f := frames[j]
			for k, v := range f.b {
				if v != f.tag {
					t.Fatalf("step %d: frame byte %d is %d, want %d: overwritten while live", i, k, v, f.tag)
				}
			}
			a.Free(f.c)
			frames[j] = frames[len(frames)-1]
			frames = frames[:len(frames)-1]
			continue
		}
		n := 1 + rng.IntN(4000)
		if rng.IntN(100) == 0 {
			n = MaxFrame + 1 + rng.IntN(100)
		}
		b, c := a.Alloc(n)
		if c == nil {
			fallbacks++
			if n <= MaxFrame && a.chunks < a.MaxChunks {
				t.Fatalf("step %d: alloc(%d) refused with %d of %d chunks", i, n, a.chunks, a.MaxChunks)
			}
			continue
		}
		if len(b) != n || cap(b) != n {
			t.Fatalf("alloc(%d) = len %d cap %d", n, len(b), cap(b))
		}
		tag := byte(i)
		for k := range b {
			b[k] = tag
		}
		frames = append(frames, live{b, c, tag})
		if a.chunks > a.MaxChunks {
			t.Fatalf("%d chunks, bound %d", a.chunks, a.MaxChunks)
		}
	}
	for _, f := range frames {
		a.Free(f.c)
	}
	if fallbacks == 0 {
		t.Fatal("the bound was never reached: the test does not exercise the fallback")
	}
	if a.chunks > keepSpare+1 {
		t.Fatalf("%d chunks kept with nothing live; at most %d", a.chunks, keepSpare+1)
	}
}

// TestArenaReusesTheCurrentChunk: in a steady stream where every frame
// is freed before the next, the arena never needs a second chunk.
func TestArenaReusesTheCurrentChunk(t *testing.T) {
	a := Arena{MaxChunks: 4}
	var first *Chunk
	for i := 0; i < 10000; i++ {
		b, c := a.Alloc(1400)
		if c == nil {
			t.Fatal("alloc failed")
		}
		if first == nil {
			first = c
		}
		if c != first || a.chunks != 1 {
			t.Fatalf("frame %d in a new chunk (%d allocated)", i, a.chunks)
		}
		b[0] = 1
		a.Free(c)
	}
}
