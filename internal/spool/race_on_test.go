//go:build race

package spool

// raceEnabled: the race detector's instrumentation allocates.
const raceEnabled = true
