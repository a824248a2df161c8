package spool

import (
	"encoding/binary"
	"fmt"
	"io"
)

// segReader reads one segment through a window: large sequential reads,
// and a record's bytes are read only once the file is known to hold them,
// so a length field that lies costs nothing. The window grows to the
// largest record actually read (at most RecordHeaderSize + MaxBody + 8)
// and is kept for the next segment.
type segReader struct {
	r    io.ReaderAt
	size int64  // bytes of the segment to read
	buf  []byte // the window's storage
	win  []byte // buf[:n]: the bytes of the file at wOff
	wOff int64
	// read counts the bytes read from files, checked the records whose
	// CRC was computed (tests).
	read, checked int64
}

// readAhead is the least a window read asks for.
const readAhead = 256 << 10

func (s *segReader) reset(r io.ReaderAt, size int64) {
	s.r, s.size, s.win, s.wOff = r, size, nil, 0
}

// rebind goes on reading the segment read before, through r and now
// size bytes long, keeping the window: a segment's bytes never change
// once written, it only grows.
func (s *segReader) rebind(r io.ReaderAt, size int64) {
	if size < s.wOff+int64(len(s.win)) {
		s.reset(r, size)
		return
	}
	s.r, s.size = r, size
}

// get returns the n bytes at off, valid until the next get; off+n must
// not pass size.
func (s *segReader) get(off int64, n int) ([]byte, error) {
	if off >= s.wOff && off+int64(n) <= s.wOff+int64(len(s.win)) {
		p := off - s.wOff
		return s.win[p : p+int64(n)], nil
	}
	want := min(max(int64(n), readAhead), s.size-off)
	if int64(cap(s.buf)) < want {
		s.buf = make([]byte, want)
	}
	b := s.buf[:want]
	k, err := s.r.ReadAt(b, off)
	s.read += int64(k)
	if int64(k) < want {
		s.win = nil
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
		return nil, fmt.Errorf("cannot read %d bytes at offset %d: %w", want, off, err)
	}
	s.win, s.wOff = b, off
	return b[:n], nil
}

// rawRec is a record as found in a segment. body aliases the window.
type rawRec struct {
	off   int64
	size  int64 // RecordHeaderSize + len(body)
	seq   uint64
	kind  Kind
	flags uint8
	body  []byte
	ad    []byte // seq and kind as the header holds them: a seal's additional data
}

type recStatus uint8

const (
	recOK        recStatus = iota
	recEnd                 // no bytes left
	recPartial             // fewer bytes left than a record header
	recBadLength           // a length no record can have
	recPastEnd             // a length running past the segment's end
	recBadCRC              // a length that fits, a checksum that does not match
)

