package frame

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// decodeFrame runs a whole DATA frame through the public decode path:
// ParseHeader, Check, Decoder.Decode.
func decodeFrame(d *Decoder, b []byte, p *Packet) error {
	h, err := ParseHeader(b, &d.Limits)
	if err != nil {
		return err
	}
	if h.FrameLen() != len(b) {
		return ErrTruncated
	}
	payload := b[HeaderSize:]
	if err := h.Check(payload); err != nil {
		return err
	}
	return d.Decode(h, payload, p)
}

func TestDataRoundTrip(t *testing.T) {
	var enc Encoder
	dec := NewDecoder(DefaultLimits())
	f := func(name string, p *Packet, compress, wantZstd bool) {
		t.Helper()
		b := enc.AppendData([]byte("prefix"), 42, p, compress)[len("prefix"):]
		h := Header(b[:HeaderSize])
		if h.Type() != TypeData || h.Seq() != 42 || h.Count() != uint32(len(p.Messages)) ||
			h.Compressed() != wantZstd || h.RawLen() != uint32(p.RawSize()) || h.FrameLen() != len(b) {
			t.Fatalf("%s: header % x (raw size %d)", name, []byte(h), p.RawSize())
		}
		if !wantZstd && h.PayloadLen() != h.RawLen() {
			t.Fatalf("%s: uncompressed payload len %d raw %d", name, h.PayloadLen(), h.RawLen())
		}
		var got Packet
		if err := decodeFrame(dec, b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := equalPacket(p, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, err := dec.Raw(h, b[HeaderSize:])
		if err != nil || !bytes.Equal(raw, AppendPacket(nil, p)) {
			t.Fatalf("%s: Raw: %v", name, err)
		}
	}
	f("sample", samplePacket(), false, false)
	f("sample zstd", samplePacket(), true, true)
	f("realistic 100 zstd", realisticPacket(100, 5), true, true)
	f("realistic 100", realisticPacket(100, 5), false, false)
	// A payload that zstd cannot shrink goes out uncompressed.
	noise := make([]byte, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	b := enc.AppendCompressed(nil, 3, 1, noise)
	if h := Header(b); h.Compressed() || h.PayloadLen() != 1000 || h.RawLen() != 1000 || !bytes.Equal(b[HeaderSize:], noise) ||
		h.Check(noise) != nil || h.Count() != 1 || h.Seq() != 3 {
		t.Fatalf("incompressible: header % x", b[:HeaderSize])
	}

	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression,
		zstd.SpeedBestCompression, zstd.SpeedBestCompression + 1, 100, -1} {
		e := Encoder{Level: level}
		p := realisticPacket(10, uint64(level))
		b := e.AppendData(nil, 1, p, true)
		var got Packet
		if err := decodeFrame(dec, b, &got); err != nil {
			t.Fatalf("level %v: %v", level, err)
		}
		if err := equalPacket(p, &got); err != nil {
			t.Fatalf("level %v: %v", level, err)
		}
	}
}

// TestAppendCompressedForwarding is how logdist re-frames a payload: the
// raw bytes of a packet, compressed once, then re-sequenced with SetSeq.
func TestAppendCompressedForwarding(t *testing.T) {
	var enc Encoder
	p := realisticPacket(20, 9)
	b := enc.AppendCompressed(nil, 5, 20, AppendPacket(nil, p))
	Header(b).SetSeq(6)
	var got Packet
	if err := decodeFrame(NewDecoder(DefaultLimits()), b, &got); err != nil {
		t.Fatal(err)
	}
	if Header(b).Seq() != 6 || equalPacket(p, &got) != nil {
		t.Fatal("forwarded frame differs")
	}
}

// rleBomb hand-builds one zstd frame with the given window descriptor byte,
// no content size, and blocks RLE blocks of 128 KiB each: 4 bytes of input
// per 128 KiB of output.
func rleBomb(windowDescriptor byte, blocks int) []byte {
	b := []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, windowDescriptor}
	for i := 0; i < blocks; i++ {
		hdr := uint32(128<<10)<<3 | 1<<1 // RLE block of 128 KiB
		if i == blocks-1 {
			hdr |= 1 // last block
		}
		b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16), 'A')
	}
	return b
}

