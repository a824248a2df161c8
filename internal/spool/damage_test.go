package spool

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

// oneSegment writes n records of about size bytes into one segment, as a
// crash leaves them (no Close), and returns the directory, the segment's
// name and each record's offset (index i: sequence i+1).
func oneSegment(t *testing.T, n, size int) (dir, name string, offs []int64) {
	t.Helper()
	dir = t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 64 << 20
	d := open(t, dir, cfg)
	appendN(t, d, 1, n, 7, size)
	for _, g := range scan(t, d) {
		offs = append(offs, g.Offset)
	}
	d.abandon()
	files := segFiles(t, dir)
	if len(files) != 1 || len(offs) != n {
		t.Fatalf("files %v, %d records", files, len(offs))
	}
	return dir, files[0], offs
}

// A crash cuts the last record short: Open cuts the torn tail (and says
// where), everything before it replays, and the torn record's sequence
// is never given again.
func TestTornTail(t *testing.T) {
	f := func(name string, cut func(size int64, lastOff int64) func([]byte) []byte) {
		t.Run(name, func(t *testing.T) {
			dir, seg, offs := oneSegment(t, 50, 1400)
			last := offs[len(offs)-1]
			fi, _ := os.Stat(filepath.Join(dir, seg))
			patch(t, dir, seg, cut(fi.Size(), last))
			d, seqs, dmg := reopen(t, dir)
			wantDamage(t, dmg, Damage{Kind: DamageTornTail, Segment: seg, Offset: last, FirstSeq: 50, LastSeq: 50, Repair: "cut"})
			if !slices.Equal(seqs, seqRange(1, 49)) {
				t.Fatalf("replayed %v", seqs)
			}
			if fi, _ := os.Stat(filepath.Join(dir, seg)); fi.Size() != last {
				t.Fatalf("segment is %d bytes after the cut, want %d", fi.Size(), last)
			}
			if seq, err := d.Append([]Record{rec(51, 100)}); err != nil || seq != 51 {
				t.Fatalf("next Append: %d %v (the torn sequence 50 must not be reused)", seq, err)
			}
			if st := d.Stats(); st.Records != 50 || st.Damaged != 1 || st.Lost != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	f("mid-body", func(size, last int64) func([]byte) []byte {
		return func(b []byte) []byte { return b[:last+700] }
	})
	f("mid-header", func(size, last int64) func([]byte) []byte {
		return func(b []byte) []byte { return b[:last+9] }
	})
	f("one-byte-short", func(size, last int64) func([]byte) []byte {
		return func(b []byte) []byte { return b[:size-1] }
	})
	f("zero-filled", func(size, last int64) func([]byte) []byte {
		// The size reached the disk, the data did not.
		return func(b []byte) []byte { return append(b[:last], make([]byte, 4096)...) }
	})
	f("garbage", func(size, last int64) func([]byte) []byte {
		return func(b []byte) []byte {
			b = b[:size-3]
			for i := last + 20; i < int64(len(b)); i++ {
				b[i] ^= 0x5a
			}
			return b
		}
	})
}

// A crash right after a segment was created leaves it with a header only,
// or part of one: Open removes it.
func TestCrashAfterRotation(t *testing.T) {
	for _, keep := range []int{0, 10, FileHeaderSize} {
		dir, seg, _ := oneSegment(t, 20, 500)
		empty := segmentName(21)
		b, _ := os.ReadFile(filepath.Join(dir, seg))
		hdr := appendFileHeader(nil, 21, b2time(b))
		if err := os.WriteFile(filepath.Join(dir, empty), hdr[:keep], 0o600); err != nil {
			t.Fatal(err)
		}
		d, seqs, dmg := reopen(t, dir)
		if !slices.Equal(seqs, seqRange(1, 20)) || slices.Contains(segFiles(t, dir), empty) {
			t.Fatalf("keep %d: replayed %v, files %v", keep, seqs, segFiles(t, dir))
		}
		if keep < FileHeaderSize && (len(dmg) != 1 || dmg[0].Kind != DamageTornTail || dmg[0].Repair == "") {
			t.Fatalf("keep %d: damage %v", keep, dmg)
		}
		if seq, err := d.Append([]Record{rec(1, 100)}); err != nil || seq < 21 {
			t.Fatalf("keep %d: Append %d %v", keep, seq, err)
		}
	}
}

func b2time(b []byte) time.Time {
	_, created, _ := parseFileHeader(b)
	return created
}

// A bit flipped in the middle of a segment costs exactly the record it
// is in, wherever in the record it is: reported with its segment, offset
// and sequence; every other record replays. A restart does not report it
// again (its sequence is resolved), Scan still does.
func TestBitFlip(t *testing.T) {
	f := func(name string, at int64, kind DamageKind, fix func(b []byte, off int64)) {
		t.Run(name, func(t *testing.T) {
			dir, seg, offs := oneSegment(t, 100, 1400)
			off := offs[49] // record 50
			patch(t, dir, seg, func(b []byte) []byte {
				b[off+at] ^= 0x10
				if fix != nil {
					fix(b, off)
				}
				return b
			})
			d, seqs, dmg := reopen(t, dir)
			wantDamage(t, dmg, Damage{Kind: kind, Segment: seg, Offset: off, Length: offs[50] - off, FirstSeq: 50, LastSeq: 50})
			if !slices.Equal(seqs, without(seqRange(1, 100), 50)) {
				t.Fatalf("replayed %v", seqs)
			}
			d.Close()
			_, seqs, dmg = reopen(t, dir)
			if len(dmg) != 0 || !slices.Equal(seqs, without(seqRange(1, 100), 50)) {
				t.Fatalf("after a restart: damage %v, replayed %d", dmg, len(seqs))
			}
		})
	}
	f("body", 700, DamageChecksum, nil)
	f("crc", 5, DamageChecksum, nil)
	f("seq", 12, DamageChecksum, nil)
	f("kind", 16, DamageChecksum, nil)
	f("length-high", 1, DamageLength, nil)
	f("length-low", 3, DamageLength, nil)
	// Intact by the record's CRC, not by the frame's own: both are kept.
	f("frame-payload", RecordHeaderSize+frame.HeaderSize+40, DamageFrame, func(b []byte, off int64) {
		n := binary.BigEndian.Uint32(b[off:])
		binary.BigEndian.PutUint32(b[off+4:], checksum(b[off+8:off+8+int64(n)]))
	})
}

// A length field that lies never makes the reader allocate it: out of
// range, past the end of the segment, or landing inside a later record,
// it costs that record only (resynchronised after), and memory stays
// near the window's size.
func TestLyingLength(t *testing.T) {
	f := func(name string, length func(offs []int64, size int64) uint32) {
		t.Run(name, func(t *testing.T) {
			dir, seg, offs := oneSegment(t, 100, 1400)
			fi, _ := os.Stat(filepath.Join(dir, seg))
			n := length(offs, fi.Size())
			patch(t, dir, seg, func(b []byte) []byte {
				binary.BigEndian.PutUint32(b[offs[49]:], n)
				return b
			})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d, seqs, dmg := reopen(t, dir)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("length %d: %d bytes allocated to open and replay a %d-byte segment", n, alloc, fi.Size())
			}
			wantDamage(t, dmg, Damage{Kind: DamageLength, Segment: seg, Offset: offs[49], Length: offs[50] - offs[49], FirstSeq: 50, LastSeq: 50})
			if !slices.Equal(seqs, without(seqRange(1, 100), 50)) {
				t.Fatalf("replayed %v", seqs)
			}
			_ = d
		})
	}
	f("huge", func([]int64, int64) uint32 { return 0xFFFFFFF0 })
	f("max", func([]int64, int64) uint32 { return maxLength })
	f("past-end", func(offs []int64, size int64) uint32 { return uint32(size) })
	f("zero", func([]int64, int64) uint32 { return 0 })
	f("into-a-later-record", func(offs []int64, _ int64) uint32 { return uint32(offs[60] - offs[49] + 100) })
}

// A length running past the end of a segment that is not the newest,
// with nothing intact after it, loses the rest of that segment only: the
// next segment replays, and the damage is charged with the sequences
// between.
func TestDamageToSegmentEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 60, 5, 1400)
	var first []got
	for _, g := range scan(t, d) {
		if g.Segment == segFiles(t, dir)[0] {
			first = append(first, g)
		}
	}
	d.abandon()
	seg := first[0].Segment
	k := len(first) - 3 // the third record from the end of the first segment
	patch(t, dir, seg, func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[first[k].Offset:], 1<<20)
		for i := first[k].Offset + 8; i < int64(len(b)); i++ {
			b[i] = 0xEE // nothing intact to resynchronise on
		}
		return b
	})
	_, seqs, dmg := reopen(t, dir)
	lost := seqRange(first[k].Seq, first[len(first)-1].Seq)
	wantDamage(t, dmg, Damage{Kind: DamageLength, Segment: seg, Offset: first[k].Offset, FirstSeq: lost[0], LastSeq: lost[len(lost)-1]})
	if !slices.Equal(seqs, without(seqRange(1, 60), lost...)) {
		t.Fatalf("replayed %v", seqs)
	}
}

