package balancer

import "math"

// The Hash strategy: weighted rendezvous hashing (Schindelhauer and
// Schomaker, "Weighted distributed hash tables", 2005). Every analyzer i
// draws u_i in (0,1) from a hash of (key, its name) and scores
// -w_i/ln(u_i); the key goes to the highest score. Each analyzer wins a
// key with probability w_i/Σw, and the winner for a key changes only when
// the winner leaves (its keys spread over the others by weight) or when a
// joining or re-weighted analyzer now outscores it: minimal movement, per
// key, with no table to rebuild.
//
// Why not a Maglev table with O(1) lookups: slow start re-weights an
// analyzer ten times per recovery, and each re-weight of a Maglev table
// moves keys between analyzers whose weights did not change; rendezvous
// moves keys only to or from the ramping one. The price is O(n) per pick,
// made cheap by a bound: ln(u) <= u-1, so an analyzer whose (u-1)/w cannot
// beat the best score so far is skipped without computing a logarithm,
// and only O(log n) logarithms are expected per pick. Measured figures are
// in docs/PERFORMANCE.md.
//
// Everything is derived from the key bytes and the analyzer names with
// fixed functions (FNV-1a 64 then a murmur3 finaliser), never a per-process
// seed: every distributor instance, and every restart, sends a key to the
// same analyzer.

// hashKey hashes b with FNV-1a 64 and finalises it so that nearby keys
// ("host-1", "host-2") land far apart.
func hashKey(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return fmix64(h)
}

// fmix64 is the murmur3 64-bit finaliser: a bijection with full avalanche.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// nameSeed is the rendezvous seed of an analyzer: it depends on the name
// only, so an analyzer keeps its keys across restarts, re-adds and ID
// reuse.
func nameSeed(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return fmix64(h ^ 0x9e3779b97f4a7c15)
}

// pickRendezvous returns the index in sn.ids of the analyzer key hashes to.
// sn.ids must not be empty.
func pickRendezvous(sn *snapshot, key []byte) int {
	k := hashKey(key)
	best, bestScore := 0, math.Inf(-1)
	invW := sn.invW
	for i, seed := range sn.seeds {
		if i >= len(invW) {
			break
		}
		// u in (0,1), never 0 or 1, so ln(u) is finite and negative.
		u := (float64(fmix64(k^seed)>>11) + 0.5) * 0x1p-53
		// Score ln(u)/w: the same order as -w/ln(u), without a division.
		if (u-1)*invW[i] <= bestScore {
			continue // ln(u) <= u-1: cannot beat the best
		}
		if s := math.Log(u) * invW[i]; s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}
