package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testKey returns key id's line: a fixed key per id.
func testKey(id uint16) string {
	return fmt.Sprintf("%d %s", id, strings.Repeat(fmt.Sprintf("%02x", byte(id*37+5)), KeySize))
}

// keyring parses lines of test keys, the first the current one.
func keyring(t testing.TB, ids ...uint16) *Keyring {
	t.Helper()
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(testKey(id) + "\n")
	}
	k, err := ParseKeyring([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyedConfig(k *Keyring, ds *damages) Config {
	cfg := testConfig()
	cfg.Keys = k
	if ds != nil {
		cfg.OnDamage = ds.add
	}
	return cfg
}

func TestKeyringParse(t *testing.T) {
	k, err := ParseKeyring([]byte("# rotated 2026-12-06\n\n" + testKey(7) + "\n  # old\n" + testKey(3) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k.Current() != 7 || !slices.Equal(k.IDs(), []uint16{7, 3}) || !k.Has(3) || k.Has(4) {
		t.Fatalf("keyring: current %d, ids %v", k.Current(), k.IDs())
	}
	hex64 := strings.Repeat("ab", KeySize)
	for _, c := range []struct{ text, want string }{
		{"", "no key in it"},
		{"# only a comment\n", "no key in it"},
		{"1\n", "line 1: want \"ID HEX\""},
		{"# c\n1 " + hex64 + " extra\n", "line 2: want \"ID HEX\""},
		{"0 " + hex64, "line 1: key id \"0\""},
		{"65536 " + hex64, "line 1: key id \"65536\""},
		{"x " + hex64, "line 1: key id \"x\""},
		{"1 " + hex64 + "\n\n1 " + hex64, "line 3: key id 1 given twice"},
		{"2 " + hex64[:62], "line 1: key 2: want 64 hex digits (32 bytes), found 62"},
		{"2 " + hex64[:62] + "zz", "line 1: key 2: not hex"},
	} {
		_, err := ParseKeyring([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
	line := KeyLine(42)
	k, err = ParseKeyring([]byte(line))
	if err != nil || k.Current() != 42 || line == KeyLine(42) {
		t.Fatalf("KeyLine %q: %v", line, err)
	}
}

func TestLoadKeyringPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.keys")
	if err := os.WriteFile(path, []byte(testKey(1)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), "permissions 0640 are too open") || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key file the group may read: %v", err)
	}
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("a key file others may read: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKeyring(path); err != nil || k.Current() != 1 {
		t.Fatalf("a key file of mode 0600: %v", err)
	}
	if err := os.WriteFile(path, []byte("1 abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), path+": line 1: key 1") {
		t.Fatalf("a bad key file: %v", err)
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("a missing key file loaded")
	}
}

// Sealed records are not in clear on disk, and every reader gives them
// back opened: Scan, Replay, and Reread after a restart.
func TestSealedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var ds damages
	cfg := keyedConfig(keyring(t, 1), &ds)
	d := open(t, dir, cfg)
	appendN(t, d, 1, 40, 7, 1400)
	dl := AppendDeadLetter(nil, &DeadLetter{Reason: ReasonRejected, Analyzer: []byte("a1"), Error: []byte("secret reason"), Frame: dataFrame(41, 300)})
	if _, err := d.Append([]Record{{Kind: KindDeadLetter, Body: dl, Flags: FlagSealed}}); err != nil {
		t.Fatal(err)
	}
	gs := scan(t, d)
	if len(gs) != 41 {
		t.Fatalf("scan: %d records", len(gs))
	}
	checkBodies(t, gs[:40], 1400)
	if !bytes.Equal(gs[40].Body, dl) {
		t.Fatal("dead letter not as appended")
	}
	var keys []uint16
	d.Scan(func(r Record) error {
		if r.Flags != FlagSealed {
			t.Fatalf("record %d flags %#x", r.Seq, r.Flags)
		}
		keys = append(keys, r.Key)
		return nil
	})
	if slices.ContainsFunc(keys, func(k uint16) bool { return k != 1 }) {
		t.Fatalf("keys %v", keys)
	}
	if err := d.Ack(1); err != nil {
		t.Fatal(err)
	}
	if rs := replay(t, d); len(rs) != 40 || rs[0].Seq != 2 {
		t.Fatalf("replay: %v", seqsOf(rs))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range segFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, clear := range [][]byte{[]byte("message 1 "), []byte("message 40 "), []byte("secret reason"), []byte("agent-3"), []byte("abcdefghij")} {
			if bytes.Contains(b, clear) {
				t.Fatalf("%s holds %q in clear", name, clear)
			}
		}
	}
	d = open(t, dir, cfg)
	defer d.Close()
	gs = rereadAll(t, d, 6, 1<<20)
	if !slices.Equal(seqsOf(gs), seqRange(2, 41)) {
		t.Fatalf("reread after a restart: %v", seqsOf(gs))
	}
	checkBodies(t, gs[:39], 1400)
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage: %v", dmg)
	}
}

// Restarted without the key, sealed records are reported as wanting it
// (one report per run of records), not lost and not read back again in
// this run; restarted with it, they all come back.
func TestSealedRestartWithoutKey(t *testing.T) {
	dir := t.TempDir()
	var ds damages
	d := open(t, dir, keyedConfig(keyring(t, 5), &ds))
	appendN(t, d, 1, 30, 10, 1400)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segFiles(t, dir)[0]

	for _, k := range []*Keyring{nil, keyring(t, 6)} {
		d = open(t, dir, keyedConfig(k, &ds))
		if gs := rereadAll(t, d, 7, 1<<20); len(gs) != 0 {
			t.Fatalf("keys %v: %d records read back without their key", k.IDs(), len(gs))
		}
		dmg := ds.take()
		if len(dmg) != 1 || dmg[0].Kind != DamageKey || dmg[0].Key != 5 || dmg[0].Segment != seg || dmg[0].FirstSeq != 1 || dmg[0].LastSeq != 30 ||
			!strings.Contains(dmg[0].String(), "key 5 not in the key file") || !strings.Contains(dmg[0].String(), "30 records kept until their key is given (1-30)") {
			t.Fatalf("damage without the key: %v", dmg)
		}
		// Held for this run: no more to read back, nothing lost.
		if n, err := d.Reread(10, 1<<20, func(Record) { t.Fatal("read back") }); n != 0 || err != nil || len(ds.take()) != 0 {
			t.Fatalf("second Reread: %d, %v", n, err)
		}
		if st := d.Stats(); st.Lost != 0 || st.NeedKey != 30 || st.Records != 30 || st.Evicted != 0 {
			t.Fatalf("stats %+v", st)
		}
		// Replay reports them too, and keeps them.
		if rs := replay(t, d); len(rs) != 0 {
			t.Fatalf("replayed %d", len(rs))
		}
		if dmg := ds.take(); len(dmg) != 1 || dmg[0].Kind != DamageKey {
			t.Fatalf("replay: %v", dmg)
		}
		// New records are written (and read) as the keyring says.
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}

	d = open(t, dir, keyedConfig(keyring(t, 6, 5), &ds))
	defer d.Close()
	gs := rereadAll(t, d, 7, 1<<20)
	if !slices.Equal(seqsOf(gs), seqRange(1, 30)) {
		t.Fatalf("with the key: %v", seqsOf(gs))
	}
	checkBodies(t, gs, 1400)
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage with the key: %v", dmg)
	}
}

// A sealed record altered with its CRC made to match, relabelled, or
// moved fails authentication: damage, resolved; the others are fine.
func TestSealedTampered(t *testing.T) {
	dir := t.TempDir()
	k := keyring(t, 1)
	d := open(t, dir, keyedConfig(k, nil))
	appendN(t, d, 1, 20, 4, 600)
	var offs []int64
	for _, g := range scan(t, d) {
		offs = append(offs, g.Offset)
	}
	d.abandon()
	seg := segFiles(t, dir)[0]
	recAt := func(b []byte, i int) []byte {
		return b[offs[i] : offs[i]+int64(recordSize(sealOverhead+len(dataFrame(i+1, 600))))]
	}
	fixCRC := func(r []byte) { binary.BigEndian.PutUint32(r[4:8], checksum(r[8:])) }
	patch(t, dir, seg, func(b []byte) []byte {
		r := recAt(b, 4) // record 5: a ciphertext byte
		r[RecordHeaderSize+sealOverhead+10] ^= 1
		fixCRC(r)
		r = recAt(b, 9) // record 10: relabelled as syslog
		r[16] = byte(KindSyslog)
		fixCRC(r)
		r = recAt(b, 14) // record 15: record 16's body
		copy(r[RecordHeaderSize:], recAt(b, 15)[RecordHeaderSize:])
		fixCRC(r)
		return b
	})
	var ds damages
	d = open(t, dir, keyedConfig(k, &ds))
	defer d.Close()
	gs := rereadAll(t, d, 100, 1<<20)
	if !slices.Equal(seqsOf(gs), without(seqRange(1, 20), 5, 10, 15)) {
		t.Fatalf("reread %v", seqsOf(gs))
	}
	checkBodies(t, gs, 600)
	dmg := ds.take()
	wantDamage(t, dmg,
		Damage{Kind: DamageSeal, Segment: seg, Offset: offs[4], FirstSeq: 5, LastSeq: 5},
		Damage{Kind: DamageSeal, Segment: seg, Offset: offs[9], FirstSeq: 10, LastSeq: 10},
		Damage{Kind: DamageSeal, Segment: seg, Offset: offs[14], FirstSeq: 15, LastSeq: 15})
	if !strings.Contains(dmg[0].String(), "fails authentication") || !strings.Contains(dmg[0].String(), "record 5 lost") {
		t.Fatalf("damage reads %q", dmg[0])
	}
	if st := d.Stats(); st.Lost != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// Rotation: records sealed with key 1, then key 2 made current with 1
// kept: all readable, each with its key; key 1 removed: its records want
// it (kept), key 2's read. Records written before any key stay readable.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	var ds damages
	d := open(t, dir, keyedConfig(nil, &ds))
	appendN(t, d, 1, 5, 5, 500) // before encryption
	d.Close()
	d = open(t, dir, keyedConfig(keyring(t, 1), &ds))
	rereadAll(t, d, 100, 1<<20) // held again
	appendN(t, d, 6, 10, 5, 500)
	d.Close()
	d = open(t, dir, keyedConfig(keyring(t, 2, 1), &ds))
	rereadAll(t, d, 100, 1<<20)
	appendN(t, d, 16, 10, 5, 500)
	keysOf := func(d *Dir) map[uint16][]uint64 {
		m := map[uint16][]uint64{}
		if err := d.Replay(func(r Record) error {
			m[r.Key] = append(m[r.Key], r.Seq)
			if !bytes.Equal(r.Body, dataFrame(int(r.Seq), 500)) {
				t.Fatalf("record %d not as appended", r.Seq)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := keysOf(d)
	if !slices.Equal(m[0], seqRange(1, 5)) || !slices.Equal(m[1], seqRange(6, 15)) || !slices.Equal(m[2], seqRange(16, 25)) {
		t.Fatalf("records by key: %v", m)
	}
	// Key 1's records delivered: nothing needs key 1 any more.
	for q := uint64(6); q <= 15; q++ {
		d.Ack(q)
	}
	if m := keysOf(d); len(m[1]) != 0 {
		t.Fatalf("records by key after the acks: %v", m)
	}
	d.Close()
	if dmg := ds.take(); len(dmg) != 0 {
		t.Fatalf("damage: %v", dmg)
	}

	// Key 1 removed before its records were delivered.
	dir2 := t.TempDir()
	d = open(t, dir2, keyedConfig(keyring(t, 1), &ds))
	appendN(t, d, 1, 4, 4, 500)
	d.Close()
	d = open(t, dir2, keyedConfig(keyring(t, 2, 1), &ds))
	rereadAll(t, d, 100, 1<<20)
	appendN(t, d, 5, 4, 4, 500)
	d.Close()
	d = open(t, dir2, keyedConfig(keyring(t, 2), &ds))
	defer d.Close()
	if gs := rereadAll(t, d, 100, 1<<20); !slices.Equal(seqsOf(gs), seqRange(5, 8)) {
		t.Fatalf("with key 2 only: %v", seqsOf(gs))
	}
	if dmg := ds.take(); len(dmg) != 1 || dmg[0].Kind != DamageKey || dmg[0].Key != 1 || dmg[0].FirstSeq != 1 || dmg[0].LastSeq != 4 {
		t.Fatalf("damage with key 2 only: %v", dmg)
	}
	if st := d.Stats(); st.Lost != 0 || st.Records != 8 {
		t.Fatalf("stats %+v", st)
	}
}

// Repair keeps sealed records whose key it lacks, and drops those whose
// seal fails.
func TestRepairSealed(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, keyedConfig(keyring(t, 1), nil))
	appendN(t, d, 1, 10, 5, 500)
	d.Close()
	seg := segFiles(t, dir)[0]
	cfg := testConfig()
	d = open(t, dir, cfg)
	found, err := d.Repair()
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Kind != DamageKey || found[0].Repair != "kept" {
		t.Fatalf("repair without the key: %v", found)
	}
	d.Close()
	if segFiles(t, dir)[0] != seg {
		t.Fatal("segment rewritten")
	}
	d = open(t, dir, keyedConfig(keyring(t, 1), nil))
	defer d.Close()
	if gs := rereadAll(t, d, 100, 1<<20); len(gs) != 10 {
		t.Fatalf("after repair: %d records", len(gs))
	}
}

// BenchmarkAppendSealed is BenchmarkAppend's default policy with every
// record sealed (AES-256-GCM): the difference is encryption's cost.
func BenchmarkAppendSealed(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("sync=%s/batch=%d", SyncInterval(DefaultSyncInterval), batch), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.AckInterval = DefaultSyncInterval
			cfg.Keys = keyring(b, 1)
			d := open(b, b.TempDir(), cfg)
			recs := make([]Record, batch)
			for i := range recs {
				recs[i] = rec(i+1, 1400)
			}
			b.SetBytes(recordSize(len(recs[0].Body)) * int64(batch))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				last, err := d.Append(recs)
				if err != nil {
					b.Fatal(err)
				}
				for seq := last - uint64(batch) + 1; seq <= last; seq++ {
					d.Ack(seq)
				}
			}
			b.StopTimer()
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := d.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSeal is the sealing of one 1.4 KB packet alone, and its
// opening.
func BenchmarkSeal(b *testing.B) {
	k := keyring(b, 1)
	body := dataFrame(1, 1400)
	var buf, plain []byte
	ad := []byte{0, 0, 0, 0, 0, 0, 0, 1, byte(KindData)}
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			buf = k.appendSealed(buf[:0], ad, body)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var res openResult
			plain, res, _ = k.open(plain, ad, buf)
			if res != opened {
				b.Fatal("does not open")
			}
		}
	})
}
