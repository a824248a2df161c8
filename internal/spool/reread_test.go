package spool

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// rereadAll calls Reread(max, maxBytes) until it gives nothing, checking
// each batch's bounds, and returns the records, copied.
func rereadAll(t testing.TB, d *Dir, max int, maxBytes int64) []got {
	gs, _ := rereadCalls(t, d, max, maxBytes)
	return gs
}

// rereadCalls is rereadAll, and says how many calls it took.
func rereadCalls(t testing.TB, d *Dir, max int, maxBytes int64) ([]got, int) {
	t.Helper()
	var out []got
	for calls := 1; ; calls++ {
		var batch []got
		var size int64
		n, err := d.Reread(max, maxBytes, func(r Record) {
			batch = append(batch, got{r.Seq, r.Kind, bytes.Clone(r.Body), r.Segment, r.Offset, false})
			size += int64(len(r.Body))
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(batch) {
			t.Fatalf("Reread returned %d, gave %d", n, len(batch))
		}
		if n > max || (n > 1 && size > maxBytes) {
			t.Fatalf("Reread(%d, %d) gave %d records of %d bytes", max, maxBytes, n, size)
		}
		if n == 0 {
			if e := d.Evicted(); e != 0 {
				t.Fatalf("Reread gave nothing, %d evicted", e)
			}
			return out, calls
		}
		out = append(out, batch...)
	}
}

// checkBodies checks that each record is dataFrame(seq, size).
func checkBodies(t testing.TB, gs []got, size int) {
	t.Helper()
	for _, g := range gs {
		if g.Kind != KindData || !bytes.Equal(g.Body, dataFrame(int(g.Seq), size)) || g.Segment == "" {
			t.Fatalf("record %d: kind %v, segment %q, body not as appended", g.Seq, g.Kind, g.Segment)
		}
	}
}

// After a crash, every record not acknowledged is evicted: Reread in
// small batches hands each back once, in order, reading each segment
// about once; records appended since are held.
func TestRereadAfterCrash(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 600, 9, 700)
	rng := rand.New(rand.NewPCG(5, 6))
	var want []uint64
	for q := uint64(1); q <= 600; q++ {
		if q <= 40 || rng.IntN(3) == 0 {
			if err := d.Ack(q); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want = append(want, q)
	}
	if err := d.housekeep(false); err != nil {
		t.Fatal(err)
	}
	d.abandon()

	var ds damages
	cfg.OnDamage = ds.add
	d = open(t, dir, cfg)
	defer d.Close()
	st := d.Stats()
	if d.Evicted() != uint64(len(want)) || st.Evicted != uint64(len(want)) || st.Records != uint64(len(want)) {
		t.Fatalf("after Open: Evicted %d, stats %+v; want %d", d.Evicted(), st, len(want))
	}
	gs, calls := rereadCalls(t, d, 7, 3000)
	if !slices.Equal(seqsOf(gs), want) {
		t.Fatalf("reread %v\nwant %v", seqsOf(gs), want)
	}
	checkBodies(t, gs, 700)
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage reported: %v", dmg)
	}
	// Each segment is read once, and each record checked once, but for
	// the one a call stops at, which the next checks again.
	if r := d.rrRead; r.read > st.Bytes || r.checked > 600+int64(calls) {
		t.Fatalf("Reread read %d bytes of segments holding %d, and checked %d records of 600 in %d calls: it re-reads",
			r.read, st.Bytes, r.checked, calls)
	}
	if st := d.Stats(); st.Evicted != 0 || st.Records != uint64(len(want)) {
		t.Fatalf("after Reread: %+v", st)
	}
	appendN(t, d, 601, 5, 5, 700)
	if n, err := d.Reread(100, 1<<20, func(Record) { t.Error("a held record was read back") }); n != 0 || err != nil {
		t.Fatalf("Reread after Append: %d %v", n, err)
	}
}

// Evict, then Reread: exactly the evicted records come back, not those
// acknowledged in between, nor those never appended or resolved.
func TestEvictReread(t *testing.T) {
	d := open(t, t.TempDir(), testConfig())
	defer d.Close()
	appendN(t, d, 1, 100, 10, 300)
	if d.Evicted() != 0 {
		t.Fatalf("Evicted %d after Append: appended records are held", d.Evicted())
	}
	want := append([]uint64{3}, seqRange(10, 20)...)
	want = append(want, 50, 99, 100)
	for _, q := range want {
		d.Evict(q)
	}
	d.Evict(3)    // twice
	d.Evict(0)    // never a sequence
	d.Evict(101)  // not appended
	d.Evict(1000) // not appended
	if err := d.Ack(60); err != nil {
		t.Fatal(err)
	}
	d.Evict(60) // resolved
	if d.Evicted() != uint64(len(want)) {
		t.Fatalf("Evicted %d, want %d", d.Evicted(), len(want))
	}
	if err := d.Ack(15); err != nil { // between Evict and Reread
		t.Fatal(err)
	}
	want = without(want, 15)
	if d.Evicted() != uint64(len(want)) || d.Stats().Evicted != uint64(len(want)) {
		t.Fatalf("Evicted %d after an Ack, want %d", d.Evicted(), len(want))
	}
	gs := rereadAll(t, d, 4, 1<<20)
	if !slices.Equal(seqsOf(gs), want) {
		t.Fatalf("reread %v\nwant %v", seqsOf(gs), want)
	}
	checkBodies(t, gs, 300)

	// At least one, whatever maxBytes says; lowest first, wherever the
	// cursor is.
	for _, q := range []uint64{90, 91, 30} {
		d.Evict(q)
	}
	var one []uint64
	if n, err := d.Reread(10, 1, func(r Record) { one = append(one, r.Seq) }); n != 1 || err != nil || !slices.Equal(one, []uint64{30}) {
		t.Fatalf("Reread(10, 1): %d %v %v", n, err, one)
	}
	if gs := rereadAll(t, d, 10, 1<<20); !slices.Equal(seqsOf(gs), []uint64{90, 91}) {
		t.Fatalf("then %v", seqsOf(gs))
	}

	// Resolved while Reread runs: skipped.
	d.Evict(70)
	d.Evict(71)
	d.Evict(72)
	var seqs []uint64
	n, err := d.Reread(10, 1<<20, func(r Record) {
		seqs = append(seqs, r.Seq)
		if r.Seq == 70 {
			if err := d.Ack(71); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil || n != 2 || !slices.Equal(seqs, []uint64{70, 72}) {
		t.Fatalf("Reread with an Ack in fn: %d %v %v", n, err, seqs)
	}
	if n, err := d.Reread(0, 1<<20, nil); n != 0 || err != nil {
		t.Fatalf("Reread(0): %d %v", n, err)
	}
}

// Many small segments: a cursor carries Reread from batch to batch, each
// segment read once; records held between evicted ones are skipped; a
// lower sequence evicted behind the cursor comes first.
func TestRereadCursorAcrossSegments(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 4 << 10
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	appendN(t, d, 1, 2000, 13, 400)
	st := d.Stats()
	if st.Segments < 150 {
		t.Fatalf("%d segments", st.Segments)
	}
	for q := uint64(1); q <= 2000; q++ {
		d.Evict(q)
	}
	gs, calls := rereadCalls(t, d, 5, 1500)
	if !slices.Equal(seqsOf(gs), seqRange(1, 2000)) {
		t.Fatalf("reread %d records: %v…", len(gs), seqsOf(gs)[:min(len(gs), 20)])
	}
	checkBodies(t, gs, 400)
	if r := d.rrRead; r.read > st.Bytes || r.checked > 2000+int64(calls) {
		t.Fatalf("Reread read %d bytes of segments holding %d, and checked %d records of 2000 in %d calls: it re-reads",
			r.read, st.Bytes, r.checked, calls)
	}

	var evens []uint64
	for q := uint64(2); q <= 2000; q += 2 {
		d.Evict(q)
		evens = append(evens, q)
	}
	if gs := rereadAll(t, d, 3, 1<<20); !slices.Equal(seqsOf(gs), evens) {
		t.Fatalf("reread %d of the %d even records", len(gs), len(evens))
	}

	for q := uint64(500); q <= 600; q++ {
		d.Evict(q)
	}
	var first []uint64
	if _, err := d.Reread(20, 1<<20, func(r Record) { first = append(first, r.Seq) }); err != nil {
		t.Fatal(err)
	}
	for q := uint64(100); q <= 110; q++ {
		d.Evict(q) // behind the cursor
	}
	want := append(seqRange(100, 110), seqRange(520, 600)...)
	if gs := rereadAll(t, d, 7, 1<<20); !slices.Equal(first, seqRange(500, 519)) || !slices.Equal(seqsOf(gs), want) {
		t.Fatalf("reread %v, then %v", first, seqsOf(gs))
	}
}

// A record damaged in the middle of what Reread reads back is reported
// once, resolved, and skipped; the others all come back; after a
// restart it is neither read back nor reported again.
func TestRereadDamage(t *testing.T) {
	dir, seg, offs := oneSegment(t, 50, 1400)
	patch(t, dir, seg, func(b []byte) []byte {
		for i := offs[19] + RecordHeaderSize + 100; i < offs[19]+RecordHeaderSize+110; i++ {
			b[i] ^= 0xff
		}
		return b
	})
	var ds damages
	cfg := testConfig()
	cfg.OnDamage = ds.add
	d := open(t, dir, cfg)
	if d.Evicted() != 50 {
		t.Fatalf("Evicted %d", d.Evicted())
	}
	gs := rereadAll(t, d, 3, 1<<20)
	if !slices.Equal(seqsOf(gs), without(seqRange(1, 50), 20)) {
		t.Fatalf("reread %v", seqsOf(gs))
	}
	checkBodies(t, gs, 1400)
	wantDamage(t, ds.take(), Damage{Kind: DamageChecksum, Segment: seg, Offset: offs[19], Length: offs[20] - offs[19], FirstSeq: 20, LastSeq: 20})
	if st := d.Stats(); st.Damaged != 1 || st.Lost != 1 || st.Records != 49 || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
	for q := uint64(1); q <= 50; q++ {
		d.Evict(q) // 20 is resolved: not evicted
	}
	if gs := rereadAll(t, d, 50, 1<<20); len(gs) != 49 || len(ds.take()) != 0 {
		t.Fatalf("second Reread: %d records, damage reported again", len(gs))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = open(t, dir, cfg)
	defer d.Close()
	if d.Evicted() != 49 {
		t.Fatalf("Evicted %d after a restart", d.Evicted())
	}
	if gs := rereadAll(t, d, 10, 1<<20); len(gs) != 49 {
		t.Fatalf("reread %d after a restart", len(gs))
	}
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage reported again after a restart: %v", dmg)
	}
}

// Appends, Evicts, Acks and Reread at once (run with -race): every
// record evicted comes back once, in order, unless acknowledged first.
func TestRereadConcurrent(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 8 << 10
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	const total = 3000
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		acked  = map[uint64]bool{}
		done   = make(chan struct{})
		failed = make(chan error, 1)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		rng := rand.New(rand.NewPCG(7, 8))
		for n := 1; n <= total; n += 10 {
			var recs []Record
			for j := n; j < n+10; j++ {
				recs = append(recs, rec(j, 300))
			}
			last, err := d.Append(recs)
			if err != nil {
				failed <- err
				return
			}
			for q := last - 9; q <= last; q++ {
				if rng.IntN(10) == 0 {
					mu.Lock()
					acked[q] = true
					mu.Unlock()
					if err := d.Ack(q); err != nil {
						failed <- err
						return
					}
				}
				d.Evict(q)
			}
		}
	}()
	var got []uint64
	for finished := false; ; {
		n, err := d.Reread(17, 8<<10, func(r Record) {
			got = append(got, r.Seq)
			if !bytes.Equal(r.Body, dataFrame(int(r.Seq), 300)) {
				t.Errorf("record %d: body not as appended", r.Seq)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && finished {
			break
		}
		select {
		case <-done:
			finished = true
		default:
		}
	}
	wg.Wait()
	select {
	case err := <-failed:
		t.Fatal(err)
	default:
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("reread out of order or twice")
	}
	for q := uint64(1); q <= total; q++ {
		if _, ok := slices.BinarySearch(got, q); !ok && !acked[q] {
			t.Fatalf("record %d neither reread nor acknowledged", q)
		}
	}
	if d.Evicted() != 0 {
		t.Fatalf("Evicted %d", d.Evicted())
	}
}

// Reread after Close, and on a read-only Dir, which evicts nothing.
func TestRereadRefusals(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, testConfig())
	appendN(t, d, 1, 10, 10, 100)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reread(1, 1, func(Record) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reread after Close: %v", err)
	}
	cfg := testConfig()
	cfg.ReadOnly = true
	ro := open(t, dir, cfg)
	defer ro.Close()
	ro.Evict(1)
	if ro.Evicted() != 0 {
		t.Fatalf("read-only Evicted %d", ro.Evicted())
	}
	if _, err := ro.Reread(1, 1, func(Record) {}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only Reread: %v", err)
	}
}
