package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// Acknowledged records are not replayed after a restart, in order or
// not; the segments they complete are removed, and only those.
func TestAcksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 300, 10, 1400)
	all := scan(t, d)
	before := segFiles(t, dir)
	acked := append(seqRange(1, 150), 170, 171, 250, 299)
	for _, seq := range slices.Backward(acked) { // out of order
		if err := d.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	if st := d.Stats(); st.Records != 300-uint64(len(acked)) || st.AckFloor != 150 || st.Oldest != 151 {
		t.Fatalf("stats %+v", st)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Every segment whose records are all acknowledged is gone; the
	// others stay.
	for _, name := range before {
		base := mustBase(name)
		var last uint64
		for _, g := range all {
			if g.Segment == name {
				last = g.Seq
			}
		}
		done := last <= 150
		_, err := os.Stat(filepath.Join(dir, name))
		if done != errors.Is(err, os.ErrNotExist) {
			t.Fatalf("segment %s (%d-%d): removed %v", name, base, last, done)
		}
	}
	d, seqs, dmg := reopen(t, dir)
	if len(dmg) != 0 || !slices.Equal(seqs, without(seqRange(1, 300), acked...)) {
		t.Fatalf("damage %v, replayed %v", dmg, seqs)
	}
	// All acknowledged: Close removes every segment; the sequence goes on.
	for seq := uint64(1); seq <= 300; seq++ {
		d.Ack(seq)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, dir); len(files) != 0 {
		t.Fatalf("segments left: %v", files)
	}
	d, seqs, _ = reopen(t, dir)
	if len(seqs) != 0 {
		t.Fatalf("replayed %v", seqs)
	}
	if seq, err := d.Append([]Record{rec(1, 100)}); err != nil || seq != 301 {
		t.Fatalf("Append after everything was delivered: %d %v (sequences must not restart)", seq, err)
	}
}

// The housekeeping removes delivered segments while the spool runs, once
// the ledger saying so is on disk; a crash after that replays nothing
// acknowledged, a crash before it only duplicates.
func TestAcksWhileRunning(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 200, 10, 1400)
	n := len(segFiles(t, dir))
	for seq := uint64(1); seq <= 100; seq++ {
		d.Ack(seq)
	}
	waitFor(t, "delivered segments removed", func() bool { return len(segFiles(t, dir)) < n })
	d.abandon()
	_, seqs, _ := reopen(t, dir)
	if !slices.Equal(seqs, seqRange(101, 200)) {
		t.Fatalf("after the ledger was written: replayed %v", seqs)
	}

	// Acknowledged but not yet persisted when the process dies: those
	// come back (duplicates), nothing else is missing.
	dir = t.TempDir()
	cfg.AckInterval = 1 << 40
	d = open(t, dir, cfg)
	appendN(t, d, 1, 50, 10, 300)
	for seq := uint64(1); seq <= 25; seq++ {
		d.Ack(seq)
	}
	d.abandon()
	_, seqs, _ = reopen(t, dir)
	if !slices.Equal(seqs, seqRange(1, 50)) {
		t.Fatalf("acks lost in a crash: replayed %v, want every record", seqs)
	}
}

// ackSet against a plain set, over random adds.
func TestAckSetModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var s ackSet
		model := map[uint64]bool{}
		for range rapid.IntRange(1, 200).Draw(t, "ops") {
			first := rapid.Uint64Range(1, 120).Draw(t, "first")
			last := first + rapid.Uint64Range(0, 6).Draw(t, "len")
			changed := false
			for q := first; q <= last; q++ {
				changed = changed || !model[q]
				model[q] = true
			}
			if got := s.add(first, last); got != changed {
				t.Fatalf("add(%d, %d) = %v, want %v", first, last, got, changed)
			}
			var count uint64
			for q := uint64(1); q <= 130; q++ {
				if s.has(q) != model[q] {
					t.Fatalf("has(%d) = %v; set %+v", q, s.has(q), s)
				}
				if model[q] && q > s.floor {
					count++
				}
			}
			if count != s.n || (s.floor > 0 && !model[s.floor]) || model[s.floor+1] {
				t.Fatalf("floor %d above %d (want %d): %+v", s.floor, s.n, count, s)
			}
			a := rapid.Uint64Range(1, 125).Draw(t, "a")
			b := a + rapid.Uint64Range(0, 10).Draw(t, "b")
			want := true
			for q := a; q <= b; q++ {
				want = want && model[q]
			}
			if s.covers(a, b) != want {
				t.Fatalf("covers(%d, %d) = %v", a, b, !want)
			}
			l := ledger{acks: s, next: s.max() + 1}
			back, err := decodeLedger(encodeLedger(&l))
			if err != nil || back.next != l.next || back.acks.floor != s.floor || back.acks.n != s.n || !slices.Equal(back.acks.spans, s.spans) {
				t.Fatalf("ledger round trip: %+v %v", back, err)
			}
		}
	})
}

