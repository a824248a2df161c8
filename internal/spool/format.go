package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"time"

	"github.com/logdist/logdist/frame"
)

// The byte layout of segments, records and dead letters is drawn in the
// package doc (doc.go); the constants below are its numbers.

// Magic is the first eight bytes of every segment file.
const Magic = "LDSPOOL1"

// Version is the segment format version this package writes and reads.
const Version = 1

// FileHeaderSize is the size of a segment's file header in bytes.
const FileHeaderSize = 32

// RecordHeaderSize is the size of a record's fixed part (length, crc, seq,
// kind, flags) in bytes.
const RecordHeaderSize = 18

// recordFixed is the part of the fixed header the length counts: seq,
// kind, flags.
const recordFixed = 10

// MaxBody is the largest record body: a 16 MiB frame and room for a dead
// letter's header. A length field announcing more is damage, whatever the
// file holds: the reader never allocates for it.
const MaxBody = 16<<20 + 8<<10

// maxLength is the largest valid length field.
const maxLength = recordFixed + MaxBody

// DefaultSegmentBytes is the size at which a segment is closed and the
// next one begun.
const DefaultSegmentBytes = 64 << 20

// Record flags (the record header's flags byte). Bits not defined here
// are written as given and passed on as read.
const (
	// FlagSealed: the body is sealed with AES-256-GCM (keys.go): a key
	// id, a nonce, then the body encrypted and its tag. Append sets it
	// (and only it does) when Config.Keys is set.
	FlagSealed uint8 = 0x01
)

// Kind says what a record's body is.
type Kind uint8

// Record kinds. Kind 0 is never valid, so that a zeroed stretch of a file
// (what a crash can leave after the last write) is never a record; kinds
// above KindDeadLetter are reserved.
const (
	KindData       Kind = 1 // body: a DATA frame exactly as an agent sent it
	KindSyslog     Kind = 2 // body: a DATA frame logdist built from syslog messages (their senders cannot resend)
	KindDeadLetter Kind = 3 // body: dead-letter header, then the DATA frame (see DeadLetter)

	maxKind = KindDeadLetter
)

var kindNames = [...]string{KindData: "data", KindSyslog: "syslog", KindDeadLetter: "dead-letter"}

// String returns the kind's name: "data", "syslog", "dead-letter".
func (k Kind) String() string {
	if k >= 1 && k <= maxKind {
		return kindNames[k]
	}
	return "kind-" + strconv.Itoa(int(k))
}

// Valid reports whether k is a kind of this format version.
func (k Kind) Valid() bool { return k >= 1 && k <= maxKind }

// Reason says why a packet became a dead letter.
type Reason uint8

// Dead-letter reasons.
const (
	ReasonRejected Reason = 1 // an analyzer rejected the packet for good (a packet ERROR)
	ReasonRetries  Reason = 2 // no analyzer took it within the retries allowed

	maxReason = ReasonRetries
)

var reasonNames = [...]string{ReasonRejected: "rejected", ReasonRetries: "retries-exhausted"}

// String returns the reason's name: "rejected", "retries-exhausted".
func (r Reason) String() string {
	if r >= 1 && r <= maxReason {
		return reasonNames[r]
	}
	return "reason-" + strconv.Itoa(int(r))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// segmentName is the file name of the segment whose first record is base.
func segmentName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

// parseSegmentName returns the base sequence a segment file name states.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != 24 || name[20:] != ".seg" {
		return 0, false
	}
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(name[:20], 10, 64)
	return v, err == nil && v > 0
}

// appendFileHeader appends a segment header to dst.
func appendFileHeader(dst []byte, base uint64, created time.Time) []byte {
	var h [FileHeaderSize]byte
	copy(h[0:8], Magic)
	binary.BigEndian.PutUint16(h[8:10], Version)
	binary.BigEndian.PutUint64(h[12:20], base)
	binary.BigEndian.PutUint64(h[20:28], uint64(created.UnixNano()))
	binary.BigEndian.PutUint32(h[28:32], checksum(h[:28]))
	return append(dst, h[:]...)
}

// errVersion is a segment written by a newer format: refused, never
// treated as damage (that would throw its records away).
var errVersion = errors.New("spool: segment format version unknown to this logdist")

// parseFileHeader checks a segment header. A header that is not one
// (wrong magic, bad CRC) is damage; a good header of another version is
// errVersion.
func parseFileHeader(h []byte) (base uint64, created time.Time, err error) {
	if len(h) < FileHeaderSize {
		return 0, time.Time{}, fmt.Errorf("header cut short at %d of %d bytes", len(h), FileHeaderSize)
	}
	if string(h[0:8]) != Magic {
		return 0, time.Time{}, fmt.Errorf("bad magic %q", h[0:8])
	}
	if got, want := binary.BigEndian.Uint32(h[28:32]), checksum(h[:28]); got != want {
		return 0, time.Time{}, fmt.Errorf("header checksum %08x, computed %08x", got, want)
	}
	if v := binary.BigEndian.Uint16(h[8:10]); v != Version {
		return 0, time.Time{}, fmt.Errorf("%w: version %d", errVersion, v)
	}
	base = binary.BigEndian.Uint64(h[12:20])
	created = time.Unix(0, int64(binary.BigEndian.Uint64(h[20:28])))
	return base, created, nil
}

// recordSize is the bytes a record with a body of n bytes takes.
func recordSize(n int) int64 { return int64(RecordHeaderSize + n) }

// appendRecord appends one record to dst.
func appendRecord(dst []byte, seq uint64, kind Kind, flags uint8, body []byte) []byte {
	start := len(dst)
	var h [RecordHeaderSize]byte
	dst = append(dst, h[:]...)
	dst = append(dst, body...)
	putRecordHeader(dst[start:], seq, kind, flags)
	return dst
}

