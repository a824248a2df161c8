package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
)

// defaultLevel is the zstd level the agent client uses by default;
// dictLevel the one it uses with a dictionary (client.Config.DictLevel).
const (
	defaultLevel = zstd.SpeedDefault
	dictLevel    = zstd.SpeedFastest
)

// idSize is the size of the packet id, the first field of a raw packet.
const idSize = 8

// pool is the pre-built traffic of one connection: whole DATA frames, each
// with a placeholder packet id. The writer copies a frame into its batch
// and stamps the copy (stamp): the sequence, a packet id of its own and
// the checksum. So the bodies are reused, but every packet sent is a new
// packet to the receiver, and no compression runs while the clock does.
//
// The id can be patched because of where it lies: right after the header
// (and trace context) of an uncompressed frame; in a compressed one, in a
// raw block of 8 bytes that starts the zstd frame, ahead of the blocks
// that compress the rest of the packet (see appendZstdIDFirst). That is
// still one zstd frame (PROTOCOL.md 8): any decoder reads it, at the cost
// of a 3-byte block header. With a dictionary, see newZstdEncoder.
type pool struct {
	frames [][]byte
	// idOff is the offset of the packet id in each frame.
	idOff    []int32
	rawBytes int64 // sum of the packets' uncompressed sizes
	wire     int64 // sum of the frames' sizes
}

// stamp writes packet id id into f, a copy of the pool's frame idx, and
// the checksum it then has. (The session stamps the sequence.)
func (p *pool) stamp(f []byte, idx int32, id uint64) {
	binary.BigEndian.PutUint64(f[p.idOff[idx]:], id)
	binary.BigEndian.PutUint32(f[28:32], frame.Checksum(f[frame.HeaderSize:]))
}

// newZstdEncoder returns an encoder set as frame's own (the agent
// client's): synchronous, no zstd checksum (the frame's CRC-32C covers
// the payload), with dict if not nil, and literals not entropy-coded if
// fast (frame.Encoder.FastDecode).
//
// With a dictionary the rest of a packet is compressed after the 8 bytes
// of its id, which the encoder does not see: the receiver's history is
// the dictionary's content, then the id. So the encoder is given the
// dictionary with 8 bytes appended to its content (idPad; the content is
// the end of a dictionary file, RFC 8878 5), which puts its references
// into the dictionary at the distances the receiver will find them. A
// reference into those 8 bytes would read the id instead; 0xFF bytes do
// not occur in the packets logbench builds, and buildPool decodes every
// frame built with a dictionary to make sure.
func newZstdEncoder(level zstd.EncoderLevel, dict *frame.Dict, fast bool) (*zstd.Encoder, error) {
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true),
		zstd.WithNoEntropyCompression(fast),
	}
	if dict != nil {
		padded := append(bytes.Clone(dict.Bytes()), idPad[:]...)
		opts = append(opts, zstd.WithEncoderDict(padded))
	}
	return zstd.NewWriter(nil, opts...)
}

// idPad stands for the packet id at the end of a dictionary's content.
var idPad = [idSize]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}

// buildPool builds n packets of msgs messages of size bytes, with
// placeholder ids, compressed with zenc unless it is nil (made by
// newZstdEncoder with dict).
func buildPool(g *textGen, zenc *zstd.Encoder, dict *frame.Dict, agent []byte, n, msgs, size int, lim *frame.Limits) (*pool, error) {
	p := &pool{frames: make([][]byte, n), idOff: make([]int32, n)}
	pk := frame.Packet{AgentID: agent, Messages: make([]frame.Message, msgs)}
	var enc frame.Encoder
	var raw, scratch []byte
	ts := time.Now()
	for i := range n {
		for j := range pk.Messages {
			ts = ts.Add(time.Duration(g.rng.IntN(2000)) * time.Microsecond)
			pk.Messages[j] = g.message(ts, size)
		}
		if err := pk.Validate(lim); err != nil {
			return nil, fmt.Errorf("cannot build packet: %w", err)
		}
		var f []byte
		off := frame.HeaderSize
		if zenc != nil {
			raw = frame.AppendPacket(raw[:0], &pk)
			var err error
			f, off, scratch, err = appendDataIDFirst(nil, zenc, uint32(msgs), raw, scratch)
			if err != nil {
				return nil, err
			}
			if i == 0 || dict != nil {
				// The decoder in use reads this layout: once per pool, and
				// every frame with a dictionary.
				if err := checkDecodes(f, off, raw, dict, lim); err != nil {
					return nil, err
				}
			}
		} else {
			f = enc.AppendData(nil, 1, &pk, false)
		}
		if uint32(len(f)-frame.HeaderSize) > lim.MaxFrame {
			return nil, fmt.Errorf("a packet of %d bytes exceeds the %d-byte frame limit: send fewer or smaller messages", len(f)-frame.HeaderSize, lim.MaxFrame)
		}
		p.frames[i] = f
		p.idOff[i] = int32(off)
		p.rawBytes += int64(pk.RawSize())
		p.wire += int64(len(f))
	}
	return p, nil
}

