package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// testDictID is the id of the committed test dictionary
// (testdata/golden/testdict.zdict: 4 KiB trained by internal/zdict from
// 2000 one-message realisticPackets).
const testDictID = 0x4C440001

var testDictOnce = sync.OnceValues(func() (*Dict, error) {
	return LoadDict(filepath.Join(goldenDir, "testdict.zdict"))
})

func testDict(tb testing.TB) *Dict {
	tb.Helper()
	d, err := testDictOnce()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestLoadDict(t *testing.T) {
	d := testDict(t)
	if d.ID() != testDictID || d.ContentSize() == 0 || d.ContentSize() > len(d.Bytes()) {
		t.Fatalf("id %d content %d of %d bytes", d.ID(), d.ContentSize(), len(d.Bytes()))
	}
	// Not a dictionary: refused at load time, naming the file.
	p := filepath.Join(t.TempDir(), "bad.zdict")
	os.WriteFile(p, []byte("not a zstd dictionary at all"), 0o644)
	if _, err := LoadDict(p); err == nil || !strings.Contains(err.Error(), "bad.zdict") || !strings.Contains(err.Error(), "not a zstd dictionary") {
		t.Fatalf("garbage: %v", err)
	}
	// Id 0 cannot be named on the wire.
	zero := bytes.Clone(d.Bytes())
	binary.LittleEndian.PutUint32(zero[4:8], 0)
	if _, err := ParseDict(zero); err == nil {
		t.Fatal("a dictionary with id 0 was accepted")
	}
	// Truncated tables.
	if _, err := ParseDict(d.Bytes()[:20]); err == nil {
		t.Fatal("a truncated dictionary was accepted")
	}
	if _, err := LoadDict(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestDictsSet(t *testing.T) {
	d := testDict(t)
	other := bytes.Clone(d.Bytes())
	binary.LittleEndian.PutUint32(other[4:8], 7)
	d7, err := ParseDict(other)
	if err != nil {
		t.Fatal(err)
	}
	ds := Dicts{d, d7}
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	if ds.Find(7) != d7 || ds.Find(testDictID) != d || ds.Find(8) != nil || Dicts(nil).Find(7) != nil {
		t.Fatal("Find")
	}
	if ids := ds.IDs(); len(ids) != 2 || ids[0] != testDictID || ids[1] != 7 {
		t.Fatalf("IDs %v", ids)
	}
	if err := (Dicts{d, d}).Validate(); err == nil || !strings.Contains(err.Error(), "two dictionaries with id") {
		t.Fatalf("duplicate id: %v", err)
	}
	if err := (Dicts{nil}).Validate(); err == nil {
		t.Fatal("nil dictionary accepted")
	}
	many := make(Dicts, MaxDicts+1)
	for i := range many {
		many[i] = d
	}
	if err := many.Validate(); err == nil {
		t.Fatal("17 dictionaries accepted")
	}
}

// A payload compressed with a dictionary names it in its zstd frame
// header, decodes with it, is refused without it, and is much smaller.
func TestDictRoundTrip(t *testing.T) {
	d := testDict(t)
	p := realisticPacket(1, 424242)
	plain := (&Encoder{}).AppendData(nil, 1, p, true)
	enc := Encoder{Dict: d}
	f := enc.AppendData(nil, 1, p, true)
	if !Header(f).Compressed() || DictID(f) != testDictID || DictID(plain) != 0 {
		t.Fatalf("compressed %v, dict id %d (plain: %d)", Header(f).Compressed(), DictID(f), DictID(plain))
	}
	if len(f) >= len(plain) {
		t.Fatalf("with the dictionary %d bytes, without %d: no gain", len(f), len(plain))
	}
	t.Logf("1 message: raw %d, zstd %d, zstd with dictionary %d", Header(f).RawLen(), Header(plain).PayloadLen(), Header(f).PayloadLen())

	dec := NewDecoder(DefaultLimits())
	var got Packet
	if err := dec.Decode(Header(f), f[HeaderSize:], &got); !errors.Is(err, ErrUnknownDictionary) || CodeOf(err) != CodeUnknownDict {
		t.Fatalf("without the dictionary: %v", err)
	}
	dec.Dicts = Dicts{d}
	if err := decodeFrame(dec, f, &got); err != nil {
		t.Fatal(err)
	}
	if err := equalPacket(p, &got); err != nil {
		t.Fatal(err)
	}
	// Traced: the id is read after the trace context.
	traced := AppendWithTrace(nil, f, &goldenTrace)
	if DictID(traced) != testDictID {
		t.Fatalf("traced: dict id %d", DictID(traced))
	}
	if err := decodeFrame(dec, traced, &got); err != nil {
		t.Fatal(err)
	}
	// The decoder that holds it still decodes payloads without one.
	if err := decodeFrame(dec, plain, &got); err != nil {
		t.Fatal(err)
	}
	// Every level compresses with it.
	for level := zstd.SpeedFastest; level <= zstd.SpeedBestCompression; level++ {
		e := Encoder{Dict: d, Level: level}
		f := e.AppendData(nil, 1, p, true)
		if DictID(f) != testDictID {
			t.Fatalf("level %v: dict id %d", level, DictID(f))
		}
		if err := decodeFrame(dec, f, &got); err != nil {
			t.Fatalf("level %v: %v", level, err)
		}
	}
}

// DictID reads the Dictionary_ID of 1, 2 and 4 bytes, after a window
// descriptor or not, and gives 0 for anything else.
func TestDictIDHeader(t *testing.T) {
	frameOf := func(f Flags, payload []byte) []byte {
		return append(AppendHeader(nil, TypeData, f, 1, 1, uint32(len(payload)), 100, Checksum(payload)), payload...)
	}
	zh := func(fhd byte, rest ...byte) []byte { return append([]byte{0x28, 0xb5, 0x2f, 0xfd, fhd}, rest...) }
	cases := []struct {
		name string
		fb   []byte
		want uint32
	}{
		{"1 byte, single segment", frameOf(FlagZstd, zh(0x21, 0x2a, 0, 0)), 0x2a},
		{"1 byte, window descriptor", frameOf(FlagZstd, zh(0x01, 0x58, 0x2a)), 0x2a},
		{"2 bytes", frameOf(FlagZstd, zh(0x22, 0x34, 0x12)), 0x1234},
		{"4 bytes", frameOf(FlagZstd, zh(0x23, 0x01, 0x00, 0x44, 0x4c)), testDictID},
		{"4 bytes, window descriptor", frameOf(FlagZstd, zh(0x03, 0x58, 0x01, 0x00, 0x44, 0x4c)), testDictID},
		{"none", frameOf(FlagZstd, zh(0x20, 0, 0, 0, 0)), 0},
		{"4 bytes, truncated", frameOf(FlagZstd, zh(0x23, 0x01, 0x00)), 0},
		{"not compressed", frameOf(0, zh(0x23, 0x01, 0x00, 0x44, 0x4c)), 0},
		{"not zstd", frameOf(FlagZstd, []byte("hello, world")), 0},
		{"short payload", frameOf(FlagZstd, []byte{0x28, 0xb5}), 0},
		{"traced", frameOf(FlagZstd|FlagTrace, append(goldenTrace[:], zh(0x22, 0x34, 0x12)...)), 0x1234},
		{"traced, too short", frameOf(FlagZstd|FlagTrace, goldenTrace[:20]), 0},
		{"header only", AppendHeader(nil, TypeData, FlagZstd, 1, 1, 0, 0, 0), 0},
		{"short", []byte{0x4c, 0x44}, 0},
	}
	for _, c := range cases {
		if got := DictID(c.fb); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { DictID(cases[3].fb) }); n != 0 {
		t.Errorf("DictID allocates %v", n)
	}
}

func TestWelcomeDicts(t *testing.T) {
	w := Welcome{Caps: CapZstd | CapDict, Window: 4, MaxFrame: 1 << 20, ServerID: []byte("s"), Dicts: []uint32{testDictID, 7}}
	b := AppendWelcome(nil, &w)
	var got Welcome
	if err := DecodeWelcome(b[HeaderSize:], &got); err != nil {
		t.Fatal(err)
	}
	if got.Caps != w.Caps || len(got.Dicts) != 2 || got.Dicts[0] != testDictID || got.Dicts[1] != 7 {
		t.Fatalf("%+v", got)
	}
	// Without ids the capability is not sent; without the capability the
	// ids are not.
	for _, v := range []Welcome{{Caps: CapDict, Window: 1, MaxFrame: 1}, {Caps: CapZstd, Window: 1, MaxFrame: 1, Dicts: []uint32{5}}} {
		b := AppendWelcome(nil, &v)
		if err := DecodeWelcome(b[HeaderSize:], &got); err != nil || got.Caps&CapDict != 0 || len(got.Dicts) != 0 {
			t.Fatalf("%+v: %+v %v", v, got, err)
		}
	}
	// At most MaxDicts go out.
	many := Welcome{Caps: CapDict, Window: 1, MaxFrame: 1}
	for i := range MaxDicts + 3 {
		many.Dicts = append(many.Dicts, uint32(i+1))
	}
	if err := DecodeWelcome(AppendWelcome(nil, &many)[HeaderSize:], &got); err != nil || len(got.Dicts) != MaxDicts {
		t.Fatalf("%d ids, %v", len(got.Dicts), err)
	}
	// Refused: the capability without a list, an empty list, more than
	// MaxDicts, id 0, an id twice, a list cut short, bytes after it.
	base := AppendWelcome(nil, &Welcome{Caps: CapDict, Window: 1, MaxFrame: 1, Dicts: []uint32{9}})[HeaderSize:]
	list := len(base) - 5
	bad := map[string][]byte{
		"no list":   base[:list],
		"empty":     append(bytes.Clone(base[:list]), 0),
		"17":        append(append(bytes.Clone(base[:list]), 17), make([]byte, 17*4)...),
		"id 0":      append(bytes.Clone(base[:list]), 1, 0, 0, 0, 0),
		"twice":     append(bytes.Clone(base[:list]), 2, 0, 0, 0, 9, 0, 0, 0, 9),
		"truncated": append(bytes.Clone(base[:list]), 2, 0, 0, 0, 9, 0, 0),
		"trailing":  append(bytes.Clone(base), 0),
	}
	for name, p := range bad {
		if err := DecodeWelcome(p, &got); err != ErrBadHandshake {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Compressing and decompressing with a dictionary allocates nothing in
// steady state, as without one.
func TestDictCodecAllocs(t *testing.T) {
	d := testDict(t)
	p := realisticPacket(10, 7)
	enc := Encoder{Dict: d}
	dec := NewDecoder(DefaultLimits())
	dec.Dicts = Dicts{d}
	buf := make([]byte, 0, 64<<10)
	var got Packet
	f := enc.AppendData(nil, 1, p, true)
	if err := decodeFrame(dec, f, &got); err != nil {
		t.Fatal(err)
	}
	encAllocs := testing.AllocsPerRun(100, func() { buf = enc.AppendData(buf[:0], 1, p, true) })
	decAllocs := testing.AllocsPerRun(100, func() {
		if err := dec.Decode(Header(f), f[HeaderSize:], &got); err != nil {
			panic(err)
		}
	})
	if encAllocs != 0 || (decAllocs != 0 && !raceEnabled) {
		t.Errorf("with a dictionary: encode %v allocs, decode %v allocs per frame, want 0", encAllocs, decAllocs)
	}
}
