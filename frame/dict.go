package frame

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// Dict is a zstd dictionary that both ends of a connection hold, named by
// its dictionary id (PROTOCOL.md 8.1). Small packets compress far better
// with one: a 1-message packet barely compresses on its own, as zstd has
// nothing to refer back to. A Dict is immutable and safe for concurrent
// use; it keeps its own idle encoders and decoders, as the package does
// for compression without a dictionary.
//
// The file format is zstd's (RFC 8878 section 5): what `logdist dict
// train` writes, and also `zstd --train`. Its id, in the file, is the id
// the protocol carries: the zstd frame header of every payload compressed
// with it names it, and WELCOME lists the ids a server accepts.
type Dict struct {
	id       uint32
	raw      []byte
	content  int
	encoders encoderPools
	decoders idle[*zstd.Decoder]
}

// MaxDicts is the most dictionaries a WELCOME lists, and so the most a
// server (or a Dicts) may hold at once: two are enough to rotate one.
const MaxDicts = 16

// MaxDictSize bounds a dictionary file (zstd's own trainer defaults to
// 110 KiB; logdist dict train to 64 KiB).
const MaxDictSize = 4 << 20

// ParseDict checks that b is a zstd dictionary with a non-zero id that
// the encoder and the decoder both take, and returns it. b is copied.
func ParseDict(b []byte) (*Dict, error) {
	if len(b) > MaxDictSize {
		return nil, fmt.Errorf("frame: dictionary of %d bytes, above the %d-byte limit", len(b), MaxDictSize)
	}
	info, err := zstd.InspectDictionary(b)
	if err != nil {
		return nil, fmt.Errorf("frame: not a zstd dictionary (want the format of logdist dict train or zstd --train): %w", err)
	}
	d := &Dict{id: info.ID(), raw: bytes.Clone(b), content: info.ContentSize()}
	if d.id == 0 {
		return nil, fmt.Errorf("frame: dictionary id 0 cannot be named on the wire")
	}
	d.encoders.init(func(level zstd.EncoderLevel, fast bool) *zstd.Encoder {
		e, err := d.newEncoder(level, fast)
		if err != nil {
			panic("BUG: frame: a dictionary the encoder took once is refused: " + err.Error())
		}
		return e
	})
	d.decoders.build = func() *zstd.Decoder {
		dec, err := d.newDecoder()
		if err != nil {
			panic("BUG: frame: a dictionary the decoder took once is refused: " + err.Error())
		}
		return dec
	}
	// Build one coder of each kind now: a dictionary the library refuses
	// fails here, at load time, and not on the first packet.
	dec, err := d.newDecoder()
	if err != nil {
		return nil, fmt.Errorf("frame: dictionary %d: %w", d.id, err)
	}
	d.decoders.put(dec)
	enc, err := d.newEncoder(zstd.SpeedDefault, false)
	if err != nil {
		return nil, fmt.Errorf("frame: dictionary %d: %w", d.id, err)
	}
	d.encoders.pool(zstd.SpeedDefault, false).put(enc)
	return d, nil
}

// LoadDict reads and parses a dictionary file.
func LoadDict(path string) (*Dict, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxDictSize+1))
	if err != nil {
		return nil, err
	}
	d, err := ParseDict(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// ID returns the dictionary id (never 0).
func (d *Dict) ID() uint32 { return d.id }

// Bytes returns the dictionary file's bytes; do not modify them.
func (d *Dict) Bytes() []byte { return d.raw }

// ContentSize returns the size of the dictionary's content, the history
// a compressed payload may refer back to.
func (d *Dict) ContentSize() int { return d.content }

func (d *Dict) newEncoder(level zstd.EncoderLevel, fast bool) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, append(encoderOptions(level, fast), zstd.WithEncoderDict(d.raw))...)
}

func (d *Dict) newDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(HardMaxFrame),
		zstd.WithDecoderMaxWindow(HardMaxFrame),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderDicts(d.raw),
	)
}

// Dicts is the set of dictionaries one side holds, in order of
// preference: a client compresses with the first one its server lists.
type Dicts []*Dict

// LoadDicts loads the dictionary files in paths, in that order, and
// checks the set (Validate).
func LoadDicts(paths []string) (Dicts, error) {
	var ds Dicts
	for _, p := range paths {
		d, err := LoadDict(p)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	return ds, nil
}

// Validate reports a set that cannot be announced: more than MaxDicts,
// a nil entry, or two dictionaries with one id.
func (ds Dicts) Validate() error {
	if len(ds) > MaxDicts {
		return fmt.Errorf("frame: %d dictionaries, more than %d", len(ds), MaxDicts)
	}
	for i, d := range ds {
		if d == nil {
			return fmt.Errorf("frame: dictionary %d of the set is nil", i)
		}
		for _, o := range ds[:i] {
			if o.id == d.id {
				return fmt.Errorf("frame: two dictionaries with id %d: give each its own (logdist dict train --id)", d.id)
			}
		}
	}
	return nil
}

// Find returns the dictionary with the given id, or nil.
func (ds Dicts) Find(id uint32) *Dict {
	for _, d := range ds {
		if d.id == id {
			return d
		}
	}
	return nil
}

// IDs returns the dictionaries' ids, in order (nil for none).
func (ds Dicts) IDs() []uint32 {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]uint32, len(ds))
	for i, d := range ds {
		ids[i] = d.id
	}
	return ids
}

// zstdMagic starts every zstd frame (little-endian 0xFD2FB528).
var zstdMagic = [4]byte{0x28, 0xb5, 0x2f, 0xfd}

// DictID returns the dictionary id a DATA frame's payload is compressed
// with: the Dictionary_ID field of its zstd frame header (RFC 8878
// 3.1.1.1), read after the trace context if there is one. 0 means no
// dictionary, and is also what an uncompressed payload, or one that does
// not start with a zstd frame header, gives. fb is the whole frame,
// header included; DictID reads at most 10 bytes of its payload and never
// allocates: a forwarder routes by it without decompressing.
func DictID(fb []byte) uint32 {
	if len(fb) < HeaderSize || Flags(fb[4])&FlagZstd == 0 {
		return 0
	}
	p := fb[HeaderSize:]
	if Flags(fb[4])&FlagTrace != 0 {
		if len(p) < TraceSize {
			return 0
		}
		p = p[TraceSize:]
	}
	if len(p) < 5 || [4]byte(p[:4]) != zstdMagic {
		return 0
	}
	fhd := p[4]
	at := 5
	if fhd&0x20 == 0 { // no Single_Segment_flag: a Window_Descriptor byte
		at++
	}
	switch fhd & 3 { // Dictionary_ID_flag: 0, 1, 2 or 4 bytes
	case 1:
		if len(p) >= at+1 {
			return uint32(p[at])
		}
	case 2:
		if len(p) >= at+2 {
			return uint32(binary.LittleEndian.Uint16(p[at:]))
		}
	case 3:
		if len(p) >= at+4 {
			return binary.LittleEndian.Uint32(p[at:])
		}
	}
	return 0
}
