package session

// ring is a growable FIFO on a power-of-two buffer, indexed from its head:
// positions wrap with a mask. It grows by doubling and never shrinks, so
// a session's rings reach the window's size once and then allocate
// nothing.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

// at returns a pointer to the i-th element from the head (i < len).
func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.grow(r.n + 1)
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// pop removes the head element, zeroing its slot (no stale pointers).
func (r *ring[T]) pop() T {
	var zero T
	p := &r.buf[r.head]
	v := *p
	*p = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return v
}

// extend appends zero elements until the ring holds n.
func (r *ring[T]) extend(n int) {
	if n > len(r.buf) {
		r.grow(n)
	}
	r.n = max(r.n, n)
}

func (r *ring[T]) grow(need int) {
	size := max(16, len(r.buf))
	for size < need {
		size *= 2
	}
	nb := make([]T, size)
	for i := 0; i < r.n; i++ {
		nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = nb, 0
}

// reset empties the ring, zeroing its slots, and keeps the buffer.
func (r *ring[T]) reset() {
	clear(r.buf)
	r.head, r.n = 0, 0
}
