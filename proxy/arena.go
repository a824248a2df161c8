package proxy

// arena holds the bytes of one loop's in-flight packets. Frames are copied
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
// maxArenaFrame, records get a buffer of their own as before. Memory is
// therefore at most maxChunks × chunkSize per loop on top of the bounded
// per-record buffers.
type arena struct {
	cur       *chunk
	spare     []*chunk // empty chunks ready for reuse
	chunks    int      // chunks allocated: in use, current or spare
	maxChunks int
}

type chunk struct {
	buf  []byte
	off  int // bytes handed out
	live int // frames handed out and not yet freed
}

const (
	chunkSize     = 1 << 20
	maxArenaFrame = 64 << 10
	// keepSpare is how many empty chunks a loop keeps beyond the one it is
	// filling; more are left to the garbage collector, so a burst does not
	// hold its peak memory for ever.
	keepSpare = 4
	// defaultArenaChunks bounds each loop's arena: 64 MiB.
	defaultArenaChunks = 64
)

// alloc returns n bytes of the current chunk and the chunk, or nil if the
// arena is at its bound (or n is too large for it).
func (a *arena) alloc(n int) ([]byte, *chunk) {
	if n == 0 || n > maxArenaFrame {
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
func (a *arena) next() *chunk {
	if c := a.cur; c != nil && c.live == 0 {
		c.off = 0
		return c
	}
	var c *chunk
	switch n := len(a.spare); {
	case n > 0:
		c = a.spare[n-1]
		a.spare[n-1] = nil
		a.spare = a.spare[:n-1]
	case a.chunks < a.maxChunks:
		c = &chunk{buf: make([]byte, chunkSize)}
		a.chunks++
	default:
		return nil
	}
	a.cur = c // the old current chunk is recycled by free when it empties
	return c
}

// free returns one frame's bytes to chunk c.
func (a *arena) free(c *chunk) {
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
