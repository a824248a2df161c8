package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstd encoders and decoders are expensive to build (an encoder clears
// about 1.5 MiB of tables) and cheap to reuse, so idle ones are kept
// process-wide. Both are used only through EncodeAll and DecodeAll with
// concurrency 1, which start no goroutines: one the GC drops leaks nothing.
var (
	encoders encoderPools
	decoders = idle[*zstd.Decoder]{build: newDecoder}
)

// encoderPools are idle encoders by FastDecode (0: off, 1: on) and level.
type encoderPools [2][zstd.SpeedBestCompression + 1]idle[*zstd.Encoder]

func (p *encoderPools) init(build func(level zstd.EncoderLevel, fast bool) *zstd.Encoder) {
	for fast := range p {
		for level := range p[fast] {
			p[fast][level].build = func() *zstd.Encoder { return build(zstd.EncoderLevel(level), fast == 1) }
		}
	}
}

func (p *encoderPools) pool(level zstd.EncoderLevel, fast bool) *idle[*zstd.Encoder] {
	if fast {
		return &p[1][level]
	}
	return &p[0][level]
}

func init() {
	encoders.init(newEncoder)
}

// idle keeps coders between uses: up to one per CPU in a free list that
// the GC leaves alone, the rest in a sync.Pool. A sync.Pool alone empties
// at every other GC (and drops a quarter of what it is given under -race),
// and a busy process with a small heap collects often: it would build a
// fresh encoder every few frames. The free list is a channel, so taking a
// coder costs a short lock: tens of nanoseconds against the microseconds
// of compressing (BenchmarkDecodeDataParallel did not move). The packet
// path of logdist in its default mode (inspect=header) touches no coder.
type idle[T any] struct {
	build func() T
	once  sync.Once
	free  chan T
	more  sync.Pool
}

func (p *idle[T]) get() T {
	p.once.Do(func() { p.free = make(chan T, runtime.GOMAXPROCS(0)) })
	select {
	case v := <-p.free:
		return v
	default:
	}
	if v, ok := p.more.Get().(T); ok {
		return v
	}
	return p.build()
}

func (p *idle[T]) put(v T) {
	select {
	case p.free <- v:
	default:
		p.more.Put(v)
	}
}

func newEncoder(level zstd.EncoderLevel, fast bool) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, encoderOptions(level, fast)...)
	if err != nil {
		panic("BUG: frame: zstd encoder options rejected: " + err.Error())
	}
	return e
}

// encoderOptions are the options of every encoder the package keeps.
func encoderOptions(level zstd.EncoderLevel, fast bool) []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), // the frame header's CRC-32C covers the payload
		zstd.WithZeroFrames(true),
		zstd.WithNoEntropyCompression(fast),
	}
}

func newDecoder() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		// Decode at most cap(dst)-len(dst) bytes: the caller sizes dst
		// to the header's raw length, so a zip bomb stops there.
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(HardMaxFrame),
		zstd.WithDecoderMaxWindow(HardMaxFrame),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		panic("BUG: frame: zstd decoder options rejected: " + err.Error())
	}
	return d
}

// Encoder builds DATA frames. It keeps a scratch buffer between calls; it is
// not safe for concurrent use (use one per goroutine).
type Encoder struct {
	// Level is the zstd level used when compressing; the zero value means
	// zstd.SpeedDefault, values beyond zstd.SpeedBestCompression mean that.
	Level zstd.EncoderLevel
	// Dict, if not nil, is the dictionary compressed payloads use (the
	// receiver must hold it: a client uses one its server's WELCOME
	// lists). Uncompressed payloads ignore it.
	Dict *Dict
	// FastDecode compresses without entropy-coding the literals (zstd's
	// Huffman stage; matches are found as at Level): every zstd decoder
	// reads the result, and decodes it several times faster. A 10-message
	// packet of log lines decodes 3× faster for a quarter more bytes
	// (PERFORMANCE.md "Literals without entropy coding"): for analyzers
	// whose CPU is scarcer than the network.
	FastDecode bool
	raw        []byte
}

// AppendData appends a DATA frame carrying p with sequence seq to dst. With
// compress set the payload is zstd-compressed, unless compression would not
// make it smaller, in which case it is sent as is. p should have passed
// Validate against the receiver's limits.
func (e *Encoder) AppendData(dst []byte, seq uint64, p *Packet, compress bool) []byte {
	if !compress {
		start := len(dst)
		dst = AppendHeader(dst, TypeData, 0, seq, uint32(len(p.Messages)), 0, 0, 0)
		dst = AppendPacket(dst, p)
		payload := dst[start+HeaderSize:]
		n := uint32(len(payload))
		fillLengths(Header(dst[start:start+HeaderSize]), 0, n, n, Checksum(payload))
		return dst
	}
	e.raw = AppendPacket(e.raw[:0], p)
	return e.AppendCompressed(dst, seq, uint32(len(p.Messages)), e.raw)
}

