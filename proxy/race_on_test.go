//go:build race

package proxy

// raceEnabled: the race detector makes sync.Pool drop a random share of
// what is Put, so pooled paths (regexp's machines, zstd coders) allocate
// under -race by design.
const raceEnabled = true
