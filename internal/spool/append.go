package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// writeChunk bounds one write(2) of a batch, and so the encoding buffer.
const writeChunk = 1 << 20

// segWriteAt writes a chunk of records to a segment (a seam for tests
// that make it fail).
var segWriteAt = func(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }

// Append adds records in order and returns the sequence of the last one.
// Each body is checked against its kind (a DATA frame's header and
// length: its payload CRC was checked on receipt, and Replay checks it
// again). With SyncAlways the records are on disk when it returns;
// otherwise they are written, and Durable says when they are on disk.
//
// A batch is all or nothing for the caller: on error none of its records
// is to be counted as stored. (Some may have reached the disk before the
// error: they are marked resolved, so they are never replayed; their
// sequences are not reused.) ErrFull: the cap, or the disk (or the
// user's quota), is full; the spool goes on working once there is room.
func (d *Dir) Append(recs []Record) (uint64, error) {
	if d.cfg.ReadOnly {
		return 0, ErrReadOnly
	}
	for i := range recs {
		r := &recs[i]
		if !r.Kind.Valid() {
			return 0, ErrBadKind
		}
		if d.storedLen(len(r.Body)) > MaxBody {
			return 0, ErrTooLarge
		}
		if err := checkBody(r.Kind, r.Body, false); err != nil {
			return 0, err
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return 0, ErrClosed
	}
	if e := d.failure.Load(); e != nil {
		d.mu.Unlock()
		return 0, *e
	}
	if len(recs) == 0 {
		last := d.next - 1
		d.mu.Unlock()
		return last, nil
	}
	if room := d.room(recs); d.cfg.MaxBytes > 0 && d.bytes+room > d.cfg.MaxBytes {
		d.mu.Unlock()
		return 0, ErrFull
	} else if d.keepsReserveRoom(room) {
		d.mu.Unlock()
		return 0, fmt.Errorf("%w: disk full: the room of the ack ledger's reserve is kept free", ErrFull)
	}
	last, err := d.write(recs)
	if err != nil {
		d.giveUpUnsyncedLocked() // a rotation's fsync failed for want of space
		d.mu.Unlock()
		return 0, err
	}
	seg := d.cur
	gen := d.giveUps.Load()
	d.mu.Unlock()
	switch {
	case d.cfg.Sync == SyncNever:
		d.syncMu.Lock()
		d.advance(last)
		d.syncMu.Unlock()
	case d.cfg.Sync == SyncAlways:
		// Durable first, then giveUps: a give-up bumps giveUps before it
		// advances Durable over what it gave up.
		if d.durable.Load() >= last && d.giveUps.Load() == gen {
			break // another Append's fsync covered these records
		}
		if err := d.syncUpTo(seg, last, true); err != nil {
			if !errors.Is(err, errUnsynced) {
				return 0, err
			}
			// The disk could not take what was written: the records
			// written since the last good fsync, this batch's among them,
			// are given up; none of the batch is kept.
			d.giveUpUnsynced()
			d.resolve(last-uint64(len(recs))+1, last)
			return 0, fmt.Errorf("%w: disk full: %v", ErrFull, err)
		}
	default:
		select { // the background syncer has something to sync
		case d.pending <- struct{}{}:
		default:
		}
	}
	return last, nil
}

// room returns the bytes recs would add, segment headers included; d.mu
// held.
func (d *Dir) room(recs []Record) int64 {
	var total, size int64
	fresh := d.cur == nil
	if !fresh {
		size = d.cur.size
	}
	for i := range recs {
		rs := recordSize(d.storedLen(len(recs[i].Body)))
		if fresh || (size > FileHeaderSize && size+rs > d.cfg.SegmentBytes) {
			total += FileHeaderSize
			size, fresh = FileHeaderSize, false
		}
		total += rs
		size += rs
	}
	return total
}

// write writes recs to the current segment, rotating as they fill it;
// d.mu held.
func (d *Dir) write(recs []Record) (uint64, error) {
	first := d.next
	seq := first
	for i := 0; i < len(recs); {
		rs := recordSize(d.storedLen(len(recs[i].Body)))
		if d.cur == nil || (d.cur.size > FileHeaderSize && d.cur.size+rs > d.cfg.SegmentBytes) {
			if err := d.rotate(seq); err != nil {
				return 0, d.abandonBatch(first, len(recs), err)
			}
		}
		cur := d.cur
		buf := d.buf[:0]
		size := cur.size
		j := i
		for ; j < len(recs); j++ {
			r := &recs[j]
			rs := recordSize(d.storedLen(len(r.Body)))
			if j > i && (size+rs > d.cfg.SegmentBytes || len(buf) >= writeChunk) {
				break
			}
			buf = d.appendRecord(buf, seq+uint64(j-i), r)
			size += rs
		}
		if cap(buf) <= 4*writeChunk {
			d.buf = buf // keep it, unless one huge record grew it
		}
		if _, err := segWriteAt(cur.f, buf, cur.size); err != nil {
			// Cut off what part of the chunk got in (if that fails too,
			// the tail is reported as damage), and let the next batch
			// begin a new segment: the sequences given up must not leave
			// a jump inside one, where a damaged record before it would
			// keep the reader from resynchronising on the records after.
			_ = cur.f.Truncate(cur.size)
			d.retire(cur)
			d.cur = nil
			return 0, d.abandonBatch(first, len(recs), fmt.Errorf("cannot write segment %s: %w", cur.name, err))
		}
		cur.size = size
		d.bytes += int64(len(buf))
		d.mark(cur, seq)
		seq += uint64(j - i)
		d.next = seq
		d.written.Store(seq - 1)
		i = j
	}
	return seq - 1, nil
}

// storedLen is the size on disk of a body of n bytes: sealed, with its
// key id, nonce and tag.
func (d *Dir) storedLen(n int) int {
	if d.cfg.Keys != nil {
		return n + sealOverhead
	}
	return n
}

// appendRecord appends r as record seq to dst, its body sealed if the
// spool has keys.
func (d *Dir) appendRecord(dst []byte, seq uint64, r *Record) []byte {
	if d.cfg.Keys == nil {
		return appendRecord(dst, seq, r.Kind, r.Flags&^FlagSealed, r.Body)
	}
	start := len(dst)
	var h [RecordHeaderSize]byte
	dst = append(dst, h[:]...)
	putRecordHeader(dst[start:], seq, r.Kind, r.Flags|FlagSealed) // seq and kind: the seal's additional data
	dst = d.cfg.Keys.appendSealed(dst, dst[start+8:start+8+adSize], r.Body)
	putRecordHeader(dst[start:], seq, r.Kind, r.Flags|FlagSealed) // now with the length and CRC
	return dst
}

// abandonBatch gives up the sequences of a batch that failed part way:
// those written stay on disk but are resolved, so that they are never
// replayed (the caller counts the batch as not stored); none is reused.
// A full disk (or quota) is ErrFull. d.mu held.
func (d *Dir) abandonBatch(first uint64, n int, err error) error {
	d.next = first + uint64(n)
	d.written.Store(d.next - 1)
	d.resolve(first, d.next-1)
	if isNoSpace(err) {
		return fmt.Errorf("%w: disk full: %v", ErrFull, err)
	}
	return err
}

// mark notes when the records from seq on were appended; d.mu held.
func (d *Dir) mark(s *segment, seq uint64) {
	now := d.cfg.Now().UnixNano()
	if n := len(s.marks); n > 0 && now-s.marks[n-1].t < markEvery {
		return
	}
	if len(s.marks) >= maxMarks {
		k := 0
		for i := 0; i < len(s.marks); i += 2 {
			s.marks[k] = s.marks[i]
			k++
		}
		s.marks = s.marks[:k]
	}
	s.marks = append(s.marks, mark{seq, now})
}

// rotate closes the current segment and begins one whose first record is
// base; d.mu held. Records never straddle segments.
func (d *Dir) rotate(base uint64) error {
	if d.cur != nil {
		err := d.retire(d.cur)
		d.cur = nil
		if err != nil {
			return err
		}
	}
	s := &segment{name: segmentName(base), base: base, created: d.cfg.Now(), size: FileHeaderSize}
	path := filepath.Join(d.dir, s.name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create segment: %w", err)
	}
	if _, err := f.Write(appendFileHeader(d.hdr[:0], base, s.created)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("cannot create segment %s: %w", s.name, err)
	}
	if d.cfg.Sync != SyncNever {
		// The file and its name must be on disk before any record in it
		// can be called durable.
		err := d.datasync(f)
		if err == nil {
			err = syncDir(d.dir)
		}
		if err != nil {
			f.Close()
			if isNoSpace(err) {
				// It holds no record yet: nothing is lost with it.
				os.Remove(path)
				return fmt.Errorf("cannot create segment %s: %w", s.name, err)
			}
			return d.fail(err)
		}
	}
	s.f = f
	s.marks = []mark{{base, s.created.UnixNano()}}
	d.segs = append(d.segs, s)
	d.cur = s
	d.bytes += FileHeaderSize
	return nil
}

// retire syncs (unless SyncNever) and closes the writer's segment s,
// whose last record is d.next-1; d.mu held.
func (d *Dir) retire(s *segment) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if s.closed {
		return nil
	}
	var err error
	if d.cfg.Sync != SyncNever {
		if err = d.datasync(s.f); err == nil {
			d.advance(d.next - 1)
		}
	}
	s.closed = true
	cerr := s.f.Close()
	if err != nil {
		return d.syncFailed(err)
	}
	return cerr
}