// A segment removed by hand is a gap, reported with the sequences it
// held; a damaged header costs nothing (its records are read anyway).
func TestGapAndHeader(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 60, 5, 1400)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("files %v", files)
	}
	b1, _ := parseSegmentName(files[1])
	b2, _ := parseSegmentName(files[2])
	os.Remove(filepath.Join(dir, files[1]))
	patch(t, dir, files[2], func(b []byte) []byte { b[3] = 'X'; return b })
	_, seqs, dmg := reopen(t, dir)
	wantDamage(t, dmg,
		Damage{Kind: DamageGap, Segment: files[2], FirstSeq: b1, LastSeq: b2 - 1},
		Damage{Kind: DamageHeader, Segment: files[2], Length: FileHeaderSize})
	if !slices.Equal(seqs, without(seqRange(1, 60), seqRange(b1, b2-1)...)) {
		t.Fatalf("replayed %v", seqs)
	}
}

// An ack ledger that does not read is reported, and costs duplicates:
// every record is replayed.
func TestDamagedLedger(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, testConfig())
	appendN(t, d, 1, 20, 5, 300)
	for seq := uint64(1); seq <= 10; seq++ {
		d.Ack(seq)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	patch(t, dir, ackFile, func(b []byte) []byte { b[10] ^= 1; return b })
	d, seqs, dmg := reopen(t, dir)
	if len(dmg) != 1 || dmg[0].Kind != DamageAcks || !slices.Equal(seqs, seqRange(1, 20)) {
		t.Fatalf("damage %v, replayed %v", dmg, seqs)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, dmg = reopen(t, dir)
	if len(dmg) != 0 {
		t.Fatalf("the ledger was not rewritten: %v", dmg)
	}
}

// Repair leaves only intact records, and a Scan after it finds nothing.
func TestRepair(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10
	d := open(t, dir, cfg)
	appendN(t, d, 1, 60, 5, 1400)
	all := scan(t, d)
	d.abandon()
	files := segFiles(t, dir)
	at := func(seq uint64) got { return all[seq-1] }
	// The first record of segment 1 flipped, a record of segment 2
	// flipped, segment 3's header broken, the newest segment torn.
	r1, r2 := at(mustBase(files[1])), at(mustBase(files[2])+3)
	patch(t, dir, files[1], func(b []byte) []byte { b[r1.Offset+100] ^= 1; return b })
	patch(t, dir, files[2], func(b []byte) []byte { b[r2.Offset+100] ^= 1; return b })
	patch(t, dir, files[3], func(b []byte) []byte { b[0] = 'X'; return b })
	newest := files[len(files)-1]
	patch(t, dir, newest, func(b []byte) []byte { return b[:len(b)-10] })

	var ds damages
	cfg.OnDamage = ds.add
	d = open(t, dir, cfg)
	fixed, err := d.Repair()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	atOpen := ds.take()
	if len(atOpen) != 1 || atOpen[0].Kind != DamageTornTail || len(fixed) != 3 {
		t.Fatalf("at open %v, repaired %v", atOpen, fixed)
	}
	for _, f := range fixed {
		if f.Repair == "" {
			t.Fatalf("no repair said for %v", f)
		}
	}
	ro := cfg
	ro.ReadOnly = true
	d = open(t, dir, ro)
	defer d.Close()
	gs := scan(t, d)
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("after repair: %v", dmg)
	}
	lost := []uint64{r1.Seq, r2.Seq, all[len(all)-1].Seq}
	if !slices.Equal(seqsOf(gs), without(seqRange(1, 60), lost...)) {
		t.Fatalf("after repair: %v", seqsOf(gs))
	}
	if !slices.Contains(segFiles(t, dir), segmentName(r1.Seq+1)) {
		t.Fatalf("segment 1 not renamed after its new first record: %v", segFiles(t, dir))
	}
}
