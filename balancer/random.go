package balancer

import "math/rand/v2"

// The Random strategy: weighted random selection, kept to compare against
// SWRR (it is what the original design used). One 64-bit draw from the
// cursor's own PCG picks a column of a Vose alias table (high 32 bits, by
// multiply-shift) and tosses its biased coin (low 32 bits): O(1), no lock,
// no shared state between cursors. The probabilities are quantised to
// 2^-32, far below the binomial noise of any real run.

// aliasColumn is one column of a Vose alias table: pick id when the coin
// (32 random bits) is below threshold, otherwise other.
type aliasColumn struct {
	threshold uint64 // in [0, 2^32]
	id, other uint16
}

// buildAlias builds the alias table for ids with positive weights w.
func buildAlias(ids []uint16, w []float64) []aliasColumn {
	n := len(ids)
	var sum float64
	for _, x := range w {
		sum += x
	}
	// p[i] = n·w_i/Σw: columns with p < 1 are topped up from columns with
	// p > 1 (Vose 1991).
	p := make([]float64, n)
	small := make([]int, 0, n)
	large := make([]int, 0, n)
	for i, x := range w {
		p[i] = x * float64(n) / sum
		if p[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	cols := make([]aliasColumn, n)
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		cols[s] = aliasColumn{threshold: prob32(p[s]), id: ids[s], other: ids[l]}
		p[l] -= 1 - p[s]
		if p[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left has p == 1 up to rounding: always its own id.
	for _, i := range append(small, large...) {
		cols[i] = aliasColumn{threshold: 1 << 32, id: ids[i], other: ids[i]}
	}
	return cols
}

func prob32(p float64) uint64 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return 1 << 32
	}
	return uint64(p * (1 << 32))
}

// pickAlias draws one analyzer from cols with rng.
func pickAlias(cols []aliasColumn, rng *rand.PCG) uint16 {
	r := rng.Uint64()
	c := &cols[(r>>32)*uint64(len(cols))>>32]
	if r&(1<<32-1) < c.threshold {
		return c.id
	}
	return c.other
}