// Sync makes everything appended so far durable now, whatever the
// policy (SyncNever included). It blocks on I/O.
func (d *Dir) Sync() error {
	if d.cfg.ReadOnly {
		return ErrReadOnly
	}
	if d.isClosed.Load() {
		return ErrClosed
	}
	if d.cfg.Sync == SyncNever {
		return d.syncAll()
	}
	err := d.syncNow()
	if errors.Is(err, errUnsynced) {
		d.giveUpUnsynced() // the Appends concerned fail with ErrFull
		return fmt.Errorf("%w: disk full: %v", ErrFull, err)
	}
	return err
}

// syncAll fsyncs every segment and the directory: under SyncNever
// nothing was synced when written (Durable already counts it), so
// syncNow's "up to Durable is done" does not hold.
func (d *Dir) syncAll() error {
	d.mu.Lock()
	cur := d.cur
	var paths []string
	for _, s := range d.segs {
		if s != cur {
			paths = append(paths, filepath.Join(d.dir, s.name))
		}
	}
	d.mu.Unlock()
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed as delivered meanwhile
		}
		if err != nil {
			return err
		}
		err = d.datasync(f)
		f.Close()
		if err != nil {
			return d.syncNeverFailed(err)
		}
	}
	d.syncMu.Lock()
	if cur != nil && !cur.closed {
		if err := d.datasync(cur.f); err != nil {
			d.syncMu.Unlock()
			return d.syncNeverFailed(err)
		}
	}
	d.syncMu.Unlock()
	return syncDir(d.dir)
}

