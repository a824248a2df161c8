package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzLimits are the defaults with smaller bounds, so that the fuzzer
// reaches every limit with short inputs.
func fuzzLimits() Limits {
	return Limits{MaxFrame: 64 << 10, MaxRaw: 256 << 10, MaxMessages: 64, MaxField: 32, MaxBody: 1024, MaxAttrs: 4}
}

// addFrameSeeds adds every golden frame and a few built ones.
func addFrameSeeds(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	var enc Encoder
	f.Add(enc.AppendData(nil, 1, realisticPacket(3, 1), true))
	f.Add(enc.AppendData(nil, 1, samplePacket(), true))
	f.Add(append(dataFrame(FlagZstd, 1, 1, rleBomb(18<<3, 8), 4096), rleBomb(18<<3, 8)...))
}

// payloadOf returns the payload of the golden DATA frames, uncompressed,
// with their header counts.
func packetSeeds(tb testing.TB) (raws [][]byte, counts []uint32) {
	lim := DefaultLimits()
	dec := NewDecoder(lim)
	for _, b := range goldenSeeds(tb) {
		h, err := ParseHeader(b, &lim)
		if err != nil || h.Type() != TypeData || len(b) < h.FrameLen() {
			continue
		}
		raw, err := dec.Raw(h, b[HeaderSize:h.FrameLen()])
		if err != nil {
			continue
		}
		raws = append(raws, bytes.Clone(raw))
		counts = append(counts, h.Count())
	}
	return raws, counts
}

func FuzzParseHeader(f *testing.F) {
	addFrameSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, lim := range []Limits{DefaultLimits(), fuzzLimits()} {
			h, err := ParseHeader(b, &lim)
			if err != nil {
				if h != nil {
					t.Fatal("header and error")
				}
				var fe *Error
				if err != ErrShortHeader && !errors.As(err, &fe) {
					t.Fatalf("error %v is not an *Error", err)
				}
				if fe != nil && !fe.Code.Fatal() {
					// A per-packet error: the frame is a well-formed DATA
					// frame whose payload can be skipped.
					hh := Header(b[:HeaderSize])
					if hh.Type() != TypeData || hh.PayloadLen() > lim.MaxFrame || hh.PayloadLen() == 0 || hh.Seq() == 0 || hh.Count() == 0 {
						t.Fatalf("per-packet error %v on header % x", err, b[:HeaderSize])
					}
				}
				continue
			}
			if len(h) != HeaderSize || &h[0] != &b[0] {
				t.Fatal("header is not a view of b")
			}
			// Re-encoding the accessors gives the same bytes.
			again := AppendHeader(nil, h.Type(), h.Flags(), h.Seq(), h.Count(), h.PayloadLen(), h.RawLen(), h.CRC())
			if !bytes.Equal(again, h) {
				t.Fatalf("re-encoded % x != % x", again, []byte(h))
			}
			n := h.PayloadLen()
			switch h.Type() {
			case TypeData:
				body := n
				if h.Traced() {
					body = n - TraceSize
				}
				if n == 0 || n > lim.MaxFrame || h.RawLen() > lim.MaxRaw || h.Count() == 0 || h.Count() > lim.MaxMessages || h.Seq() == 0 ||
					(h.Traced() && n <= TraceSize) || (!h.Compressed() && h.RawLen() != body) || uint64(h.RawLen()) < packetFixed+uint64(h.Count())*messageFixed {
					t.Fatalf("accepted DATA % x", []byte(h))
				}
			case TypeAck, TypePing, TypePong:
				if n != 0 || h.RawLen() != 0 || h.Count() != 0 || h.Flags() != 0 {
					t.Fatalf("accepted % x", []byte(h))
				}
			default:
				if n > MaxControlPayload || h.RawLen() != n || h.Count() != 0 || h.Flags() != 0 {
					t.Fatalf("accepted % x", []byte(h))
				}
			}
		}
	})
}