func TestZipBomb(t *testing.T) {
	// MaxRaw 1 MiB rather than the default 4 MiB: the bombs are still 64
	// times larger, and the test stays quick under -race.
	lim := DefaultLimits()
	lim.MaxRaw = 1 << 20
	dec := NewDecoder(lim)
	// Warm the decoder pool and the Decoder's buffer up to MaxRaw, so that
	// the memory measured below is what a bomb costs in steady state.
	var enc Encoder
	var p Packet
	if err := decodeFrame(dec, enc.AppendData(nil, 1, realisticPacket(10, 1), true), &p); err != nil {
		t.Fatal(err)
	}
	dec.raw = make([]byte, 0, lim.MaxRaw)
	bomb64 := zstdBomb(t, 64<<20, true)
	stream64 := zstdBomb(t, 64<<20, false)
	t.Logf("64 MiB of zeros: %d bytes with content size, %d bytes streaming", len(bomb64), len(stream64))
	tests := []struct {
		name    string
		payload []byte
		raw     uint32
		want    error
	}{
		{"64 MiB, declared, raw 1000", bomb64, 1000, ErrRawTooLarge},
		{"64 MiB, declared, raw MaxRaw", bomb64, lim.MaxRaw, ErrRawTooLarge},
		{"64 MiB, streaming, raw 1000", stream64, 1000, ErrRawTooLarge},
		{"64 MiB, streaming, raw MaxRaw", stream64, lim.MaxRaw, ErrRawTooLarge},
		{"RLE 32 GiB, 256 MiB window, raw 1000", rleBomb(18<<3, (1<<20-6)/4), 1000, ErrRawTooLarge},
		{"RLE 32 GiB, 256 MiB window, raw MaxRaw", rleBomb(18<<3, (1<<20-6)/4), lim.MaxRaw, ErrRawTooLarge},
		{"RLE, 2 GiB window", rleBomb(21<<3, 4), lim.MaxRaw, ErrRawTooLarge},
		{"RLE, 3.75 TiB window", rleBomb(0xFF, 4), lim.MaxRaw, ErrRawTooLarge},
		{"RLE, 1 KiB window, 128 KiB blocks", rleBomb(0, 4), lim.MaxRaw, nil},
	}
	for _, tt := range tests {
		frame := dataFrame(FlagZstd, 1, 1, tt.payload, tt.raw)
		h, err := ParseHeader(frame, &lim)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got error
		n := allocBytes(func() { got = dec.Decode(h, tt.payload, &p) })
		if got != tt.want && (tt.want != nil || (got != ErrRawTooLarge && got != ErrBadCompression)) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		// The Decoder's buffer is already MaxRaw. A frame without a
		// content size overflows it by one block, which the zstd library
		// copies once (see Decoder.Raw).
		if max := uint64(float64(tt.raw+128<<10)*1.3) + 256<<10; n > max {
			t.Errorf("%s: decoding allocated %d bytes, want ≤ %d", tt.name, n, max)
		}
		t.Logf("%s: %v, %d bytes allocated", tt.name, got, n)
	}

	// A fresh Decoder sizes its buffer to the header's raw length, no more.
	for _, raw := range []uint32{1000, 64 << 10, lim.MaxRaw} {
		for _, payload := range [][]byte{bomb64, stream64, rleBomb(18<<3, 1000)} {
			frame := dataFrame(FlagZstd, 1, 1, payload, raw)
			var got error
			n := allocBytes(func() {
				d := NewDecoder(lim)
				got = d.Decode(Header(frame), payload, &p)
			})
			if got != ErrRawTooLarge {
				t.Errorf("raw %d: %v", raw, got)
			}
			var zh zstd.Header
			if err := zh.Decode(payload); err != nil {
				t.Fatal(err)
			}
			max := uint64(256 << 10) // content size declared: refused before any buffer
			if !zh.HasFCS {
				max += uint64(raw) + uint64(float64(raw+128<<10)*1.3)
			}
			if n > max {
				t.Errorf("fresh decoder, raw %d, content size %v: allocated %d bytes, want ≤ %d", raw, zh.HasFCS, n, max)
			}
			t.Logf("fresh decoder, raw %d, content size %v: allocated %d bytes", raw, zh.HasFCS, n)
		}
	}
}