// AppendCompressed appends a DATA frame whose payload is raw (an encoded
// packet of count messages) compressed with zstd, or raw itself if
// compression would not make it smaller.
func (e *Encoder) AppendCompressed(dst []byte, seq uint64, count uint32, raw []byte) []byte {
	level := e.Level
	switch {
	case level == 0:
		level = zstd.SpeedDefault
	case level < zstd.SpeedFastest:
		level = zstd.SpeedFastest
	case level > zstd.SpeedBestCompression:
		// Out of range for the pool index: use the best there is, as
		// zstd.EncoderLevelFromZstd does for high levels.
		level = zstd.SpeedBestCompression
	}
	start := len(dst)
	dst = AppendHeader(dst, TypeData, 0, seq, count, 0, 0, 0)
	pool := encoders.pool(level, e.FastDecode)
	if e.Dict != nil {
		pool = e.Dict.encoders.pool(level, e.FastDecode)
	}
	enc := pool.get()
	dst = enc.EncodeAll(raw, dst)
	pool.put(enc)
	payload := dst[start+HeaderSize:]
	if len(payload) >= len(raw) {
		dst = append(dst[:start+HeaderSize], raw...)
		n := uint32(len(raw))
		fillLengths(Header(dst[start:start+HeaderSize]), 0, n, n, Checksum(raw))
		return dst
	}
	fillLengths(Header(dst[start:start+HeaderSize]), FlagZstd, uint32(len(payload)), uint32(len(raw)), Checksum(payload))
	return dst
}

func fillLengths(h Header, f Flags, n, raw, crc uint32) {
	h[4] = byte(f)
	binary.BigEndian.PutUint32(h[8:12], n)
	binary.BigEndian.PutUint32(h[12:16], raw)
	binary.BigEndian.PutUint32(h[28:32], crc)
}

// Decoder turns DATA payloads back into packets under a set of limits. It
// keeps a decompression buffer between calls; it is not safe for concurrent
// use (use one per goroutine).
type Decoder struct {
	Limits Limits
	// Dicts are the dictionaries payloads may be compressed with; one
	// whose zstd frame names another is refused (ErrUnknownDictionary).
	Dicts Dicts
	raw   []byte
}

// NewDecoder returns a Decoder enforcing lim.
func NewDecoder(lim Limits) *Decoder { return &Decoder{Limits: lim} }

// Raw returns the raw (uncompressed) packet bytes of a DATA frame whose
// header h passed ParseHeader and whose payload passed h.Check. For an
// uncompressed frame that is payload itself; otherwise the payload is
// decompressed into the Decoder's buffer, which is valid until the next
// call. The buffer never grows beyond the header's raw length (and 64
// bytes, see rawSlack), itself bounded by Limits.MaxRaw, whatever the zstd
// frame claims.
//
// Memory: a zstd frame that declares its content size (this package's
// encoder always does) costs at most the raw length. One that does not
// (streaming compressors) is decoded block by block and stopped by the
// buffer's capacity; the block that overflows it makes the zstd library
// copy its output once, so a bomb of that kind costs up to about
// 2.3 × the raw length, transiently.
func (d *Decoder) Raw(h Header, payload []byte) ([]byte, error) {
	if h.Traced() {
		if len(payload) <= TraceSize {
			return nil, ErrBadLength
		}
		payload = payload[TraceSize:]
	}
	if !h.Compressed() {
		return payload, nil
	}
	rawLen := h.RawLen()
	if rawLen > d.Limits.MaxRaw {
		return nil, ErrRawTooLarge
	}
	// A zstd frame that declares more content than the header's raw length
	// is a bomb or a lie: refuse it before allocating the output buffer.
	// (Less is not an error yet: the payload may hold more frames.)
	pool := &decoders
	var dict *Dict
	var zh zstd.Header
	declared := false
	if zh.Decode(payload) == nil {
		declared = zh.HasFCS
		if declared && zh.FrameContentSize > uint64(rawLen) {
			return nil, ErrRawTooLarge
		}
		if zh.DictionaryID != 0 {
			if dict = d.Dicts.Find(zh.DictionaryID); dict == nil {
				return nil, &unknownDictError{zh.DictionaryID}
			}
			pool = &dict.decoders
		}
	}
	room := rawLen
	if declared {
		room += rawSlack
	}
	if uint32(cap(d.raw)) < room {
		d.raw = make([]byte, 0, room)
	}
	dec := pool.get()
	out, err := dec.DecodeAll(payload, d.raw[:0:room])
	pool.put(dec)
	if err != nil {
		switch {
		case errors.Is(err, zstd.ErrUnknownDictionary):
			// A second frame naming a dictionary (senders send one frame).
			return nil, ErrUnknownDictionary
		case err == zstd.ErrDecoderSizeExceeded || err == zstd.ErrWindowSizeExceeded || decodesPast(payload, rawLen, dict):
			return nil, ErrRawTooLarge
		}
		return nil, ErrBadCompression
	}
	switch {
	case uint32(len(out)) > rawLen: // into the slack
		return nil, ErrRawTooLarge
	case uint32(len(out)) != rawLen:
		return nil, ErrRawMismatch
	}
	return out, nil
}