// syncNow makes everything written so far durable.
func (d *Dir) syncNow() error {
	d.mu.Lock()
	seg, upto := d.cur, d.next-1
	d.mu.Unlock()
	return d.syncUpTo(seg, upto, false)
}

// syncUpTo makes the records up to upto durable; seg is the segment that
// was current when upto was written. Callers whose records an fsync
// already covered return at once: concurrent SyncAlways appenders share
// one (group commit). errUnsynced: upto is to be given up
// (giveUpUnsynced), or, for an Append's batch (the last of which is
// upto), was.
func (d *Dir) syncUpTo(seg *segment, upto uint64, batch bool) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if batch && d.syncLost.has(upto) {
		return fmt.Errorf("%w (sequence %d given up)", errUnsynced, upto)
	}
	if upto <= d.durable.Load() {
		return nil
	}
	if e := d.failure.Load(); e != nil {
		return *e
	}
	if d.unsynced {
		return fmt.Errorf("%w (sequence %d not synced)", errUnsynced, upto)
	}
	// A segment closed since was synced by its rotation, which made
	// everything up to upto durable (checked above); nil: nothing written.
	if seg != nil && !seg.closed {
		if err := d.datasync(seg.f); err != nil {
			return d.syncFailed(err)
		}
	}
	d.advance(upto)
	return nil
}