// record reads the record at off.
func (s *segReader) record(off int64) (rawRec, recStatus, error) {
	left := s.size - off
	if left <= 0 {
		return rawRec{}, recEnd, nil
	}
	if left < RecordHeaderSize {
		return rawRec{off: off, size: left}, recPartial, nil
	}
	h, err := s.get(off, RecordHeaderSize)
	if err != nil {
		return rawRec{}, 0, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	r := rawRec{off: off, size: 8 + int64(n)}
	if n < recordFixed || n > maxLength {
		return r, recBadLength, nil
	}
	if r.size > left {
		return r, recPastEnd, nil
	}
	b, err := s.get(off, int(r.size))
	if err != nil {
		return rawRec{}, 0, err
	}
	s.checked++
	if binary.BigEndian.Uint32(b[4:8]) != checksum(b[8:]) {
		return r, recBadCRC, nil
	}
	r.seq = binary.BigEndian.Uint64(b[8:16])
	r.kind = Kind(b[16])
	r.flags = b[17]
	r.body = b[RecordHeaderSize:]
	r.ad = b[8 : 8+adSize]
	return r, recOK, nil
}

// stretch is a damaged run of a segment's bytes.
type stretch struct {
	off, end int64
	kind     DamageKind // DamageChecksum, DamageLength or DamagePartial
	detail   string
	toEnd    bool // no intact record follows it in the segment
}

// scan walks the segment's records from the end of its header, in file
// order: rec for each intact one, bad for each damaged stretch. prev is
// the sequence before the segment's first; it bounds resynchronisation.
//
// Damage is skipped as narrowly as the bytes allow: a record whose
// checksum fails but whose length leads to an intact record is that
// record alone; otherwise (a length out of range, past the end, or
// landing on no record) the bytes are searched for the next intact
// record, one whose length fits, whose kind is known, whose sequence
// could follow prev given the bytes skipped, and whose CRC-32C matches.
// Only when there is none is the rest of the segment lost.
func (s *segReader) scan(prev uint64, rec func(*rawRec) error, bad func(stretch) error) error {
	return s.scanFrom(FileHeaderSize, prev, rec, bad)
}

// scanFrom is scan from off, a record's start (where an earlier scan
// stopped), prev the sequence of the last record before it.
func (s *segReader) scanFrom(off int64, prev uint64, rec func(*rawRec) error, bad func(stretch) error) error {
	for off < s.size {
		r, st, err := s.record(off)
		if err != nil {
			return err
		}
		switch st {
		case recOK:
			if err := rec(&r); err != nil {
				return err
			}
			prev = max(prev, r.seq)
			off += r.size
			continue
		case recPartial:
			if err := bad(stretch{off: off, end: s.size, kind: DamagePartial, toEnd: true,
				detail: fmt.Sprintf("%d bytes, fewer than a record header", r.size)}); err != nil {
				return err
			}
			return nil
		case recBadCRC:
			next := off + r.size
			ok, err := s.intactAt(next, prev, off)
			if err != nil {
				return err
			}
			if next == s.size || ok {
				if err := bad(stretch{off: off, end: next, kind: DamageChecksum, toEnd: next == s.size,
					detail: "record CRC-32C does not match"}); err != nil {
					return err
				}
				off = next
				continue
			}
		}
		q, err := s.resync(off+1, prev, off)
		if err != nil {
			return err
		}
		st2 := stretch{off: off, end: q, kind: DamageLength}
		if q < 0 {
			st2.end, st2.toEnd = s.size, true
		}
		switch st {
		case recBadLength:
			st2.detail = fmt.Sprintf("length %d out of range", r.size-8)
		case recPastEnd:
			st2.detail = fmt.Sprintf("length %d runs past the segment's end (%d bytes left)", r.size-8, s.size-off-8)
		case recBadCRC:
			st2.detail = fmt.Sprintf("record CRC-32C does not match, and its length %d leads to no record", r.size-8)
		}
		if err := bad(st2); err != nil {
			return err
		}
		off = st2.end
	}
	return nil
}

// intactAt reports whether an intact record that could follow prev
// starts at off, after damage that began at from.
func (s *segReader) intactAt(off int64, prev uint64, from int64) (bool, error) {
	r, st, err := s.record(off)
	if err != nil || st != recOK {
		return false, err
	}
	return r.kind.Valid() && r.seq > prev && r.seq-prev <= 1+uint64(off-from)/RecordHeaderSize, nil
}

// resync returns the offset of the first intact record at or after from
// that could follow prev, or -1. The cheap checks (length, kind,
// sequence) reject almost every offset before the checksum is computed.
func (s *segReader) resync(from int64, prev uint64, dmg int64) (int64, error) {
	for q := from; q+RecordHeaderSize <= s.size; q++ {
		h, err := s.get(q, RecordHeaderSize)
		if err != nil {
			return -1, err
		}
		n := binary.BigEndian.Uint32(h[0:4])
		if n < recordFixed || n > maxLength || q+8+int64(n) > s.size || !Kind(h[16]).Valid() {
			continue
		}
		seq := binary.BigEndian.Uint64(h[8:16])
		if seq <= prev || seq-prev > 1+uint64(q-dmg)/RecordHeaderSize {
			continue
		}
		ok, err := s.intactAt(q, prev, dmg)
		if err != nil {
			return -1, err
		}
		if ok {
			return q, nil
		}
	}
	return -1, nil
}
