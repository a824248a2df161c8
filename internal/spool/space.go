package spool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A full disk must never keep the spool from giving space back. Freeing
// space means removing delivered segments, and a segment goes only once
// the ledger that makes it unnecessary is on disk; writing the ledger
// takes space (acks.tmp beside acks, until the rename). So a file of
// reserveBytes, "acks.reserve", is kept beside the ledger: when the
// ledger cannot be written for want of space, the reserve is removed,
// the ledger written into the room it leaves, and the delivered segments
// removed; a later housekeeping makes the reserve again once there is
// room for it. Until then Append leaves that room free (where the free
// space can be asked): were the segments to take it, the next full disk
// would find no reserve.
const (
	reserveFile  = "acks.reserve"
	reserveTemp  = "acks.reserve.tmp" // being made (removed at Open, like every *.tmp)
	reserveBytes = 64 << 10           // a ledger of 4,000 spans beside the one it replaces
	// reserveSlack is kept free beyond the reserve while it is missing:
	// blocks a batch takes beyond its bytes, metadata.
	reserveSlack = 16 << 10
	// reserveRetry is the least time between two attempts to make the
	// reserve that failed (where the free space cannot be asked, or a
	// quota the free space does not show refused it).
	reserveRetry = 30 * time.Second
)

// isNoSpace reports whether err says the disk, or the user's quota, is
// full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// makeReserve writes the reserve: a temporary file, synced, renamed. Its
// bytes are pseudo-random so that a compressing file system allocates
// them all.
func makeReserve(dir string) error {
	tmp := filepath.Join(dir, reserveTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	b := make([]byte, reserveBytes)
	for i := 0; i+8 <= len(b); i += 8 {
		v := rand.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	_, err = f.Write(b)
	if err == nil {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, reserveFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot make the ledger's reserve %s: %w", reserveFile, err)
	}
	return nil
}

// openReserve makes the reserve at Open if it is missing (or not whole).
// Failing to is no reason to refuse the spool: it is logged, and
// housekeeping tries again once there is room.
func (d *Dir) openReserve() {
	if fi, err := os.Stat(filepath.Join(d.dir, reserveFile)); err == nil && fi.Mode().IsRegular() && fi.Size() >= reserveBytes {
		return
	}
	if err := makeReserve(d.dir); err != nil {
		d.setReserveGone(true)
		d.log.Warn("cannot make the ack ledger's reserve: a full disk may keep delivered segments from being removed until it exists; housekeeping retries", "err", err)
	}
}

// writeLedgerSpare writes the ledger; if the disk (or quota) is full, it
// removes the reserve and tries again. hkMu held (or Open).
func (d *Dir) writeLedgerSpare(l *ledger) error {
	sync := d.cfg.Sync != SyncNever
	err := writeLedger(d.dir, l, sync)
	if err == nil || !isNoSpace(err) {
		return err
	}
	rerr := os.Remove(filepath.Join(d.dir, reserveFile))
	if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return errors.Join(err, rerr)
	}
	if !d.reserveGone {
		d.setReserveGone(true)
		d.reserveAt = time.Time{}
		d.log.Warn("disk full: the ack ledger's reserve was given up to write the ledger (and remove delivered segments); it is made again once there is room")
	}
	if rerr != nil {
		return err // there was no reserve to give
	}
	return writeLedger(d.dir, l, sync)
}

// tendReserve makes the reserve again once it was given up and there is
// room for it (or, where the free space cannot be asked, every
// reserveRetry). hkMu held.
func (d *Dir) tendReserve() {
	if !d.reserveGone || time.Now().Before(d.reserveAt) {
		return
	}
	if free, ok := freeSpace(d.dir); ok && free < reserveBytes+reserveSlack {
		return
	}
	if err := makeReserve(d.dir); err != nil {
		d.reserveAt = time.Now().Add(reserveRetry)
		d.log.Debug("cannot make the ack ledger's reserve yet", "err", err)
		return
	}
	d.setReserveGone(false)
	d.log.Info("the ack ledger's reserve is made again")
}

// setReserveGone notes whether the reserve is missing; hkMu held (or
// Open).
func (d *Dir) setReserveGone(gone bool) {
	d.reserveGone = gone
	d.reserveLow.Store(gone)
}

// keepsReserveRoom reports whether a batch of n bytes must be refused to
// leave the missing reserve its room; d.mu held.
func (d *Dir) keepsReserveRoom(n int64) bool {
	if !d.reserveLow.Load() {
		return false
	}
	free, ok := freeSpace(d.dir)
	return ok && free-n < reserveBytes+reserveSlack
}
