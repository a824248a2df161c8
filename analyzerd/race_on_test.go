//go:build race

package analyzerd_test

// raceEnabled: goroutines and pooled objects allocate under the race
// detector, so the allocation pins over a connection hold without it only.
const raceEnabled = true
