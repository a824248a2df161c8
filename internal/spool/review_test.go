package spool

import (
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"syscall"
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

// A batch whose write fails (ENOSPC) gives up its sequences; the records
// appended after it must not follow the last good one in the same
// segment with a jump of the batch's size: a damaged record before the
// jump would then cost every intact record the reader cannot
// resynchronise on (their sequences look implausibly far ahead).
func TestFailedWriteThenDamage(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 64 << 20
	d := open(t, dir, cfg)
	appendN(t, d, 1, 10, 1, 500)
	segWriteAt = func(*os.File, []byte, int64) (int, error) { return 0, syscall.ENOSPC }
	var big []Record
	for i := range 300 {
		big = append(big, rec(100+i, 500))
	}
	_, err := d.Append(big)
	segWriteAt = func(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	after := appendN(t, d, 1000, 40, 1, 500)
	var offs = map[uint64]got{}
	for _, g := range scan(t, d) {
		offs[g.Seq] = g
	}
	d.abandon()
	// Damage record 10's length field.
	g := offs[10]
	patch(t, dir, g.Segment, func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[g.Offset:], 0xffffffff)
		return b
	})
	_, seqs, _ := reopen(t, dir)
	want := append(seqRange(1, 9), after...)
	if !slices.Equal(seqs, want) {
		t.Fatalf("replayed %v\nwant %v", seqs, want)
	}
}

// Sync is documented to make everything appended durable whatever the
// policy, SyncNever included; under SyncNever Durable already covers the
// records, which made Sync return without an fsync.
func TestSyncUnderSyncNever(t *testing.T) {
	cfg := testConfig()
	cfg.Sync = SyncNever
	cfg.SegmentBytes = 4 << 10
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	appendN(t, d, 1, 20, 1, 500) // several segments
	before := d.Stats().Syncs
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.Syncs < before+uint64(st.Segments) {
		t.Fatalf("Sync under SyncNever did %d fsyncs for %d segments", st.Syncs-before, st.Segments)
	}
}

// A ledger with a valid checksum but impossible numbers — next 0, or a
// floor at or past next — is damage, not a state to trust: trusted, the
// floor would cover sequences not yet written, and new appends would be
// taken for resolved and deleted.
func TestLedgerImpossibleNumbersRefused(t *testing.T) {
	for _, l := range []ledger{
		{acks: ackSet{floor: ^uint64(0)}, next: 0},
		{acks: ackSet{floor: 10}, next: 10},
		{acks: ackSet{floor: 0}, next: 0},
		// A span ending at 2^64-1, then a lower one: order is checked
		// against the previous span's end + 1, which wraps to 0.
		{acks: ackSet{floor: 1, seqSet: seqSet{spans: []span{{10, ^uint64(0)}, {3, 4}}}}, next: 20},
		{acks: ackSet{floor: 1, seqSet: seqSet{spans: []span{{10, 25}, {30, 31}}}}, next: 20},
	} {
		if _, err := decodeLedger(encodeLedger(&l)); err == nil {
			t.Errorf("floor %d next %d: decoded", l.acks.floor, l.next)
		}
	}
	ok := ledger{acks: ackSet{floor: 9}, next: 10}
	if _, err := decodeLedger(encodeLedger(&ok)); err != nil {
		t.Errorf("floor 9 next 10: %v", err)
	}
}
