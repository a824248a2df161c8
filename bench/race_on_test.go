//go:build race

package bench

// raceEnabled: the race detector slows training a dictionary about
// 20-fold; the tests that train on 20,000 packets only to check ratios
// (deterministic, nothing concurrent) skip under it.
const raceEnabled = true
