//go:build race

package server_test

// raceEnabled: the race detector makes sync.Pool drop a random share of
// what is Put (the zstd decoders come from one), and goroutines cost
// allocations of their own, so allocation pins hold without it only.
const raceEnabled = true