func FuzzDecodePacket(f *testing.F) {
	raws, counts := packetSeeds(f)
	for i := range raws {
		f.Add(raws[i], counts[i])
	}
	f.Add(AppendPacket(nil, realisticPacket(20, 3)), uint32(20))
	f.Add(AppendPacket(nil, &Packet{Messages: make([]Message, 3)}), uint32(3))
	var reused Packet
	f.Fuzz(func(t *testing.T, b []byte, count uint32) {
		lim := fuzzLimits()
		var p Packet
		err := DecodePacket(b, count, &lim, &p)
		// No allocation beyond what the bytes justify: one Message per
		// messageFixed bytes, one Attr per attrFixed bytes.
		if cap(p.Messages) > len(b)/messageFixed || cap(p.attrs) > len(b)/attrFixed {
			t.Fatalf("%d bytes: %d messages, %d attrs allocated", len(b), cap(p.Messages), cap(p.attrs))
		}
		// Decoding into a reused Packet gives the same result.
		if err2 := DecodePacket(b, count, &lim, &reused); err2 != err {
			t.Fatalf("reused packet: %v, fresh: %v", err2, err)
		}
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Code.Fatal() {
				t.Fatalf("error %v is not a per-packet *Error", err)
			}
			return
		}
		if err := equalPacket(&p, &reused); err != nil {
			t.Fatal(err)
		}
		if uint32(len(p.Messages)) != count {
			t.Fatalf("%d messages, count %d", len(p.Messages), count)
		}
		// Round trip: the encoding is canonical, so re-encoding gives the
		// input back, and decoding that gives the same packet.
		again := AppendPacket(nil, &p)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded\n% x\n!=\n% x", again, b)
		}
		if p.RawSize() != len(b) {
			t.Fatalf("RawSize %d, encoded %d", p.RawSize(), len(b))
		}
		var q Packet
		if err := DecodePacket(again, count, &lim, &q); err != nil {
			t.Fatal(err)
		}
		if err := equalPacket(&p, &q); err != nil {
			t.Fatal(err)
		}
		// What decodes validates (but for the frame-level limits).
		if count > 0 && len(b) <= int(lim.MaxRaw) {
			if err := p.Validate(&lim); err != nil {
				t.Fatalf("decoded packet fails Validate: %v", err)
			}
		}
	})
}

