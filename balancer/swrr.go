package balancer

import (
	"cmp"
	"math"
	"slices"
)

// The SWRR sequence.
//
// Weights are first turned into integers (quantize), then laid out by
// earliest-deadline-first over Pfair windows (buildSequence): with integer
// weights w_i summing to W and share s_i = w_i/W, the j-th pick of analyzer i
// is released at slot floor((j-1)/s_i) and due before slot ceil(j/s_i).
// Because the shares sum to 1, EDF places every pick inside its window
// (EDF is optimal for unit jobs on one machine, and a schedule meeting all
// Pfair windows exists when the shares sum to at most 1 — Baruah et al.,
// "Proportionate progress", 1996). A pick placed inside its window means,
// for every prefix of t slots,
//
//	floor(t·s_i) <= count_i(t) <= ceil(t·s_i)
//
// (at most one pick ahead or behind), and count_i(W) = w_i exactly.
//
// nginx's smooth WRR (add every weight, take the largest, subtract the
// total) gives the same smoothness class but not the same bound: it never
// lets an analyzer get a whole pick ahead, but it can leave one more than a
// pick behind (weights 1,1,1,1,19,19 fall 1.12 picks behind; the test
// TestNginxOrderExceedsOne pins it). Both orders cost the same per pick
// once precomputed, so the set uses the one with the bound.

// maxSequence caps the length of the SWRR sequence and is the denominator
// of the shares when weights cannot be represented exactly (see quantize).
// 2^16 slots of 2 bytes keep a snapshot's sequence at 128 KiB at most.
const maxSequence = 1 << 16

// quantize writes into q integer weights proportional to w (non-negative,
// finite, at least one positive) and returns their sum, which is at most
// maxSequence, and whether the proportion is exact.
//
// It is exact when every weight times some 10^k (k <= 9) is an integer (to
// within float64 rounding, 1e-12 relative: the weights read as the
// decimals an operator typed) and those integers, divided by their GCD, sum
// to at most maxSequence: weights such as 0.7/0.3 or 4/3/2/1 become 7/3
// and 4/3/2/1, and a slow-start step of 0.37·0.7 stays exact.
// Otherwise the shares are apportioned to maxSequence slots by largest
// remainders (Hamilton's method) and reduced by the GCD: each quantised
// share q_i/sum is within 1/maxSequence (1.53e-5) of w_i/Σw, and a weight
// whose share is below that may get no slot at all.
func quantize(w []float64, q []uint32) (total int, exact bool) {
	if t, ok := quantizeExact(w, q); ok {
		return t, true
	}
	return quantizeHamilton(w, q), false
}

func quantizeExact(w []float64, q []uint32) (int, bool) {
	scale := 1.0
	for k := 0; k <= 9; k, scale = k+1, scale*10 {
		var g uint64
		var sum float64
		ok := true
		for _, x := range w {
			y := x * scale
			r := math.Round(y)
			if math.Abs(y-r) > 1e-12*max(y, 1) || r > 1<<40 || x > 0 && r == 0 {
				ok = false
				break
			}
			sum += r
			g = gcd(g, uint64(r))
		}
		if !ok {
			continue
		}
		if g == 0 || sum/float64(g) > maxSequence {
			return 0, false
		}
		total := 0
		for i, x := range w {
			v := uint64(math.Round(x*scale)) / g
			q[i] = uint32(v)
			total += int(v)
		}
		return total, true
	}
	return 0, false
}

