package spool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// DropOldest drops exactly the oldest segment's records not
// acknowledged, frees its bytes, and never drops the newest; after a
// restart the dropped sequences are neither read back nor reported.
func TestDropOldest(t *testing.T) {
	dir := t.TempDir()
	var ds damages
	cfg := testConfig()
	cfg.SegmentBytes = 8 << 10
	cfg.OnDamage = ds.add
	d := open(t, dir, cfg)
	appendN(t, d, 1, 100, 5, 1000)
	files := segFiles(t, dir)
	if len(files) < 5 {
		t.Fatalf("segments %v", files)
	}
	end := mustBase(files[1]) - 1 // the oldest segment holds 1..end
	fi, err := os.Stat(filepath.Join(dir, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []uint64{2, 5} {
		if err := d.Ack(q); err != nil {
			t.Fatal(err)
		}
	}
	d.Evict(1)
	d.Evict(3)
	d.Evict(end + 1)
	before := d.Stats()
	recs, freed, err := d.DropOldest()
	if err != nil || recs != end-2 || freed != fi.Size() {
		t.Fatalf("DropOldest: %d records, %d bytes, %v; want %d, %d", recs, freed, err, end-2, fi.Size())
	}
	st := d.Stats()
	if st.Bytes != before.Bytes-freed || st.Segments != before.Segments-1 || st.Dropped != recs ||
		st.Records != before.Records-recs || st.Evicted != 1 || st.AckFloor != end || st.Lost != 0 {
		t.Fatalf("stats before %+v\nafter %+v", before, st)
	}
	if _, err := os.Stat(filepath.Join(dir, files[0])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there: %v", files[0], err)
	}
	if gs := rereadAll(t, d, 10, 1<<20); !slices.Equal(seqsOf(gs), []uint64{end + 1}) {
		t.Fatalf("reread %v", seqsOf(gs))
	}
	end2 := mustBase(files[2]) - 1
	if recs, _, err := d.DropOldest(); err != nil || recs != end2-end {
		t.Fatalf("second DropOldest: %d %v, want %d", recs, err, end2-end)
	}

	d.abandon() // a crash: the ledger DropOldest wrote is what is on disk
	d = open(t, dir, cfg)
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage reported after a restart: %v", dmg)
	}
	if d.Evicted() != 100-end2 {
		t.Fatalf("Evicted %d after a restart, want %d", d.Evicted(), 100-end2)
	}
	gs := rereadAll(t, d, 16, 1<<20)
	if !slices.Equal(seqsOf(gs), seqRange(end2+1, 100)) || len(ds.take()) != 0 {
		t.Fatalf("reread %v", seqsOf(gs))
	}
	checkBodies(t, gs, 1000)

	// Down to the newest segment, and no further.
	for {
		_, _, err := d.DropOldest()
		if errors.Is(err, ErrNothingToDrop) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if files := segFiles(t, dir); len(files) != 1 || d.Stats().Segments != 1 {
		t.Fatalf("left %v", files)
	}
	if _, _, err := d.DropOldest(); !errors.Is(err, ErrNothingToDrop) {
		t.Fatalf("DropOldest with one segment: %v", err)
	}
	if last, err := d.Append([]Record{rec(101, 1000)}); err != nil || last != 101 {
		t.Fatalf("Append after dropping: %d %v", last, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage: %v", dmg)
	}
}

// A ledger that cannot be written (the disk full) does not keep the
// oldest segment: it goes at once. A restart before the ledger is
// written reports its records as missing (DamageGap), as documented, and
// does not replay them; once housekeeping has written it, a restart
// reports nothing.
func TestDropOldestLedgerUnwritable(t *testing.T) {
	dir := t.TempDir()
	var ds damages
	cfg := testConfig()
	cfg.SegmentBytes = 8 << 10
	cfg.OnDamage = ds.add
	d := open(t, dir, cfg)
	appendN(t, d, 1, 60, 5, 1000)
	if err := d.Ack(60); err != nil { // a ledger to find at the restart
		t.Fatal(err)
	}
	if err := d.housekeep(false); err != nil {
		t.Fatal(err)
	}
	// The ledger's temporary file cannot be created while a non-empty
	// directory has its name.
	block := func() {
		if err := os.MkdirAll(filepath.Join(dir, ackTemp, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	unblock := func() {
		if err := os.RemoveAll(filepath.Join(dir, ackTemp)); err != nil {
			t.Fatal(err)
		}
	}
	files := segFiles(t, dir)
	end := mustBase(files[1]) - 1
	block()
	if recs, _, err := d.DropOldest(); err != nil || recs != end {
		t.Fatalf("DropOldest: %d %v", recs, err)
	}
	if _, err := os.Stat(filepath.Join(dir, files[0])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s kept: %v", files[0], err)
	}
	d.abandon()
	unblock()
	d = open(t, dir, cfg)
	wantDamage(t, ds.take(), Damage{Kind: DamageGap, Segment: files[1], FirstSeq: 1, LastSeq: end, Repair: "marked lost"})
	if gs := rereadAll(t, d, 100, 1<<20); !slices.Equal(seqsOf(gs), seqRange(end+1, 59)) {
		t.Fatalf("reread %v", seqsOf(gs))
	}

	// Housekeeping retries the ledger once it can be written.
	end2 := mustBase(files[2]) - 1
	block()
	if recs, _, err := d.DropOldest(); err != nil || recs != end2-end {
		t.Fatalf("second DropOldest: %d %v", recs, err)
	}
	unblock()
	waitFor(t, "the ledger", func() bool {
		l, _, err := readLedger(dir)
		return err == nil && l.acks.covers(1, end2)
	})
	d.abandon()
	d = open(t, dir, cfg)
	defer d.Close()
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage after the ledger was written: %v", dmg)
	}
	if d.Evicted() != 59-end2 {
		t.Fatalf("Evicted %d, want %d", d.Evicted(), 59-end2)
	}
}

func TestDropOldestRefusals(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, testConfig())
	appendN(t, d, 1, 10, 10, 100)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.DropOldest(); !errors.Is(err, ErrClosed) {
		t.Fatalf("DropOldest after Close: %v", err)
	}
	cfg := testConfig()
	cfg.ReadOnly = true
	ro := open(t, dir, cfg)
	defer ro.Close()
	if _, _, err := ro.DropOldest(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only DropOldest: %v", err)
	}
}