// putRecordHeader fills the header of the record r holds (its header's
// room, then its body), checksum included.
func putRecordHeader(r []byte, seq uint64, kind Kind, flags uint8) {
	binary.BigEndian.PutUint32(r[0:4], uint32(recordFixed+len(r)-RecordHeaderSize))
	binary.BigEndian.PutUint64(r[8:16], seq)
	r[16] = byte(kind)
	r[17] = flags
	binary.BigEndian.PutUint32(r[4:8], checksum(r[8:]))
}

// frameLimits admit every DATA frame the protocol can carry: the spool
// checks a frame's structure and checksum, not a receiver's policy (the
// proxy applies its own limits before and after).
var frameLimits = frame.Limits{
	MaxFrame:    frame.HardMaxFrame,
	MaxRaw:      frame.HardMaxFrame,
	MaxMessages: math.MaxUint32,
	MaxField:    math.MaxUint16,
	MaxBody:     math.MaxUint32,
	MaxAttrs:    math.MaxUint16,
}

// checkFrame checks that b is exactly one DATA frame: a header that
// parses and a payload of its length; with crc, the payload's CRC-32C
// too.
func checkFrame(b []byte, crc bool) error {
	if len(b) < frame.HeaderSize {
		return fmt.Errorf("%w: %d bytes, shorter than a frame header", ErrBadFrame, len(b))
	}
	if _, err := frame.ParseHeader(b, &frameLimits); err != nil && frame.CodeOf(err).Fatal() {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	h := frame.Header(b[:frame.HeaderSize])
	if h.Type() != frame.TypeData {
		return fmt.Errorf("%w: a %s frame", ErrBadFrame, h.Type())
	}
	if h.FrameLen() != len(b) {
		return fmt.Errorf("%w: header says %d bytes, body holds %d", ErrBadFrame, h.FrameLen(), len(b))
	}
	if crc && h.Check(b[frame.HeaderSize:]) != nil {
		return fmt.Errorf("%w: the frame's own CRC-32C does not match its payload", ErrBadFrame)
	}
	return nil
}

// checkBody checks a body against its kind: every kind of this version
// carries a DATA frame. Unknown kinds are passed on unchecked.
func checkBody(kind Kind, body []byte, crc bool) error {
	switch kind {
	case KindData, KindSyslog:
		return checkFrame(body, crc)
	case KindDeadLetter:
		dl, err := ParseDeadLetter(body)
		if err != nil {
			return err
		}
		return checkFrame(dl.Frame, crc)
	}
	return nil
}

// DeadLetter is a packet no analyzer would take, with why.
type DeadLetter struct {
	Reason Reason
	// Code is the analyzer's packet error code, 0 if there was none.
	Code frame.Code
	// Time is when the packet was dead-lettered.
	Time time.Time
	// Origin is the spool sequence of the record the packet came from, 0
	// if it was never spooled before.
	Origin uint64
	// Analyzer names the analyzer that refused it last (at most 255
	// bytes), Error is its error text (at most 1024 bytes). Longer ones
	// are clipped by AppendDeadLetter.
	Analyzer, Error []byte
	// Frame is the DATA frame as received.
	Frame []byte
}

const (
	deadFixed       = 19
	maxDeadAnalyzer = 255
	maxDeadError    = 1024
)

// AppendDeadLetter appends the body of a KindDeadLetter record to dst.
func AppendDeadLetter(dst []byte, dl *DeadLetter) []byte {
	var h [deadFixed]byte
	h[0] = byte(dl.Reason)
	binary.BigEndian.PutUint16(h[1:3], uint16(dl.Code))
	binary.BigEndian.PutUint64(h[3:11], uint64(dl.Time.UnixNano()))
	binary.BigEndian.PutUint64(h[11:19], dl.Origin)
	dst = append(dst, h[:]...)
	dst = appendStr16(dst, dl.Analyzer, maxDeadAnalyzer)
	dst = appendStr16(dst, dl.Error, maxDeadError)
	return append(dst, dl.Frame...)
}

func appendStr16(dst, s []byte, max int) []byte {
	s = s[:min(len(s), max)]
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// ParseDeadLetter decodes the body of a KindDeadLetter record. The byte
// fields of the result alias body.
func ParseDeadLetter(body []byte) (DeadLetter, error) {
	bad := func(what string) (DeadLetter, error) {
		return DeadLetter{}, fmt.Errorf("%w: dead letter: %s", ErrBadFrame, what)
	}
	if len(body) < deadFixed+4 {
		return bad("shorter than its fixed part")
	}
	dl := DeadLetter{
		Reason: Reason(body[0]),
		Code:   frame.Code(binary.BigEndian.Uint16(body[1:3])),
		Time:   time.Unix(0, int64(binary.BigEndian.Uint64(body[3:11]))),
		Origin: binary.BigEndian.Uint64(body[11:19]),
	}
	rest := body[deadFixed:]
	str := func(max int) ([]byte, bool) {
		if len(rest) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n > max || len(rest) < 2+n {
			return nil, false
		}
		s := rest[2 : 2+n]
		rest = rest[2+n:]
		return s, true
	}
	var ok bool
	if dl.Analyzer, ok = str(maxDeadAnalyzer); !ok {
		return bad("analyzer name runs past the body or over 255 bytes")
	}
	if dl.Error, ok = str(maxDeadError); !ok {
		return bad("error text runs past the body or over 1024 bytes")
	}
	dl.Frame = rest
	return dl, nil
}