func quantizeHamilton(w []float64, q []uint32) int {
	// Scale by the largest weight first: the sum of weights near
	// math.MaxFloat64 would overflow.
	var top, sum float64
	for _, x := range w {
		top = max(top, x)
	}
	for _, x := range w {
		sum += x / top
	}
	quota := make([]float64, len(w))
	total := 0
	for i, x := range w {
		quota[i] = x / top / sum * maxSequence
		q[i] = uint32(math.Floor(quota[i]))
		total += int(q[i])
	}
	// Hand the fewer than len(w) remaining slots to the largest remainders,
	// lowest index first on ties.
	order := make([]int, len(w))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(quota[b]-float64(q[b]), quota[a]-float64(q[a]))
	})
	for _, i := range order {
		if total >= maxSequence || quota[i] <= float64(q[i]) {
			break
		}
		q[i]++
		total++
	}
	var g uint64
	for _, v := range q {
		g = gcd(g, uint64(v))
	}
	if g > 1 {
		total = 0
		for i := range q {
			q[i] /= uint32(g)
			total += int(q[i])
		}
	}
	return total
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// buildSequence lays out total = Σw slots by EDF over Pfair windows (see the
// top of this file) and returns the sequence of ids. Ties on the deadline go
// to the lower index, so the same input always gives the same sequence.
// Picks wait for their release in a bucket per slot, and released picks in
// a heap of packed (deadline<<16 | index) keys, which stays small because
// a pick is released shortly before it is due: O(total + n) plus the heap.
func buildSequence(w []uint32, ids []uint16, total int) []uint16 {
	seq := make([]uint16, total)
	if total == 0 {
		return seq
	}
	if len(w) > 1<<16 {
		panic("BUG: balancer: more than 2^16 analyzers in a sequence")
	}
	T := uint64(total)
	// For analyzer i's next pick, the j-th: j·T/w_i = q[i] + r[i]/w_i, kept
	// up to date by adding T/w_i and T%w_i per pick instead of dividing.
	// Its deadline is ceil(j·T/w_i); the release of the pick after it is
	// floor(j·T/w_i).
	n := len(w)
	q, r := make([]uint64, n), make([]uint64, n)
	dq, dr := make([]uint64, n), make([]uint64, n)
	left := make([]uint32, n) // picks still to place
	// bucket[t] heads the list (through link) of analyzers whose next pick
	// is released at slot t; -1 ends a list.
	bucket := make([]int32, total+1)
	for t := range bucket {
		bucket[t] = -1
	}
	link := make([]int32, n)
	for i := n - 1; i >= 0; i-- {
		if w[i] == 0 {
			continue
		}
		wi := uint64(w[i])
		dq[i], dr[i] = T/wi, T%wi
		q[i], r[i] = dq[i], dr[i]
		left[i] = w[i]
		link[i], bucket[0] = bucket[0], int32(i) // the first pick is released at 0
	}
	var ready keyHeap
	for t := uint64(0); t < T; t++ {
		for i := bucket[t]; i >= 0; i = link[i] {
			deadline := q[i]
			if r[i] != 0 {
				deadline++
			}
			ready.push(deadline<<16 | uint64(i))
		}
		if len(ready) == 0 {
			panic("BUG: balancer: EDF found no released pick; weights do not sum to the period")
		}
		k := ready.pop()
		if k>>16 <= t {
			panic("BUG: balancer: EDF missed a Pfair deadline")
		}
		i := k & 0xffff
		seq[t] = ids[i]
		if left[i]--; left[i] > 0 {
			release := max(q[i], t+1) // not before the next slot
			q[i] += dq[i]
			if r[i] += dr[i]; r[i] >= uint64(w[i]) {
				r[i] -= uint64(w[i])
				q[i]++
			}
			link[i], bucket[release] = bucket[release], int32(i)
		}
	}
	return seq
}

// keyHeap is a binary min-heap of packed keys; container/heap would box
// every key in an interface.
type keyHeap []uint64

func (h *keyHeap) push(x uint64) {
	*h = append(*h, x)
	a := *h
	for c := len(a) - 1; c > 0; {
		up := (c - 1) / 2
		if a[up] <= a[c] {
			break
		}
		a[c], a[up] = a[up], a[c]
		c = up
	}
}

func (h *keyHeap) pop() uint64 {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	*h = a
	for c := 0; ; {
		l, m := 2*c+1, c
		if l < last && a[l] < a[m] {
			m = l
		}
		if r := l + 1; r < last && a[r] < a[m] {
			m = r
		}
		if m == c {
			break
		}
		a[c], a[m] = a[m], a[c]
		c = m
	}
	return top
}
