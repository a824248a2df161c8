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
// moves keys only to or from the ramping one. The price is O(n) per pick:
// a multiply-xorshift hash and a few float operations per analyzer, with a
// logarithm only when two analyzers' scores are too close to tell apart by
// cheap bounds (see pickRendezvous). Measured figures are in
// docs/PERFORMANCE.md.
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

// pickRendezvous returns the index in sn.ids of the analyzer key hashes to:
// the highest score ln(u_i)/w_i (the same order as -w_i/ln(u_i)), the
// lowest index on ties. sn.ids must not be empty.
//
// Logarithms are the cost, so each score is first bracketed without one:
// (u-1)/u <= ln(u) <= u-1. A candidate whose bracket lies clearly below the
// best's is skipped, one clearly above replaces it, and only overlapping
// brackets (two close contenders) are settled with math.Log. "Clearly" is a
// relative margin of 1e-9, far above float rounding, so the winner is
// always the one exact scores give.
func pickRendezvous(sn *snapshot, key []byte) int {
	const margin = 1e-9
	k := hashKey(key)
	invW := sn.invW
	best, exact := -1, false
	var bestLo, bestHi, bestU float64 // bracket of the best score (all < 0)
	for i, seed := range sn.seeds {
		if i >= len(invW) {
			break
		}
		// u in (0,1), never 0 or 1, so ln(u) is finite and negative.
		u := (float64(fmix64(k^seed)>>11) + 0.5) * 0x1p-53
		hi := (u - 1) * invW[i]
		if best >= 0 && hi < bestLo*(1+margin) {
			continue
		}
		lo := hi / u
		if best < 0 || lo > bestHi*(1-margin) {
			best, bestLo, bestHi, bestU, exact = i, lo, hi, u, false
			continue
		}
		if !exact {
			bestLo = math.Log(bestU) * invW[best]
			bestHi, exact = bestLo, true
		}
		if s := math.Log(u) * invW[i]; s > bestLo {
			best, bestLo, bestHi, bestU = i, s, s, u
		}
	}
	return best
}
