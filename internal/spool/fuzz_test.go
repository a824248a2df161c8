package spool

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// FuzzOpenSegment feeds arbitrary bytes as a segment file. Whatever they
// are: no panic; memory bounded by the file, never by what its length
// fields say; every record given back intact and in order; damage
// stretches inside the file; opening it for writing (which cuts a torn
// tail) and repairing it keep every intact record, and leave nothing for
// a Scan to report but records kept for want of their key (sealed with
// a key id the keyring lacks).
func FuzzOpenSegment(f *testing.F) {
	keys, err := ParseKeyring([]byte(goldenKey))
	if err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(filepath.Join("testdata", "golden", "00000000000000000001.seg"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(seg[:40])
	f.Add(seg[:FileHeaderSize])
	flip := bytes.Clone(seg)
	flip[200] ^= 4
	f.Add(flip)
	lie := bytes.Clone(seg)
	binary.BigEndian.PutUint32(lie[FileHeaderSize:], 0xFFFFFFF0)
	f.Add(lie)
	f.Add(append(bytes.Clone(seg), make([]byte, 100)...))
	sealed, err := os.ReadFile(filepath.Join("testdata", "golden-sealed", "00000000000000000001.seg"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	flip = bytes.Clone(sealed)
	flip[200] ^= 4
	f.Add(flip)
	other := bytes.Clone(sealed)
	other[FileHeaderSize+RecordHeaderSize+1] = 9 // key 9: not in the keyring
	binary.BigEndian.PutUint32(other[FileHeaderSize+4:], checksum(other[FileHeaderSize+8:FileHeaderSize+8+int(binary.BigEndian.Uint32(other[FileHeaderSize:]))]))
	f.Add(other)
	f.Add([]byte("LDSPOOL1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		dir := t.TempDir()
		name := segmentName(1)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		ro := testConfig()
		ro.ReadOnly = true
		ro.Keys = keys
		var ds damages
		ro.OnDamage = ds.add
		d, err := Open(dir, ro)
		if err != nil {
			return // a header of another version: refused, not judged
		}
		first := fuzzScan(t, d, int64(len(b)), &ds)
		d.Close()
		runtime.ReadMemStats(&ms1)
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 8*uint64(len(b))+2<<20 {
			t.Fatalf("%d bytes allocated for a %d-byte segment", alloc, len(b))
		}

		w := testConfig()
		w.Sync = SyncNever
		w.Keys = keys
		d, err = Open(dir, w)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Repair(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d, err = Open(dir, ro)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		after := fuzzScan(t, d, 1<<30, nil)
		if dmg := slices.DeleteFunc(ds.take(), func(d Damage) bool { return d.Kind == DamageKey }); len(dmg) != 0 {
			t.Fatalf("after repair: %v", dmg)
		}
		if len(after) != len(first) {
			t.Fatalf("intact records %v before, %v after opening for writing and repair", first, after)
		}
		for i := range first {
			if first[i] != after[i] {
				t.Fatalf("intact records %v before, %v after opening for writing and repair", first, after)
			}
		}
	})
}

// fuzzScan scans d, checking what it gives back, and returns the
// sequences of the intact records.
func fuzzScan(t *testing.T, d *Dir, size int64, ds *damages) []uint64 {
	var seqs []uint64
	err := d.Scan(func(r Record) error {
		if len(seqs) > 0 && r.Seq <= seqs[len(seqs)-1] {
			t.Fatalf("record %d after %d", r.Seq, seqs[len(seqs)-1])
		}
		if r.Offset < FileHeaderSize || r.Offset+recordSize(len(r.Body)) > size {
			t.Fatalf("record %d at %d, %d bytes, outside the file", r.Seq, r.Offset, len(r.Body))
		}
		if err := checkBody(r.Kind, r.Body, true); err != nil {
			t.Fatalf("record %d given back with %v", r.Seq, err)
		}
		seqs = append(seqs, r.Seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ds == nil {
		return seqs
	}
	for _, dmg := range ds.take() {
		if dmg.Offset < 0 || dmg.Length < 0 || dmg.Offset+dmg.Length > size {
			t.Fatalf("damage outside the file: %v", dmg)
		}
	}
	return seqs
}
