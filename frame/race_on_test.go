//go:build race

package frame

// raceEnabled: the race detector makes sync.Pool drop a random share of
// what is Put, so pooled paths allocate under -race by design.
const raceEnabled = true