func TestDecodeCompressedErrors(t *testing.T) {
	lim := DefaultLimits()
	dec := NewDecoder(lim)
	var enc Encoder
	good := enc.AppendData(nil, 1, realisticPacket(10, 2), true)
	h := Header(good[:HeaderSize])
	zpayload := good[HeaderSize:]
	raw := AppendPacket(nil, realisticPacket(10, 2))
	var p Packet
	f := func(name string, payload []byte, rawLen uint32, count uint32, want error) {
		t.Helper()
		frame := dataFrame(FlagZstd, 1, count, payload, rawLen)
		if err := decodeFrame(dec, append(frame, payload...), &p); err != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	f("valid", zpayload, h.RawLen(), 10, nil)
	f("raw declared larger", zpayload, h.RawLen()+1, 10, ErrRawMismatch)
	f("raw declared smaller", zpayload, h.RawLen()-1, 10, ErrRawTooLarge)
	f("count mismatch", zpayload, h.RawLen(), 9, ErrCountMismatch)
	f("garbage", []byte("this is not a zstd frame at all, just text"), 1000, 1, ErrBadCompression)
	f("truncated zstd", zpayload[:len(zpayload)/2], h.RawLen(), 10, ErrBadCompression)
	f("zstd magic only", zpayload[:4], h.RawLen(), 10, ErrBadCompression)
	corrupt := bytes.Clone(zpayload)
	corrupt[len(corrupt)/2] ^= 0xFF
	if err := decodeFrame(dec, append(dataFrame(FlagZstd, 1, 10, corrupt, h.RawLen()), corrupt...), &p); err == nil {
		// A flipped byte may still decode; then the packet must not.
		t.Log("corrupted zstd decoded; the packet check must have caught it")
	}
	// With the zstd checksum on, corruption is caught by zstd itself.
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	withCRC := e.EncodeAll(raw, nil)
	f("zstd with its own checksum", withCRC, uint32(len(raw)), 10, nil)
	withCRC[len(withCRC)-1] ^= 1
	f("zstd checksum mismatch", withCRC, uint32(len(raw)), 10, ErrBadCompression)
	// Two zstd frames back to back: tolerated by this decoder (see
	// docs/PROTOCOL.md: senders send one).
	half := len(raw) / 2
	two := append(e.EncodeAll(raw[:half], nil), e.EncodeAll(raw[half:], nil)...)
	f("two zstd frames", two, uint32(len(raw)), 10, nil)
	_ = e.Close()
	// A skippable frame alone decompresses to nothing.
	skip := binary.LittleEndian.AppendUint32([]byte{0x50, 0x2A, 0x4D, 0x18}, 4)
	skip = append(skip, 1, 2, 3, 4)
	f("skippable frame only", skip, 100, 1, ErrRawMismatch)
	// Uncompressed frames go through Decode untouched.
	plain := AppendFrame(nil, TypeData, 1, 10, raw)
	if err := decodeFrame(dec, plain, &p); err != nil {
		t.Errorf("uncompressed: %v", err)
	}
}

// TestDecoderRawLimit: a Decoder enforces its own MaxRaw even on a header
// that passed a more generous ParseHeader.
func TestDecoderRawLimit(t *testing.T) {
	small := DefaultLimits()
	small.MaxRaw = 2000
	dec := NewDecoder(small)
	var enc Encoder
	b := enc.AppendData(nil, 1, realisticPacket(20, 3), true)
	var p Packet
	if err := dec.Decode(Header(b), b[HeaderSize:], &p); err != ErrRawTooLarge {
		t.Fatalf("%v", err)
	}
}

func TestCodecAllocs(t *testing.T) {
	lim := DefaultLimits()
	p := realisticPacket(10, 7)
	var enc Encoder
	dec := NewDecoder(lim)
	buf := make([]byte, 0, 64<<10)
	var got Packet
	frame := enc.AppendData(nil, 1, p, true)
	if err := decodeFrame(dec, frame, &got); err != nil {
		t.Fatal(err)
	}
	encAllocs := testing.AllocsPerRun(100, func() { buf = enc.AppendData(buf[:0], 1, p, true) })
	decAllocs := testing.AllocsPerRun(100, func() {
		if err := dec.Decode(Header(frame), frame[HeaderSize:], &got); err != nil {
			panic(err)
		}
	})
	t.Logf("compressed, after warm-up: encode %v allocs, decode %v allocs", encAllocs, decAllocs)
	// Idle coders are kept in a free list no GC empties (a sync.Pool
	// dropped them at every other GC, and a quarter of Puts under -race):
	// steady state allocates nothing. Under -race the zstd decoder's own
	// pools still drop buffers.
	if encAllocs != 0 || (decAllocs != 0 && !raceEnabled) {
		t.Errorf("compressed: encode %v allocs, decode %v allocs per frame, want 0", encAllocs, decAllocs)
	}
}

// FastDecode leaves the literals without entropy coding: the first
// block's literals section is Raw or RLE (RFC 8878 3.1.1.3.1.1), never
// Compressed or Treeless, at every level, with a dictionary or not; the
// packet decodes back, with this package's decoder and with a stock one;
// and it is larger than the same packet with Huffman literals.
func TestFastDecode(t *testing.T) {
	d := testDict(t)
	p := realisticPacket(10, 7)
	for level := zstd.SpeedFastest; level <= zstd.SpeedBestCompression; level++ {
		for _, dict := range []*Dict{nil, d} {
			huff := (&Encoder{Level: level, Dict: dict}).AppendData(nil, 1, p, true)
			f := (&Encoder{Level: level, Dict: dict, FastDecode: true}).AppendData(nil, 1, p, true)
			name := fmt.Sprintf("level %v, dict %v", level, dict != nil)
			if !Header(f).Compressed() {
				t.Fatalf("%s: not compressed", name)
			}
			if got, want := literalsType(t, huff[HeaderSize:]), 2; got != want {
				t.Fatalf("%s: without FastDecode, literals type %d, want %d (Compressed)", name, got, want)
			}
			if lt := literalsType(t, f[HeaderSize:]); lt > 1 {
				t.Fatalf("%s: FastDecode's first block has literals of type %d (entropy-coded)", name, lt)
			}
			if !FastDecoded(Header(f), f[HeaderSize:]) || FastDecoded(Header(huff), huff[HeaderSize:]) {
				t.Fatalf("%s: FastDecoded %v for FastDecode, %v without", name, FastDecoded(Header(f), f[HeaderSize:]), FastDecoded(Header(huff), huff[HeaderSize:]))
			}
			if traced := AppendWithTrace(nil, f, &goldenTrace); !FastDecoded(Header(traced), traced[HeaderSize:]) {
				t.Fatalf("%s: FastDecoded false behind a trace context", name)
			}
			if len(f) <= len(huff) {
				t.Fatalf("%s: FastDecode %d bytes, Huffman literals %d: expected larger", name, len(f), len(huff))
			}
			dec := NewDecoder(DefaultLimits())
			dec.Dicts = Dicts{d}
			var got Packet
			if err := decodeFrame(dec, f, &got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := equalPacket(p, &got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			opts := []zstd.DOption{zstd.WithDecoderConcurrency(1)}
			if dict != nil {
				opts = append(opts, zstd.WithDecoderDicts(dict.Bytes()))
			}
			stock, err := zstd.NewReader(nil, opts...)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := stock.DecodeAll(f[HeaderSize:], nil)
			stock.Close()
			if err != nil || !bytes.Equal(raw, AppendPacket(nil, p)) {
				t.Fatalf("%s: a stock zstd decoder: %v (equal %v)", name, err, bytes.Equal(raw, AppendPacket(nil, p)))
			}
		}
	}
}

// literalsType returns the Literals_Block_Type of the first block of the
// zstd frame z, which must be a Compressed block.
func literalsType(t *testing.T, z []byte) int {
	t.Helper()
	var h zstd.Header
	if err := h.Decode(z); err != nil {
		t.Fatal(err)
	}
	b := z[h.HeaderSize:]
	if bt := (b[0] >> 1) & 3; bt != 2 {
		t.Fatalf("first block of type %d, want 2 (Compressed)", bt)
	}
	return int(b[3] & 3)
}

// FastDecoded is false for a zstd frame whose first block is RLE (no
// literals section: the byte after its header is the repeated byte, here
// one whose low bits would read as Raw literals) and for garbage.
func TestFastDecodedRLE(t *testing.T) {
	// Magic, Frame_Header_Descriptor (Single_Segment, 1-byte content
	// size), content size 200, Block_Header (last, RLE, size 200), 0x00.
	z := []byte{0x28, 0xB5, 0x2F, 0xFD, 0x20, 200, 0x43, 0x06, 0x00, 0x00}
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if out, err := d.DecodeAll(z, nil); err != nil || !bytes.Equal(out, make([]byte, 200)) {
		t.Fatalf("the RLE frame does not decode to 200 zeros: %v", err)
	}
	f := AppendHeader(nil, TypeData, 0, 1, 1, 0, 0, 0)
	f = append(f, z...)
	fillLengths(Header(f), FlagZstd, uint32(len(z)), 200, Checksum(z))
	if FastDecoded(Header(f), f[HeaderSize:]) {
		t.Fatal("an RLE block read as literals without entropy coding")
	}
	for _, junk := range [][]byte{nil, {0x28}, z[:6], z[:9], bytes.Repeat([]byte{0xFF}, 40)} {
		g := AppendHeader(nil, TypeData, 0, 1, 1, 0, 0, 0)
		g = append(g, junk...)
		fillLengths(Header(g), FlagZstd, uint32(len(junk)), 200, Checksum(junk))
		if FastDecoded(Header(g), g[HeaderSize:]) {
			t.Fatalf("%x read as FastDecode", junk)
		}
	}
}