// The spool against a model, over random appends, acknowledgements,
// clean restarts and crashes: a restart replays exactly the records not
// acknowledged (after a clean Close) or those and some acknowledged ones
// (after a crash: duplicates), never fewer, never one not appended; and
// sequences never repeat.
func TestSpoolModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp("", "spoolmodel")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		cfg := testConfig()
		cfg.SegmentBytes = 4 << 10
		cfg.Sync = SyncPolicy(rapid.SampledFrom([]SyncPolicy{SyncAlways, SyncNever, SyncInterval(5e6)}).Draw(rt, "sync"))
		d, err := Open(dir, cfg)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { d.Close() }()
		bodies := map[uint64][]byte{} // appended, by sequence
		acked := map[uint64]bool{}    // acknowledged (persisted or not)
		var lastSeq uint64
		check := func(clean bool) []uint64 {
			var seen []uint64
			err := d.Replay(func(r Record) error {
				if !bytes.Equal(r.Body, bodies[r.Seq]) {
					rt.Fatalf("record %d came back different", r.Seq)
				}
				seen = append(seen, r.Seq)
				return nil
			})
			if err != nil {
				rt.Fatal(err)
			}
			var want []uint64
			for seq := range bodies {
				if !acked[seq] {
					want = append(want, seq)
				}
			}
			slices.Sort(want)
			for _, seq := range want {
				if _, ok := slices.BinarySearch(seen, seq); !ok {
					rt.Fatalf("record %d lost (clean %v): replayed %v", seq, clean, seen)
				}
			}
			if clean && len(seen) != len(want) {
				rt.Fatalf("after a clean close: replayed %v, want %v", seen, want)
			}
			return seen
		}
		n := 0
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0, 1, 2, 3:
				var recs []Record
				for range rapid.IntRange(1, 8).Draw(rt, "batch") {
					n++
					recs = append(recs, rec(n, rapid.IntRange(100, 2000).Draw(rt, "size")))
				}
				last, err := d.Append(recs)
				if err != nil {
					rt.Fatal(err)
				}
				if last != lastSeq+uint64(len(recs)) {
					rt.Fatalf("Append returned %d after %d", last, lastSeq)
				}
				for i, r := range recs {
					bodies[last-uint64(len(recs)-1-i)] = r.Body
				}
				lastSeq = last
			case 4, 5, 6:
				if lastSeq > 0 {
					seq := rapid.Uint64Range(1, lastSeq).Draw(rt, "ack")
					if err := d.Ack(seq); err != nil {
						rt.Fatal(err)
					}
					acked[seq] = true
				}
			case 7, 8:
				if err := d.Close(); err != nil {
					rt.Fatal(err)
				}
				if d, err = Open(dir, cfg); err != nil {
					rt.Fatal(err)
				}
				check(true)
			case 9:
				d.abandon()
				if d, err = Open(dir, cfg); err != nil {
					rt.Fatal(err)
				}
				// A crash may forget acknowledgements (what came back is to
				// be delivered again), never records.
				seen := check(false)
				for seq := range bodies {
					_, again := slices.BinarySearch(seen, seq)
					acked[seq] = !again
				}
			}
		}
	})
}