// FastDecoded reports whether the payload of DATA frame h is zstd whose
// first block is compressed with literals that are not entropy-coded, as
// Encoder.FastDecode makes them (or as zstd leaves literals that do not
// gain from a Huffman table). A proxy that compresses a packet again
// keeps its sender's choice with it.
func FastDecoded(h Header, payload []byte) bool {
	if !h.Compressed() {
		return false
	}
	if h.Traced() {
		if len(payload) <= TraceSize {
			return false
		}
		payload = payload[TraceSize:]
	}
	var zh zstd.Header
	if zh.Decode(payload) != nil || !zh.FirstBlock.OK || len(payload) < zh.HeaderSize+4 {
		return false
	}
	// Block_Type, bits 1-2 of the 3-byte Block_Header, must be 2,
	// Compressed (zstd.Header calls an RLE block compressed too, and it has
	// no literals section); then the Literals_Section_Header's low 2 bits
	// are the Literals_Block_Type, 0 Raw, 1 RLE, 2 Compressed, 3 Treeless
	// (RFC 8878 3.1.1.2, 3.1.1.3.1.1).
	b := payload[zh.HeaderSize:]
	return (b[0]>>1)&3 == 2 && b[3]&3 <= 1
}

// rawSlack is the capacity past the raw length that Raw gives the zstd
// decoder: with that much room after the output, the library copies
// literals and matches in 16-byte blocks rather than byte-exact (its
// "safe" copies), which makes a 10-message packet decode about 8% faster.
// Only for a frame that declares its content size (the Go encoder's do),
// which the decoder holds it to: one that does not is decoded into the raw
// length exactly, so that a bomb of that kind stops there. A frame that
// decodes into the slack is past its raw length, and refused as such.
const rawSlack = 64

// Decode decompresses (if needed) and decodes the packet of a DATA frame
// into p. The packet's byte fields alias payload or the Decoder's buffer:
// they are valid until the next call and until payload is reused.
func (d *Decoder) Decode(h Header, payload []byte, p *Packet) error {
	raw, err := d.Raw(h, payload)
	if err != nil {
		return err
	}
	return DecodePacket(raw, h.Count(), &d.Limits, p)
}

// decodesPast reports whether payload is zstd that decodes to more than n
// bytes. DecodeAll's errors do not always say so: a frame with no content
// size whose first block overflows the buffer (zstd's command-line tool
// makes one from 100 KB of zeros: an RLE block) fails with "output bigger
// than max block size", which is a zip bomb, not bad compression
// (PROTOCOL.md 8: raw_too_large). Only called on the error path, it
// decodes at most n+1 bytes as a stream.
func decodesPast(payload []byte, n uint32, dict *Dict) bool {
	opts := []zstd.DOption{
		zstd.WithDecoderConcurrency(1), // synchronous: no goroutines
		zstd.WithDecoderMaxMemory(HardMaxFrame),
		zstd.WithDecoderMaxWindow(HardMaxFrame),
		zstd.WithDecoderLowmem(true),
	}
	if dict != nil {
		opts = append(opts, zstd.WithDecoderDicts(dict.raw))
	}
	d, err := zstd.NewReader(bytes.NewReader(payload), opts...)
	if err != nil {
		return false
	}
	defer d.Close()
	k, _ := io.CopyN(io.Discard, d, int64(n)+1)
	return k > int64(n)
}

// unknownDictError is ErrUnknownDictionary naming the dictionary, for the
// ERROR's reason (an error path: it may allocate).
type unknownDictError struct{ id uint32 }

func (e *unknownDictError) Error() string {
	return fmt.Sprintf("frame: the zstd payload names dictionary %d, which this receiver does not hold", e.id)
}

func (e *unknownDictError) Unwrap() error { return ErrUnknownDictionary }