func FuzzDecodeData(f *testing.F) {
	addFrameSeeds(f)
	dec := NewDecoder(fuzzLimits())
	dec.Dicts = Dicts{testDict(f)} // payloads naming it decode; others are unknown_dictionary
	var enc Encoder
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := dec.Limits
		h, err := ParseHeader(b, &lim)
		if err != nil || h.Type() != TypeData || len(b) < h.FrameLen() {
			return
		}
		// The checksum is not required: the fuzzer could hardly forge it,
		// and it guards nothing the decoder relies on.
		payload := b[HeaderSize:h.FrameLen()]
		FastDecoded(h, payload) // any payload: no panic
		var p Packet
		err = dec.Decode(h, payload, &p)
		if cap(dec.raw) > int(lim.MaxRaw) {
			t.Fatalf("decompression buffer of %d bytes, MaxRaw %d", cap(dec.raw), lim.MaxRaw)
		}
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Code.Fatal() {
				t.Fatalf("error %v is not a per-packet *Error", err)
			}
			return
		}
		raw, err := dec.Raw(h, payload)
		if err != nil {
			t.Fatalf("Decode succeeded, Raw failed: %v", err)
		}
		if id := DictID(b[:h.FrameLen()]); id != 0 && dec.Dicts.Find(id) == nil {
			t.Fatalf("decoded a payload naming dictionary %d, which the decoder does not hold", id)
		}
		if uint32(len(raw)) != h.RawLen() || uint32(len(p.Messages)) != h.Count() {
			t.Fatalf("raw %d (header %d), %d messages (header %d)", len(raw), h.RawLen(), len(p.Messages), h.Count())
		}
		if !bytes.Equal(AppendPacket(nil, &p), raw) {
			t.Fatal("re-encoded packet differs from the raw payload")
		}
		// Re-encoding through the Encoder gives a frame that decodes to
		// the same packet.
		frame := enc.AppendData(nil, h.Seq(), &p, h.Compressed())
		var q Packet
		big := lim
		big.MaxFrame, big.MaxRaw = HardMaxFrame, HardMaxFrame
		if err := decodeFrame(NewDecoder(big), frame, &q); err != nil {
			t.Fatalf("re-encoded frame: %v", err)
		}
		if err := equalPacket(&p, &q); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzReader(f *testing.F) {
	seeds := goldenSeeds(f)
	for _, b := range seeds {
		f.Add(b)
	}
	f.Add(bytes.Join(seeds[:min(len(seeds), 12)], nil))
	b, _ := allFrames()
	f.Add(b)
	dec := NewDecoder(fuzzLimits())
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := fuzzLimits()
		r := NewReader(bytes.NewReader(b), &lim)
		frames := 0
		for {
			ready := r.Ready() // must not panic, whatever is buffered
			buffered := r.Buffered()
			h, payload, err := r.Next()
			if ready && buffered == 0 {
				t.Fatal("Ready with nothing buffered")
			}
			if err != nil {
				var fe *Error
				switch {
				case err == io.EOF, err == io.ErrUnexpectedEOF:
				case errors.As(err, &fe):
					if !fe.Code.Fatal() {
						if h == nil || h.Type() != TypeData || payload != nil {
							t.Fatalf("per-packet error %v without its DATA header", err)
						}
						frames++
						continue // the stream is still in sync
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			frames++
			if frames > len(b)/HeaderSize {
				t.Fatalf("%d frames from %d bytes", frames, len(b))
			}
			if len(payload) != int(h.PayloadLen()) || h.Check(payload) != nil {
				t.Fatal("payload does not match its header")
			}
			if cap(r.buf) > int(lim.MaxFrame) {
				t.Fatalf("payload buffer of %d bytes", cap(r.buf))
			}
			switch h.Type() {
			case TypeData:
				var p Packet
				_ = dec.Decode(h, payload, &p)
			case TypeHello:
				var v Hello
				_ = DecodeHello(payload, &v)
			case TypeWelcome:
				var v Welcome
				_ = DecodeWelcome(payload, &v)
			case TypeBusy:
				_, _ = DecodeBusy(payload)
			case TypeError, TypeGoAway:
				_, _, _ = DecodeReason(payload)
			}
		}
	})
}

func FuzzControl(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		if len(b) > HeaderSize {
			for kind := byte(0); kind < 5; kind++ {
				f.Add(kind, b[HeaderSize:])
			}
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		// Every decoder: what decodes re-encodes to the same payload.
		var again []byte
		switch kind % 5 {
		case 0:
			var v Hello
			if DecodeHello(b, &v) != nil {
				return
			}
			if len(v.AgentID) == 0 || v.Window == 0 {
				t.Fatalf("accepted %+v", v)
			}
			again = AppendHello(nil, &v)
		case 1:
			var v Welcome
			if DecodeWelcome(b, &v) != nil {
				return
			}
			if v.Window == 0 || v.MaxFrame == 0 {
				t.Fatalf("accepted %+v", v)
			}
			again = AppendWelcome(nil, &v)
		case 2:
			code, reason, err := DecodeReason(b)
			if err != nil {
				return
			}
			again = AppendError(nil, 1, code, string(reason))
		case 3:
			ms, err := DecodeBusy(b)
			if err != nil {
				return
			}
			again = AppendBusy(nil, 1, ms)
		case 4:
			// The cumulative sequence comes from the payload's first byte,
			// so the rules relating it to the ranges are exercised too.
			var cum uint64
			if len(b) > 0 {
				cum = uint64(b[0])
			}
			ranges, err := DecodeSack(b, cum, nil)
			if err != nil {
				return
			}
			for i, r := range ranges {
				if r.First <= cum+1 || r.Last < r.First || (i > 0 && r.First <= ranges[i-1].Last+1) {
					t.Fatalf("accepted ranges %v over cumulative %d", ranges, cum)
				}
			}
			again = AppendSack(nil, cum, ranges)
		}
		if !bytes.Equal(again[HeaderSize:], b) {
			t.Fatalf("re-encoded payload\n% x\n!=\n% x", again[HeaderSize:], b)
		}
		lim := DefaultLimits()
		if _, err := ParseHeader(again, &lim); err != nil {
			t.Fatalf("re-encoded frame: %v", err)
		}
	})
}
