package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DropOldest gives up the oldest segment, never the newest (the one being
// written; after Open, the one whose records say where the sequence goes
// on): every record in it not yet acknowledged is resolved, counted in
// Stats.Dropped (not as damage), and taken out of the evicted set; one of
// them the caller holds may still be delivered (its Ack is then a no-op).
// It returns the records dropped and the bytes freed (Stats.Bytes goes
// down by as much); ErrNothingToDrop when only the newest segment
// remains. It is the overflow policy "drop oldest" when Append says
// ErrFull: drop, then append again.
//
// The ack ledger is written first, and the file removed at once even if
// the ledger cannot be written (the disk full: that is when space is
// wanted); the ledger is then retried at the next housekeeping. A
// restart after the ledger was written neither replays the dropped
// sequences nor reports them. A restart before it was (a crash, or a
// disk still full until then) finds them missing below the oldest
// segment and reports them as a DamageGap ("older segments are
// missing"), resolving them: counted as lost, never replayed, and no
// sequence reused, since the newest segment stays.
//
// It blocks on I/O (a ledger write, a removal, their fsyncs unless
// SyncNever) and waits for housekeeping in progress; Append, Ack, Evict
// and Reread may go on meanwhile. If the removal fails, the records stay
// dropped and housekeeping removes the file once the ledger is written.
func (d *Dir) DropOldest() (records uint64, bytes int64, err error) {
	if d.cfg.ReadOnly {
		return 0, 0, ErrReadOnly
	}
	d.hkMu.Lock() // nothing else removes segments meanwhile
	defer d.hkMu.Unlock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return 0, 0, ErrClosed
	}
	if len(d.segs) < 2 {
		d.mu.Unlock()
		return 0, 0, ErrNothingToDrop
	}
	s, last, next, size := d.segs[0], d.segs[1].base-1, d.next, d.segs[0].size
	d.mu.Unlock()

	d.ackMu.Lock()
	records = last - s.base + 1 - d.acks.resolvedIn(s.base, last)
	if d.acks.add(s.base, last) {
		d.ackVer++
		d.evicted.remove(s.base, last)
	}
	ver := d.ackVer
	l := ledger{acks: d.acks.clone(), next: max(next, d.acks.max()+1)}
	d.ackMu.Unlock()
	d.dropped.Add(records)

	sync := d.cfg.Sync != SyncNever
	if err := writeLedger(d.dir, &l, sync); err != nil {
		d.log.Warn("cannot persist the acknowledgements before dropping the oldest segment: dropped anyway, housekeeping retries (a restart before then reports its records as missing)",
			"segment", s.name, "err", err)
	} else {
		d.saved, d.savedVer, d.savedNext = l.acks, ver, l.next
	}
	if err := os.Remove(filepath.Join(d.dir, s.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return records, 0, fmt.Errorf("cannot remove segment %s (its records are dropped): %w", s.name, err)
	}
	d.dropSegment(s)
	if sync {
		if err := syncDir(d.dir); err != nil {
			// The file is gone; the next directory sync persists that.
			d.log.Warn("cannot sync the spool directory after dropping a segment", "segment", s.name, "err", err)
		}
	}
	d.log.Info("oldest segment dropped", "segment", s.name, "records", records, "bytes", size)
	return records, size, nil
}
