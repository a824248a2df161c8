package frame

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C (Castagnoli) of a payload, as carried in the
// header. It uses the CPU's CRC32 instruction where there is one.
func Checksum(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// ErrShortHeader is returned by ParseHeader when fewer than HeaderSize bytes
// are given. It is not a protocol violation: the caller waits for more.
var ErrShortHeader = errors.New("frame: fewer than 32 bytes buffered for the header")

// Header is a view of the 32 header bytes of a frame. It is valid as long as
// the bytes it views are; copy them to keep it longer.
type Header []byte

// badMagic says what a stream that is not logdist frames looks like, for
// the two mistakes a peer makes most: TLS on a plaintext port, HTTP.
func badMagic(b []byte) error {
	switch {
	case b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04: // a TLS record: handshake, version 3.x
		return ErrTLSOnPlaintext
	case string(b[:4]) == "GET " || string(b[:4]) == "POST" || string(b[:4]) == "PUT " || string(b[:4]) == "HEAD":
		return ErrHTTPOnFramePort
	}
	return ErrBadMagic
}

// Magic returns bytes 0-1 of the header.
func (h Header) Magic() uint16 { return binary.BigEndian.Uint16(h[0:2]) }

// Version returns the protocol version byte.
func (h Header) Version() uint8 { return h[2] }

// Type returns the frame type.
func (h Header) Type() Type { return Type(h[3]) }

// Flags returns the flags byte.
func (h Header) Flags() Flags { return Flags(h[4]) }

// Compressed reports whether the payload is a zstd frame.
func (h Header) Compressed() bool { return Flags(h[4])&FlagZstd != 0 }

// Traced reports whether the payload begins with a TraceContext.
func (h Header) Traced() bool { return Flags(h[4])&FlagTrace != 0 }

// PayloadLen returns the number of payload bytes following the header.
func (h Header) PayloadLen() uint32 { return binary.BigEndian.Uint32(h[8:12]) }

// RawLen returns the payload's decompressed size.
func (h Header) RawLen() uint32 { return binary.BigEndian.Uint32(h[12:16]) }

// Seq returns the sequence number.
func (h Header) Seq() uint64 { return binary.BigEndian.Uint64(h[16:24]) }

// Count returns the message count of a DATA frame.
func (h Header) Count() uint32 { return binary.BigEndian.Uint32(h[24:28]) }

// CRC returns the payload checksum.
func (h Header) CRC() uint32 { return binary.BigEndian.Uint32(h[28:32]) }

// FrameLen returns the length of the whole frame: header plus payload.
func (h Header) FrameLen() int { return HeaderSize + int(h.PayloadLen()) }

// SetSeq overwrites the sequence number in place. logdist uses it to
// forward a DATA frame on another connection without re-encoding it.
func (h Header) SetSeq(seq uint64) { binary.BigEndian.PutUint64(h[16:24], seq) }

// Check verifies payload against the header's checksum.
func (h Header) Check(payload []byte) error {
	if Checksum(payload) != h.CRC() {
		return ErrBadChecksum
	}
	return nil
}

// AppendHeader appends a header to dst. crc must be Checksum(payload).
func AppendHeader(dst []byte, t Type, f Flags, seq uint64, count, payloadLen, rawLen, crc uint32) []byte {
	var b [HeaderSize]byte
	binary.BigEndian.PutUint16(b[0:2], Magic)
	b[2] = Version
	b[3] = byte(t)
	b[4] = byte(f)
	binary.BigEndian.PutUint32(b[8:12], payloadLen)
	binary.BigEndian.PutUint32(b[12:16], rawLen)
	binary.BigEndian.PutUint64(b[16:24], seq)
	binary.BigEndian.PutUint32(b[24:28], count)
	binary.BigEndian.PutUint32(b[28:32], crc)
	return append(dst, b[:]...)
}

// AppendFrame appends a whole uncompressed frame: header and payload.
func AppendFrame(dst []byte, t Type, seq uint64, count uint32, payload []byte) []byte {
	n := uint32(len(payload))
	dst = AppendHeader(dst, t, 0, seq, count, n, n, Checksum(payload))
	return append(dst, payload...)
}

// ParseHeader checks the first HeaderSize bytes of b and returns them as a
// Header. It checks magic, version, type, flags, reserved bytes, and every
// length against lim and the frame type's rules — everything that can be
// known before the payload is buffered — and never allocates. The checksum
// is checked later, with Header.Check, once the payload is there.
//
// It returns ErrShortHeader if b is shorter than a header, or one of the
// sentinel *Error values. Errors with a fatal code (CodeOf(err).Fatal())
// mean the stream cannot be trusted. The others (ErrRawTooLarge,
// ErrTooManyMessages, ErrCountMismatch) come only from a DATA header whose
// sequence and payload length are valid: the receiver can skip the payload,
// reject that one packet and go on.
func ParseHeader(b []byte, lim *Limits) (Header, error) {
	if len(b) < HeaderSize {
		return nil, ErrShortHeader
	}
	h := Header(b[:HeaderSize])
	if h.Magic() != Magic {
		return nil, badMagic(b)
	}
	if h.Version() != Version {
		return nil, ErrBadVersion
	}
	t := h.Type()
	if !t.Valid() {
		return nil, ErrBadType
	}
	if h[5]|h[6]|h[7] != 0 {
		return nil, ErrReserved
	}
	f := h.Flags()
	if f&^flagsKnown != 0 || (f != 0 && t != TypeData) {
		return nil, ErrBadFlags
	}
	n, raw, count := h.PayloadLen(), h.RawLen(), h.Count()
	switch t {
	case TypeData:
		if n > lim.MaxFrame {
			return nil, ErrFrameTooLarge
		}
		body := n // the packet's bytes as sent: the payload after a trace context
		if f&FlagTrace != 0 {
			if n <= TraceSize {
				return nil, ErrBadLength
			}
			body -= TraceSize
		}
		if count == 0 || n == 0 || h.Seq() == 0 || (f&FlagZstd == 0 && raw != body) {
			return nil, ErrBadLength
		}
		// The frame is well formed and its length within bounds: what
		// follows rejects this packet only (codes >= 0x100). The stream
		// stays in sync, the receiver skips the payload and answers ERROR
		// with this frame's sequence (Reader.Next does the skipping).
		if err := PacketError(h, lim); err != nil {
			return nil, err
		}
	case TypeAck, TypePing, TypePong:
		if n != 0 || raw != 0 || count != 0 {
			return nil, ErrBadLength
		}
	case TypeSack:
		if n > MaxControlPayload {
			return nil, ErrControlTooLarge
		}
		if n == 0 || n%sackRangeSize != 0 || raw != n || count != 0 {
			return nil, ErrBadLength
		}
	default:
		if n > MaxControlPayload {
			return nil, ErrControlTooLarge
		}
		if raw != n || count != 0 {
			return nil, ErrBadLength
		}
	}
	return h, nil
}

// PacketError applies the per-packet rules of a DATA header (PROTOCOL.md
// 3.1 rules 8-10) and returns the first one broken, or nil: raw length
// over MaxRaw (ErrRawTooLarge), count over MaxMessages
// (ErrTooManyMessages), a count the raw length cannot hold
// (ErrCountMismatch). Breaking one rejects that packet, not the
// connection. ParseHeader applies them too; a receiver that admitted the
// header despite them calls this to reject the packet.
func PacketError(h Header, lim *Limits) error {
	raw, count := h.RawLen(), h.Count()
	if raw > lim.MaxRaw {
		return ErrRawTooLarge
	}
	if count > lim.MaxMessages {
		return ErrTooManyMessages
	}
	// Every message takes at least messageFixed raw bytes, so a count
	// the raw length cannot hold is a lie a forwarder can see without
	// decompressing (it counts and balances by this header).
	if uint64(raw) < packetFixed+uint64(count)*messageFixed {
		return ErrCountMismatch
	}
	return nil
}
