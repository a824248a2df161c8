package spool

import (
	"slices"
	"sort"
)

// seqSet is a set of sequences kept as sorted, disjoint, non-adjacent
// spans, and their count: the evicted records. An outage evicts
// millions of sequences in a few long runs, so the set stays small, and
// the usual changes (adding at the top, taking from the bottom) cost a
// binary search and no copy.
type seqSet struct {
	spans []span
	n     uint64 // sequences held
}

// add puts first..last in the set.
func (s *seqSet) add(first, last uint64) {
	if first > last {
		return
	}
	if k := len(s.spans); k == 0 || first > s.spans[k-1].last+1 {
		s.spans = append(s.spans, span{first, last}) // above everything: the usual case
		s.n += last - first + 1
		return
	}
	// i: the first span that ends at or after first-1 (it may merge).
	i := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].last+1 >= first })
	j := i
	nf, nl := first, last
	var merged uint64
	for j < len(s.spans) && s.spans[j].first <= last+1 {
		nf = min(nf, s.spans[j].first)
		nl = max(nl, s.spans[j].last)
		merged += s.spans[j].last - s.spans[j].first + 1
		j++
	}
	s.n += nl - nf + 1 - merged
	s.spans = slices.Replace(s.spans, i, j, span{nf, nl})
}

// remove takes first..last out of the set and returns how many of them
// it held.
func (s *seqSet) remove(first, last uint64) uint64 {
	if first > last || len(s.spans) == 0 {
		return 0
	}
	i := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].last >= first })
	j := i
	var gone uint64
	var keep [2]span
	nk := 0
	for ; j < len(s.spans) && s.spans[j].first <= last; j++ {
		sp := s.spans[j]
		if sp.first < first {
			keep[nk] = span{sp.first, first - 1}
			nk++
		}
		if sp.last > last {
			keep[nk] = span{last + 1, sp.last}
			nk++
		}
		gone += min(sp.last, last) - max(sp.first, first) + 1
	}
	if gone == 0 {
		return 0
	}
	s.n -= gone
	if i == 0 && nk == 0 {
		s.spans = s.spans[j:] // taken from the bottom: no copy
	} else {
		s.spans = slices.Replace(s.spans, i, j, keep[:nk]...)
	}
	if len(s.spans) == 0 {
		s.spans = nil // let the storage go
	}
	return gone
}

// has reports whether seq is in the set.
func (s *seqSet) has(seq uint64) bool {
	i := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].last >= seq })
	return i < len(s.spans) && s.spans[i].first <= seq
}

// covers reports whether the set holds every sequence of first..last
// (first ≤ last).
func (s *seqSet) covers(first, last uint64) bool {
	i := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].last >= first })
	return i < len(s.spans) && s.spans[i].first <= first && s.spans[i].last >= last
}

// min returns the lowest sequence in the set (false: empty).
func (s *seqSet) min() (uint64, bool) {
	if len(s.spans) == 0 {
		return 0, false
	}
	return s.spans[0].first, true
}

// unresolved returns the sequences of 1..last that a does not resolve.
func unresolved(a *ackSet, last uint64) seqSet {
	var s seqSet
	prev := a.floor // resolved up to here
	for _, sp := range a.spans {
		if sp.first > last {
			break
		}
		if sp.first > prev+1 {
			s.spans = append(s.spans, span{prev + 1, sp.first - 1})
			s.n += sp.first - 1 - prev
		}
		prev = sp.last
	}
	if last > prev {
		s.spans = append(s.spans, span{prev + 1, last})
		s.n += last - prev
	}
	return s
}

// resolvedIn returns how many sequences of first..last are resolved.
func (s *ackSet) resolvedIn(first, last uint64) uint64 {
	if first > last {
		return 0
	}
	var n uint64
	if first <= s.floor {
		n = min(last, s.floor) - first + 1
		first = s.floor + 1
		if first > last {
			return n
		}
	}
	i := sort.Search(len(s.spans), func(k int) bool { return s.spans[k].last >= first })
	for ; i < len(s.spans) && s.spans[i].first <= last; i++ {
		n += min(s.spans[i].last, last) - max(s.spans[i].first, first) + 1
	}
	return n
}
