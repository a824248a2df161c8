package proxy

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestArenaLiveFramesNeverOverlap allocates and frees frames in random
// order and checks that no two live frames share a byte, that each keeps
// its contents, and that the arena stays within its bound.
func TestArenaLiveFramesNeverOverlap(t *testing.T) {
	type live struct {
		b   []byte
		c   *chunk
		tag byte
	}
	a := arena{maxChunks: 6}
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
			a.free(f.c)
			frames[j] = frames[len(frames)-1]
			frames = frames[:len(frames)-1]
			continue
		}
		n := 1 + rng.IntN(4000)
		if rng.IntN(100) == 0 {
			n = maxArenaFrame + 1 + rng.IntN(100)
		}
		b, c := a.alloc(n)
		if c == nil {
			fallbacks++
			if n <= maxArenaFrame && a.chunks < a.maxChunks {
				t.Fatalf("step %d: alloc(%d) refused with %d of %d chunks", i, n, a.chunks, a.maxChunks)
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
		if a.chunks > a.maxChunks {
			t.Fatalf("%d chunks, bound %d", a.chunks, a.maxChunks)
		}
	}
	for _, f := range frames {
		a.free(f.c)
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
	a := arena{maxChunks: 4}
	var first *chunk
	for i := 0; i < 10000; i++ {
		b, c := a.alloc(1400)
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
		a.free(c)
	}
}

// TestRecordsUseTheArena: an agent frame goes to the arena, a frame over
// maxArenaFrame to the record's own buffer, and freeing the record gives
// the arena bytes back.
func TestRecordsUseTheArena(t *testing.T) {
	lp := &loop{maxBuf: maxRecordBuf}
	lp.arena.maxChunks = 2
	small := make([]byte, 1400)
	r := lp.newRecord(small, nil, 1, 1)
	if r.ch == nil || unsafe.SliceData(r.buf) != unsafe.SliceData(r.ch.buf) {
		t.Fatal("a small frame did not go to the arena")
	}
	ch := r.ch
	lp.freeRecord(r)
	if ch.live != 0 || r.buf != nil || r.ch != nil {
		t.Fatalf("after free: chunk live %d, record buf %v ch %v", ch.live, r.buf != nil, r.ch)
	}
	big := make([]byte, maxArenaFrame+1)
	r = lp.newRecord(big, nil, 2, 1)
	if r.ch != nil || len(r.buf) != len(big) || unsafe.SliceData(r.buf) != unsafe.SliceData(r.own) {
		t.Fatal("a large frame did not get its own buffer")
	}
	lp.freeRecord(r)
}

// The fields settling a record reads share its first cache line, and the
// record's size keeps it 64-byte aligned in the allocator's 128-byte class.
func TestRecordLayout(t *testing.T) {
	var r record
	if n := unsafe.Sizeof(r); n != 128 {
		t.Fatalf("record is %d bytes, want 128 (one size class, 64-byte aligned)", n)
	}
	for name, end := range map[string]uintptr{
		"agent": unsafe.Offsetof(r.agent) + unsafe.Sizeof(r.agent),
		"aseq":  unsafe.Offsetof(r.aseq) + unsafe.Sizeof(r.aseq),
		"ch":    unsafe.Offsetof(r.ch) + unsafe.Sizeof(r.ch),
		"stamp": unsafe.Offsetof(r.stamp) + unsafe.Sizeof(r.stamp),
		"msgs":  unsafe.Offsetof(r.msgs) + unsafe.Sizeof(r.msgs),
		"own":   unsafe.Offsetof(r.own) + unsafe.Sizeof(r.own),
	} {
		if end > 64 {
			t.Errorf("record.%s ends at byte %d, past the first cache line", name, end)
		}
	}
	for i := 0; i < 100; i++ {
		recordSink = append(recordSink, &record{}) // on the heap, as newRecord's
	}
	for _, r := range recordSink {
		if p := uintptr(unsafe.Pointer(r)); p%64 != 0 {
			t.Fatalf("a record at %#x is not 64-byte aligned", p)
		}
	}
	recordSink = nil
}

var recordSink []*record
