// Package arena holds the bytes of one event loop's in-flight packets:
// frames are copied one after another into large chunks (a bump pointer),
// and a chunk is reused once every frame in it has been freed.
package arena

// Arena holds the bytes of one loop's in-flight packets. Frames are copied
// one after another into large chunks (a bump pointer), and a chunk is
// reused once every frame in it has been freed.
//
// Why not a buffer per record: with a few thousand packets in flight (ten
// agents with a window of 256 is 2,560 packets, 3.5 MB of 1.4 KB frames)
// the bytes do not fit in a core's L2 cache, and copying a frame into a
// recycled per-record buffer scattered over the heap stalled on every
// cache line and TLB entry of the destination: the copy was the largest
// user-space cost in the profile. Copying into the next bytes of a chunk
// is a sequential store stream the hardware prefetches, and the upstream
// writes then read neighbouring frames too.
//
// A frame that lives long (queued while every analyzer is down, or held by
// a slow analyzer) pins its chunk until it is freed, so the arena is
// bounded (maxChunks); past the bound, and for frames larger than
// MaxFrame, records get a buffer of their own as before. Memory is
// therefore at most maxChunks × ChunkSize per loop on top of the bounded
// per-record buffers.
type Arena struct {
	cur    *Chunk
	spare  []*Chunk // empty chunks ready for reuse
	chunks int      // chunks allocated: in use, current or spare
	// MaxChunks bounds the chunks allocated; past it Alloc refuses.
	MaxChunks int
}

// Chunk is one block of frames; Alloc returns the one a frame is in,
// for Free.
type Chunk struct {
	buf  []byte
	off  int // bytes handed out
	live int // frames handed out and not yet freed
}

const (
	ChunkSize = 1 << 20
	// MaxFrame is the largest frame the arena takes; larger ones get a
	// buffer of their own.
	MaxFrame = 64 << 10
	// keepSpare is how many empty chunks a loop keeps beyond the one it is
	// filling; more are left to the garbage collector, so a burst does not
	// hold its peak memory for ever.
	keepSpare = 4
	// DefaultChunks bounds each loop's arena: 64 MiB.
	DefaultChunks = 64
)

// Alloc returns n bytes of the current chunk and the chunk, or nil if the
// arena is at its bound (or n is too large for it).
func (a *Arena) Alloc(n int) ([]byte, *Chunk) {
	if n == 0 || n > MaxFrame {
		return nil, nil
	}
	c := a.cur
	if c == nil || c.off+n > len(c.buf) {
		if c = a.next(); c == nil {
			return nil, nil
		}
	}
	b := c.buf[c.off : c.off+n : c.off+n]
	c.off += n
	c.live++
	return b, c
}

// next makes a chunk with room the current one: the current one again if
// it is already empty, else a spare, else a new one within the bound.
func (a *Arena) next() *Chunk {
	if c := a.cur; c != nil && c.live == 0 {
		c.off = 0
		return c
	}
	var c *Chunk
	switch n := len(a.spare); {
	case n > 0:
		c = a.spare[n-1]
		a.spare[n-1] = nil
		a.spare = a.spare[:n-1]
	case a.chunks < a.MaxChunks:
		c = &Chunk{buf: make([]byte, ChunkSize)}
		a.chunks++
	default:
		return nil
	}
	a.cur = c // the old current chunk is recycled by Free when it empties
	return c
}

// Free returns one frame's bytes to chunk c.
func (a *Arena) Free(c *Chunk) {
	c.live--
	if c.live > 0 || c == a.cur {
		return
	}
	c.off = 0
	if len(a.spare) < keepSpare {
		a.spare = append(a.spare, c)
		return
	}
	a.chunks-- // left to the GC
}
