//go:build !race

package analyzerd_test

const raceEnabled = false