// appendDataIDFirst appends to dst a DATA frame of count messages whose
// payload is raw (an encoded packet) compressed so that its packet id can
// be patched (appendZstdIDFirst), or raw itself when that would not be
// smaller, as frame.Encoder does. It returns the offset of the id in the
// frame, and scratch for the next call.
func appendDataIDFirst(dst []byte, zenc *zstd.Encoder, count uint32, raw, scratch []byte) ([]byte, int, []byte, error) {
	start := len(dst)
	dst = frame.AppendHeader(dst, frame.TypeData, 0, 1, count, 0, 0, 0)
	dst, off, scratch, err := appendZstdIDFirst(dst, zenc, raw, scratch)
	if err != nil {
		return nil, 0, scratch, err
	}
	payload := dst[start+frame.HeaderSize:]
	f, n := frame.FlagZstd, uint32(len(payload))
	if len(payload) >= len(raw) {
		dst = append(dst[:start+frame.HeaderSize], raw...)
		f, n, off = 0, uint32(len(raw)), start+frame.HeaderSize
	}
	h := frame.Header(dst[start : start+frame.HeaderSize])
	h[4] = byte(f)
	binary.BigEndian.PutUint32(h[8:12], n)
	binary.BigEndian.PutUint32(h[12:16], uint32(len(raw)))
	binary.BigEndian.PutUint32(h[28:32], frame.Checksum(dst[start+frame.HeaderSize:]))
	return dst, off - start, scratch, nil
}

// zstdMagic starts every zstd frame (RFC 8878 3.1.1), little-endian.
const zstdMagic = 0xFD2FB528

// appendZstdIDFirst appends raw as one zstd frame (RFC 8878) made of a raw
// block holding the packet id (raw[:8]) followed by the blocks zenc makes
// of the rest, and returns the offset of the id in dst.
//
// The frame header is the encoder's (window, dictionary id), with the
// content size of the whole packet, declared; there is no checksum. The
// blocks of the rest are valid after the raw block: a raw block changes
// neither the entropy tables nor the repeat offsets a compressed block may
// refer to, and the first block of a frame of its own refers to neither
// (but a dictionary's; see newZstdEncoder); its matches within the rest
// keep their distances, and a single-segment window (the content size)
// grows with the content.
func appendZstdIDFirst(dst []byte, zenc *zstd.Encoder, raw, scratch []byte) ([]byte, int, []byte, error) {
	if len(raw) <= idSize {
		return nil, 0, scratch, errors.New("bench: packet too short to carry an id")
	}
	scratch = zenc.EncodeAll(raw[idSize:], scratch[:0])
	zh, err := splitZstd(scratch)
	if err != nil {
		return nil, 0, scratch, err
	}
	size := uint64(len(raw))
	dst = binary.LittleEndian.AppendUint32(dst, zstdMagic)
	// Frame header descriptor (RFC 8878 3.1.1.1.1): the size field of the
	// content size, single segment or not, the dictionary id's field.
	var fcs byte
	switch {
	case zh.single && size < 256:
		fcs = 0 // 1 byte
	case size >= 256 && size < 256+1<<16:
		fcs = 1 // 2 bytes, minus 256
	case size < 1<<32:
		fcs = 2
	default:
		fcs = 3
	}
	fhd := fcs<<6 | zh.dictFlag
	if zh.single {
		fhd |= 0x20
	}
	dst = append(dst, fhd)
	dst = append(dst, zh.window...)
	dst = append(dst, zh.dictID...)
	switch fcs {
	case 0:
		dst = append(dst, byte(size))
	case 1:
		dst = binary.LittleEndian.AppendUint16(dst, uint16(size-256))
	case 2:
		dst = binary.LittleEndian.AppendUint32(dst, uint32(size))
	default:
		dst = binary.LittleEndian.AppendUint64(dst, size)
	}
	// Block header (3 bytes, little-endian): not last, raw, 8 bytes.
	dst = append(dst, idSize<<3, 0, 0)
	off := len(dst)
	dst = append(dst, raw[:idSize]...)
	return append(dst, zh.blocks...), off, scratch, nil
}

