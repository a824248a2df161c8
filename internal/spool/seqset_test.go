package spool

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// seqSet against a plain set: random adds and removes, the invariants
// (sorted, disjoint, not adjacent, count) after each.
func TestSeqSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s seqSet
	model := map[uint64]bool{}
	check := func(step int) {
		t.Helper()
		var n uint64
		for i, sp := range s.spans {
			if sp.first > sp.last || (i > 0 && sp.first <= s.spans[i-1].last+1) {
				t.Fatalf("step %d: spans %v", step, s.spans)
			}
			n += sp.last - sp.first + 1
		}
		if n != s.n || n != uint64(len(model)) {
			t.Fatalf("step %d: spans hold %d, n %d, model %d", step, n, s.n, len(model))
		}
		for q := uint64(1); q <= 300; q++ {
			if s.has(q) != model[q] {
				t.Fatalf("step %d: has(%d) = %v", step, q, s.has(q))
			}
		}
		lo, ok := s.min()
		var want uint64
		for q := range model {
			if want == 0 || q < want {
				want = q
			}
		}
		if ok != (want != 0) || lo != want {
			t.Fatalf("step %d: min %d %v, want %d", step, lo, ok, want)
		}
	}
	for step := range 20000 {
		first := 1 + rng.Uint64N(280)
		last := first + rng.Uint64N(min(20, 300-first+1))
		if rng.IntN(2) == 0 {
			s.add(first, last)
			for q := first; q <= last; q++ {
				model[q] = true
			}
		} else {
			var want uint64
			for q := first; q <= last; q++ {
				if model[q] {
					want++
				}
				delete(model, q)
			}
			if got := s.remove(first, last); got != want {
				t.Fatalf("step %d: remove(%d, %d) = %d, want %d", step, first, last, got, want)
			}
		}
		check(step)
	}
}

// Taking from the bottom and adding at the top, as Reread and Evict do,
// copies nothing: the set of a long contiguous run stays one span.
func TestSeqSetRun(t *testing.T) {
	var s seqSet
	for q := uint64(1); q <= 1_000_000; q++ {
		s.add(q, q)
	}
	if len(s.spans) != 1 || s.n != 1_000_000 {
		t.Fatalf("%d spans, n %d", len(s.spans), s.n)
	}
	for q := uint64(1); q <= 999_999; q++ {
		if s.remove(q, q) != 1 {
			t.Fatalf("remove(%d)", q)
		}
	}
	if !slices.Equal(s.spans, []span{{1_000_000, 1_000_000}}) {
		t.Fatalf("spans %v", s.spans)
	}
}

// unresolved is the complement of the ledger's floor and spans.
func TestUnresolved(t *testing.T) {
	for _, c := range []struct {
		acks ackSet
		last uint64
		want []span
	}{
		{ackSet{}, 0, nil},
		{ackSet{}, 5, []span{{1, 5}}},
		{ackSet{floor: 5}, 5, nil},
		{ackSet{floor: 2}, 9, []span{{3, 9}}},
		{ackSet{floor: 2, seqSet: seqSet{spans: []span{{4, 5}, {8, 8}}}}, 9, []span{{3, 3}, {6, 7}, {9, 9}}},
		{ackSet{floor: 2, seqSet: seqSet{spans: []span{{4, 5}, {8, 9}}}}, 9, []span{{3, 3}, {6, 7}}},
	} {
		s := unresolved(&c.acks, c.last)
		var n uint64
		for _, sp := range c.want {
			n += sp.last - sp.first + 1
		}
		if !slices.Equal(s.spans, c.want) || s.n != n {
			t.Errorf("unresolved(%+v, %d) = %v (%d), want %v", c.acks, c.last, s.spans, s.n, c.want)
		}
		var resolved uint64
		if c.last > 0 {
			resolved = c.acks.resolvedIn(1, c.last)
		}
		if resolved+s.n != c.last {
			t.Errorf("resolvedIn(1, %d) = %d beside %d unresolved", c.last, resolved, s.n)
		}
	}
	a := ackSet{floor: 2, seqSet: seqSet{spans: []span{{4, 5}, {8, 9}}}}
	for _, c := range []struct{ first, last, want uint64 }{{1, 1, 1}, {3, 3, 0}, {2, 4, 2}, {5, 8, 2}, {6, 7, 0}, {9, 20, 1}, {1, 20, 6}} {
		if got := a.resolvedIn(c.first, c.last); got != c.want {
			t.Errorf("resolvedIn(%d, %d) = %d, want %d", c.first, c.last, got, c.want)
		}
	}
}