// segSync syncs a segment (a seam for tests that make it fail).
var segSync = datasync

// datasync syncs f, a segment, timed and counted.
func (d *Dir) datasync(f *os.File) error {
	start := time.Now()
	err := segSync(f)
	if d.cfg.SyncSeconds != nil {
		d.cfg.SyncSeconds.UpdateDuration(start)
	}
	d.syncs.Add(1)
	return err
}

// advance raises Durable to seq and tells OnDurable; d.syncMu held.
// Not while records are to be given up (unsynced).
func (d *Dir) advance(seq uint64) {
	if seq <= d.durable.Load() || d.unsynced {
		return
	}
	d.durable.Store(seq)
	if d.cfg.OnDurable != nil {
		d.cfg.OnDurable(seq)
	}
}

// errUnsynced: an fsync failed for want of space under SyncAlways; the
// Appends whose records it was to make durable fail with ErrFull.
var errUnsynced = errors.New("spool: fsync failed for want of space")

// syncFailed handles an fsync of a segment that failed; d.syncMu held.
//
// Under SyncAlways, for want of space (ENOSPC, EDQUOT: a file system
// that allocates at writeback, a quota), every record not durable yet
// belongs to an Append that has not returned: those records are given up
// (giveUpUnsynced, by the first Append to see errUnsynced) and their
// Appends fail with ErrFull, and the spool goes on, in a new segment, once
// there is room. Otherwise, or under SyncInterval (whose Appends
// returned records OnDurable has yet to report, and cannot now), the
// failure is for good (fail).
func (d *Dir) syncFailed(err error) error {
	if d.cfg.Sync == SyncAlways && isNoSpace(err) {
		if !d.unsynced {
			d.unsynced = true
			d.log.Warn("spool fsync failed for want of space: the records not yet synced are given up, their Appends fail with ErrFull", "err", err)
		}
		return fmt.Errorf("%w: %w", errUnsynced, err)
	}
	return d.fail(err)
}

// syncNeverFailed handles a failed fsync under SyncNever (Sync): the
// records counted as durable when written, so a full disk only fails
// this Sync; anything else is for good.
func (d *Dir) syncNeverFailed(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: disk full: %v", ErrFull, err)
	}
	return d.fail(err)
}

// giveUpUnsynced gives up the records written since the last good fsync
// once one failed for want of space (SyncAlways; see syncFailed):
// resolved, never replayed, their sequences not reused, and the
// Appends whose records they are fail with ErrFull (syncLost). The
// segment being written is closed: the next Append begins a new one, so
// that no record follows the doubtful bytes in the same segment. It
// does nothing if nothing is to be given up.
func (d *Dir) giveUpUnsynced() {
	d.mu.Lock()
	d.giveUpUnsyncedLocked()
	d.mu.Unlock()
}

// giveUpUnsyncedLocked is giveUpUnsynced with d.mu held: no write is in
// progress, so every record to give up is written.
func (d *Dir) giveUpUnsyncedLocked() {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if !d.unsynced {
		return
	}
	first, last := d.durable.Load()+1, d.next-1
	if cur := d.cur; cur != nil {
		if !cur.closed {
			cur.closed = true
			cur.f.Close()
		}
		d.cur = nil
	}
	d.giveUps.Add(1)
	d.unsynced = false
	if first <= last {
		d.syncLost.add(first, last)
		d.resolve(first, last)
		d.advance(last) // resolved: Durable may pass them
		d.log.Warn("records given up after a failed fsync (disk full)", "first", first, "last", last)
	}
}

// fail records an fsync failure: from here on nothing can be called
// durable (the kernel may have dropped the pages it could not write), so
// every later Append fails.
func (d *Dir) fail(err error) error {
	e := fmt.Errorf("%w: %v; restart to go on from what is on disk", ErrFailed, err)
	if d.failure.CompareAndSwap(nil, &e) {
		d.log.Error("spool fsync failed: appends refused until a restart", "err", err)
	}
	return *d.failure.Load()
}