// zstdParts are the parts of a zstd frame header appendZstdIDFirst keeps,
// and the blocks that follow it.
type zstdParts struct {
	single   bool
	window   []byte // the window descriptor, when not single segment
	dictFlag byte   // the descriptor's dictionary id field size flag
	dictID   []byte
	blocks   []byte
}

// splitZstd splits z, one zstd frame without a checksum, into its frame
// header's parts and its blocks.
func splitZstd(z []byte) (zstdParts, error) {
	var zp zstdParts
	if len(z) < 5 || binary.LittleEndian.Uint32(z) != zstdMagic {
		return zp, errors.New("bench: the encoder did not make a zstd frame")
	}
	fhd := z[4]
	if fhd&0x04 != 0 {
		return zp, errors.New("bench: zstd frame with a checksum")
	}
	n := 5
	zp.single = fhd&0x20 != 0
	if !zp.single {
		n++ // window descriptor
	}
	zp.dictFlag = fhd & 3
	d := [...]int{0, 1, 2, 4}[zp.dictFlag] // dictionary id
	f := [...]int{0, 2, 4, 8}[fhd>>6]      // content size
	if fhd>>6 == 0 && zp.single {
		f = 1
	}
	if len(z) <= n+d+f {
		return zp, errors.New("bench: zstd frame without blocks")
	}
	zp.window = z[5:n]
	zp.dictID = z[n : n+d]
	zp.blocks = z[n+d+f:]
	return zp, nil
}

// checkDecodes stamps an id into a copy of f, a DATA frame whose id is at
// off, decodes it as a receiver holding dict does, and compares the result
// with raw carrying that id.
func checkDecodes(f []byte, off int, raw []byte, dict *frame.Dict, lim *frame.Limits) error {
	const id = 0x0123456789abcdef
	g := bytes.Clone(f)
	binary.BigEndian.PutUint64(g[off:], id)
	binary.BigEndian.PutUint32(g[28:32], frame.Checksum(g[frame.HeaderSize:]))
	want := binary.BigEndian.AppendUint64(nil, id)
	want = append(want, raw[idSize:]...)
	h, err := frame.ParseHeader(g, lim)
	if err != nil {
		return fmt.Errorf("bench: built a bad frame: %w", err)
	}
	payload := g[frame.HeaderSize:h.FrameLen()]
	if err := h.Check(payload); err != nil {
		return fmt.Errorf("bench: built a bad frame: %w", err)
	}
	dec := frame.NewDecoder(*lim)
	if dict != nil {
		dec.Dicts = frame.Dicts{dict}
	}
	got, err := dec.Raw(h, payload)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("bench: a built frame does not decode to its packet with a patched id (%v): cannot send unique packet ids this way", err)
	}
	return nil
}

// trace gives a share ratio of the pool's frames a sampled trace context,
// each its own trace (random ids from rng).
func (p *pool) trace(rng *rand.Rand, ratio float64) {
	for i, f := range p.frames {
		if rng.Float64() >= ratio {
			continue
		}
		var tid [16]byte
		var sid [8]byte
		binary.LittleEndian.PutUint64(tid[:8], rng.Uint64()|1)
		binary.LittleEndian.PutUint64(tid[8:], rng.Uint64())
		binary.LittleEndian.PutUint64(sid[:], rng.Uint64()|1)
		tc := frame.NewTraceContext(tid, sid, true)
		p.frames[i] = frame.AppendWithTrace(nil, f, &tc)
		p.idOff[i] += frame.TraceSize
		p.wire += frame.TraceSize
	}
}
