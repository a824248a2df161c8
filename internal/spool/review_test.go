package spool

import (
	"testing"
	"time"
)

// Open gives up the torn record's sequence; a second crash right after
// that Open (before any housekeeping) must not hand the sequence out
// again: the give-up has to be on disk before Open returns.
func TestTornSequenceSurvivesSecondCrash(t *testing.T) {
	dir, seg, offs := oneSegment(t, 50, 1400)
	last := offs[len(offs)-1]
	patch(t, dir, seg, func(b []byte) []byte { return b[:last+700] })
	cfg := testConfig()
	cfg.AckInterval = time.Hour // no housekeeping before the crash
	d := open(t, dir, cfg)
	d.abandon() // kill -9 right after Open cut the tail
	d2 := open(t, dir, cfg)
	defer d2.Close()
	if seq, err := d2.Append([]Record{rec(51, 100)}); err != nil || seq != 51 {
		t.Fatalf("Append after two crashes: %d %v (the torn sequence 50 must not be reused)", seq, err)
	}
}
