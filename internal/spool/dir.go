package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dir is a spool kept as segment files in one directory: the file
// implementation of Spool.
//
// Append is meant for one goroutine (a loop's worker); it is safe for
// several, which then share fsyncs. Reread calls are serialised by the
// caller (one at a time); every other method is safe for concurrent use.
// Ack, Durable, Evict and Evicted never wait for I/O (an event loop may
// call them); Stats does no I/O but may wait for an Append's write.
type Dir struct {
	cfg  Config
	dir  string
	log  *slog.Logger
	lock *os.File
	live bool // read-only beside a running writer

	mu     sync.Mutex
	segs   []*segment // by base; the last may be cur
	cur    *segment   // being appended to; nil until the first Append
	next   uint64     // sequence of the next record
	bytes  int64      // the segments' size on disk
	buf    []byte     // Append's encoding buffer
	hdr    [FileHeaderSize]byte
	closed bool

	isClosed atomic.Bool
	written  atomic.Uint64 // last sequence handed to the kernel
	durable  atomic.Uint64
	failure  atomic.Pointer[error] // set once an fsync failed (not for want of space under SyncAlways)
	giveUps  atomic.Uint64         // bumped by giveUpUnsynced before it advances durable

	// syncMu serialises fsyncs, segment closes and OnDurable calls. It
	// guards unsynced and syncLost.
	syncMu sync.Mutex
	// unsynced: an fsync failed for want of space (SyncAlways): the
	// records written since the last good one are to be given up
	// (giveUpUnsynced), and Durable does not advance until they are.
	unsynced bool
	// syncLost: the sequences given up so, whose Appends fail.
	syncLost ackSet

	ackMu   sync.Mutex
	acks    ackSet
	ackVer  uint64 // bumped on every change to acks
	evicted seqSet // unresolved records the caller does not hold: Reread's to read back

	// rrMu serialises Reread; it guards what follows.
	rrMu    sync.Mutex
	cursor  rcursor
	rrRead  segReader           // its window is kept from one call to the next
	rrSeg   *segment            // the segment rrRead read last
	rrSeen  map[dmgKey]struct{} // damage without sequences Reread reported
	rrPlain []byte              // opened bodies

	// hkMu serialises housekeeping: the ledger write and what it allows
	// to be removed.
	hkMu      sync.Mutex
	saved     ackSet // the acknowledgements on disk
	savedVer  uint64
	savedNext uint64
	// reserveGone: acks.reserve is missing (given up to write the
	// ledger on a full disk, or never made); housekeeping makes it again
	// once there is room, not before reserveAt.
	reserveGone bool
	reserveAt   time.Time
	reserveLow  atomic.Bool // reserveGone, for Append (keepsReserveRoom)

	stop, done chan struct{}
	// pending wakes the background syncer (SyncInterval) after an Append.
	pending chan struct{}

	syncs, damaged, lost, dropped, needKey atomic.Uint64
	skipped                                atomic.Int64
}

// segment is one segment file.
type segment struct {
	name    string
	base    uint64
	created time.Time
	hdrErr  error // a damaged header, reported by Replay and Scan

	size  int64  // bytes on disk; guarded by Dir.mu
	marks []mark // when records were appended; guarded by Dir.mu

	f      *os.File // the writer's, while cur
	closed bool     // f synced (by policy) and closed; guarded by Dir.syncMu
}

// mark says that the records from seq on were appended at t (Unix ns).
type mark struct {
	seq uint64
	t   int64
}

// markEvery is how far apart in time marks are taken, and so how
// precise Stats.OldestAge is; maxMarks bounds them per segment (past it
// every other one is dropped).
const (
	markEvery = int64(time.Second)
	maxMarks  = 1024
)

// Open opens the spool in dir, creating it unless cfg.ReadOnly. It cuts
// the torn tail of the newest segment (reported to cfg.OnDamage) and
// starts the background sync and housekeeping. Open does not read the
// whole spool: Replay does, reporting damage as it meets it.
func Open(dir string, cfg Config) (*Dir, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReadOnly {
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("cannot open spool %s: %w", dir, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("cannot open spool %s: not a directory", dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create spool directory: %w", err)
	}
	lock, live, err := lockDir(dir, !cfg.ReadOnly)
	if err != nil {
		return nil, err
	}
	d := &Dir{cfg: cfg, dir: dir, log: cfg.Log.With("component", "spool", "dir", dir), lock: lock, live: live}
	if err := d.load(); err != nil {
		d.closeFiles()
		return nil, fmt.Errorf("cannot open spool %s: %w", dir, err)
	}
	if !cfg.ReadOnly {
		d.openReserve()
		d.stop, d.done = make(chan struct{}), make(chan struct{})
		d.pending = make(chan struct{}, 1)
		go d.run()
	}
	return d, nil
}

// load reads the ack ledger and the segments' headers, and finds where
// the newest segment's intact records end.
func (d *Dir) load() error {
	l, found, err := readLedger(d.dir)
	var bad *ledgerError
	switch {
	case errors.As(err, &bad):
		d.report(Damage{Kind: DamageAcks, Detail: bad.Error() + ": every record is replayed (duplicates possible)"})
		l, found = ledger{}, false
		d.ackVer++ // rewrite it at the first housekeeping
	case err != nil:
		return err
	}
	d.acks = l.acks.clone()
	if found {
		d.saved, d.savedNext = l.acks, l.next
	}

	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if base, ok := parseSegmentName(name); ok && e.Type().IsRegular() {
			d.segs = append(d.segs, &segment{name: name, base: base})
		} else if strings.HasSuffix(name, ".tmp") && !d.cfg.ReadOnly {
			os.Remove(filepath.Join(d.dir, name)) // an interrupted ledger write or repair
		}
	}
	slices.SortFunc(d.segs, func(a, b *segment) int { return cmpUint(a.base, b.base) })
	for _, s := range d.segs {
		if err := d.readHeader(s); err != nil {
			return err
		}
		d.bytes += s.size
	}

	next := max(uint64(1), l.next, d.acks.max()+1)
	if n := len(d.segs); n > 0 {
		if first := d.segs[0].base; first > 1 && !d.acks.covers(1, first-1) {
			if found {
				dmg := Damage{Kind: DamageGap, Segment: d.segs[0].name, FirstSeq: d.acks.floor + 1, LastSeq: first - 1,
					Detail: "older segments are missing, their records not acknowledged (removed by hand?)"}
				if !d.cfg.ReadOnly {
					dmg.Repair = "marked lost"
				}
				d.report(dmg)
			}
			d.acks.add(1, first-1)
			d.ackVer++
		}
		newest, err := d.openNewest(l.next)
		if err != nil {
			return err
		}
		next = max(next, newest)
	}
	d.next = next
	d.written.Store(next - 1)
	d.durable.Store(next - 1)
	if !d.cfg.ReadOnly {
		// Nothing is held yet: every record not resolved waits for Reread.
		d.evicted = unresolved(&d.acks, next-1)
	}
	return nil
}

// readHeader reads s's size and header. A header of an unknown version
// stops Open: its records are not ours to judge.
func (d *Dir) readHeader(s *segment) error {
	f, err := os.Open(filepath.Join(d.dir, s.name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	s.size = fi.Size()
	var h [FileHeaderSize]byte
	n, _ := f.ReadAt(h[:], 0)
	base, created, err := parseFileHeader(h[:n])
	switch {
	case errors.Is(err, errVersion):
		return fmt.Errorf("segment %s: %w (a newer logdist wrote it: run that one, or move the directory away)", s.name, err)
	case err != nil:
		s.hdrErr, s.created = err, fi.ModTime()
	case base != s.base:
		s.hdrErr, s.created = fmt.Errorf("header says base %d, the name %d", base, s.base), created
	default:
		s.created = created
	}
	s.marks = []mark{{s.base, s.created.UnixNano()}}
	return nil
}

// openNewest reads the newest segment to the end, and (unless read-only)
// cuts its torn tail, or removes it if it holds no intact record. It
// returns the next sequence the segment implies; lost sequences are
// resolved and reported.
func (d *Dir) openNewest(ledgerNext uint64) (uint64, error) {
	s := d.segs[len(d.segs)-1]
	mode := os.O_RDWR
	if d.cfg.ReadOnly {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(filepath.Join(d.dir, s.name), mode, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var (
		last    = s.base - 1 // last intact sequence
		torn    *stretch
		r       segReader
		hasRecs bool
	)
	r.reset(f, s.size)
	err = r.scan(s.base-1, func(rr *rawRec) error {
		last, hasRecs, torn = max(last, rr.seq), true, nil
		return nil
	}, func(st stretch) error {
		if st.toEnd {
			torn = &st
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if s.size < FileHeaderSize {
		torn = &stretch{off: 0, end: s.size, detail: fmt.Sprintf("segment of %d bytes, shorter than its header", s.size)}
	}
	next := last + 1
	if d.cfg.ReadOnly {
		return next, nil // Scan reports the tail, if any, as it meets it
	}
	sync := d.cfg.Sync != SyncNever
	switch {
	case torn != nil:
		// The sequence of the record being written is given up for good:
		// an acknowledgement persisted for it must not hit a new record.
		// (A header cut short had no record after it yet.)
		if s.size >= FileHeaderSize {
			next++
		}
		next = max(next, ledgerNext)
		dmg := Damage{Kind: DamageTornTail, Segment: s.name, Offset: torn.off, Length: torn.end - torn.off,
			FirstSeq: last + 1, LastSeq: next - 1, Detail: torn.detail}
		// The give-up must be on disk before the cut: once the tail is
		// gone, nothing else remembers that its sequence was used, and a
		// crash before the first housekeeping would hand it out again.
		d.acks.add(dmg.FirstSeq, dmg.LastSeq)
		d.ackVer++
		if err := d.persistLedger(next); err != nil {
			d.log.Warn("cannot persist the torn tail's sequence before cutting it; housekeeping retries", "err", err)
		}
		if hasRecs {
			if err := f.Truncate(torn.off); err != nil {
				return 0, fmt.Errorf("cannot cut the torn tail of %s: %w", s.name, err)
			}
			if sync {
				if err := datasync(f); err != nil {
					return 0, fmt.Errorf("cannot sync %s: %w", s.name, err)
				}
			}
			d.bytes -= s.size - torn.off
			s.size = torn.off
			dmg.Repair = "cut"
		} else {
			if err := d.removeSegment(s); err != nil {
				return 0, err
			}
			dmg.Repair = "segment removed: it held no intact record"
		}
		d.report(dmg)
	case !hasRecs:
		if err := d.removeSegment(s); err != nil { // empty: the next segment may want its name
			return 0, err
		}
	case ledgerNext > next && !d.acks.covers(next, ledgerNext-1):
		// Appended before the crash, never synced: a host crash took them.
		d.report(Damage{Kind: DamageGap, Segment: s.name, Offset: s.size, FirstSeq: next, LastSeq: ledgerNext - 1,
			Detail: "appended before the stop but not in the spool: lost by a host crash before their sync", Repair: "marked lost"})
		d.acks.add(next, ledgerNext-1)
		d.ackVer++
	}
	if sync && len(d.segs) > 0 && d.segs[len(d.segs)-1] == s && torn == nil {
		// What the previous run wrote may still be in the page cache
		// only: it counts as durable from here on, so make it so.
		if err := datasync(f); err != nil {
			return 0, fmt.Errorf("cannot sync %s: %w", s.name, err)
		}
	}
	return next, nil
}

// persistLedger writes the ack ledger at Open, with next as the next
// sequence.
func (d *Dir) persistLedger(next uint64) error {
	l := ledger{acks: d.acks.clone(), next: max(next, d.acks.max()+1)}
	if err := d.writeLedgerSpare(&l); err != nil {
		return err
	}
	d.saved, d.savedVer, d.savedNext = l.acks, d.ackVer, l.next
	return nil
}

// removeSegment removes s, the newest segment, at Open.
func (d *Dir) removeSegment(s *segment) error {
	if err := os.Remove(filepath.Join(d.dir, s.name)); err != nil {
		return err
	}
	d.segs = d.segs[:len(d.segs)-1]
	d.bytes -= s.size
	if d.cfg.Sync != SyncNever {
		return syncDir(d.dir)
	}
	return nil
}

// report counts a damage and hands it to OnDamage.
func (d *Dir) report(dmg Damage) {
	d.damaged.Add(1)
	if dmg.Kind == DamageKey {
		d.needKey.Add(dmg.Records())
	} else {
		d.lost.Add(dmg.Records())
		d.skipped.Add(dmg.Length)
	}
	if d.cfg.OnDamage != nil {
		d.cfg.OnDamage(dmg)
	}
}

// resolve marks first..last as never to be delivered (lost).
func (d *Dir) resolve(first, last uint64) {
	if d.cfg.ReadOnly || first == 0 || first > last {
		return
	}
	d.ackMu.Lock()
	if d.acks.add(first, last) {
		d.ackVer++
		d.evicted.remove(first, last)
	}
	d.ackMu.Unlock()
}

// covered reports whether first..last are all resolved now.
func (d *Dir) covered(first, last uint64) bool {
	d.ackMu.Lock()
	defer d.ackMu.Unlock()
	return d.acks.covers(first, last)
}

// Live reports whether a read-only Dir was opened beside a running
// writer: the end of the newest segment may then be a record being
// written, and is not judged.
func (d *Dir) Live() bool { return d.live }

// Durable returns the highest sequence at or below which every record
// is durable under the sync policy (or resolved).
func (d *Dir) Durable() uint64 { return d.durable.Load() }

// Ack marks the record seq delivered. It does no I/O: the background
// housekeeping persists acknowledgements every AckInterval and removes
// the segments they complete.
func (d *Dir) Ack(seq uint64) error {
	if d.cfg.ReadOnly {
		return ErrReadOnly
	}
	if d.isClosed.Load() {
		return ErrClosed
	}
	if seq == 0 || seq > d.written.Load() {
		return ErrBadAck
	}
	d.ackMu.Lock()
	if d.acks.add(seq, seq) {
		d.ackVer++
		d.evicted.remove(seq, seq)
	}
	d.ackMu.Unlock()
	return nil
}

// Stats returns sizes and counts. It does no I/O, but waits for an
// Append in progress: call it off the event loops (a metrics scrape).
func (d *Dir) Stats() Stats {
	d.mu.Lock()
	st := Stats{Bytes: d.bytes, Segments: len(d.segs), Last: d.next - 1}
	d.ackMu.Lock()
	floor, above := d.acks.floor, d.acks.n
	st.Evicted = d.evicted.n
	d.ackMu.Unlock()
	if st.Last > floor {
		st.Records = st.Last - floor - above
		st.Oldest = floor + 1
		if t, ok := d.appendedAt(st.Oldest); ok {
			st.OldestAge = max(0, time.Duration(d.cfg.Now().UnixNano()-t))
		}
	}
	d.mu.Unlock()
	st.AckFloor = floor
	st.Durable = d.durable.Load()
	st.Syncs = d.syncs.Load()
	st.Damaged, st.Lost, st.SkippedBytes = d.damaged.Load(), d.lost.Load(), d.skipped.Load()
	st.Dropped = d.dropped.Load()
	st.NeedKey = d.needKey.Load()
	return st
}

// appendedAt returns when seq was appended, at the latest; d.mu held.
func (d *Dir) appendedAt(seq uint64) (int64, bool) {
	i, _ := slices.BinarySearchFunc(d.segs, seq+1, func(s *segment, v uint64) int { return cmpUint(s.base, v) })
	if i == 0 {
		return 0, false
	}
	m := d.segs[i-1].marks
	j, _ := slices.BinarySearchFunc(m, seq+1, func(m mark, v uint64) int { return cmpUint(m.seq, v) })
	if j == 0 {
		return 0, false
	}
	return m[j-1].t, true
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// run is the background goroutine: the interval sync, and housekeeping.
// syncGap is the least time between two background fsyncs (SyncInterval;
// at most the interval itself).
const syncGap = 2 * time.Millisecond

func (d *Dir) run() {
	defer close(d.done)
	// SyncInterval(iv): a group commit. An Append wakes the syncer
	// (pending), which fsyncs at once if the last fsync is at least
	// syncGap old, else when it is: everything written meanwhile shares
	// the fsync. Under load that is an fsync every syncGap plus its own
	// length; idle, none. A record is durable well within iv of its
	// Append, so agents acknowledged at durability (ack-mode spool) wait
	// milliseconds, not the interval.
	var pending <-chan struct{}
	var gapC <-chan time.Time
	gap := min(d.cfg.Sync.Interval(), syncGap)
	gapT := time.NewTimer(time.Hour)
	gapT.Stop()
	defer gapT.Stop()
	var last time.Time
	if d.cfg.Sync.Interval() > 0 {
		pending = d.pending
	}
	ack := time.NewTicker(d.cfg.AckInterval)
	defer ack.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-pending:
			if wait := gap - time.Since(last); wait > 0 {
				pending = nil // until the gap has passed
				gapT.Reset(wait)
				gapC = gapT.C
				continue
			}
			_ = d.syncNow() // a failure is kept (d.failure) and logged once
			last = time.Now()
		case <-gapC:
			gapC, pending = nil, d.pending
			_ = d.syncNow()
			last = time.Now()
		case <-ack.C:
			if err := d.housekeep(false); err != nil {
				d.log.Warn("spool housekeeping failed; acknowledgements stay in memory until it works", "err", err)
			}
		}
	}
}

// housekeep persists the acknowledgements if they changed, then removes
// the segments they complete. A segment goes only once the ledger that
// makes it unnecessary is on disk: a crash between the two leaves a
// segment whose records are all acknowledged, never a missing segment
// whose records are not. On a full disk the ledger is written into the
// room its reserve leaves (writeLedgerSpare), which is made again at a
// later housekeeping (tendReserve). With final (Close), the segment
// being written goes too when it is complete.
func (d *Dir) housekeep(final bool) error {
	d.hkMu.Lock()
	defer d.hkMu.Unlock()
	if !final {
		d.tendReserve()
	}
	d.mu.Lock()
	next := d.next
	d.mu.Unlock()
	d.ackMu.Lock()
	ver := d.ackVer
	changed := ver != d.savedVer || (final && next != d.savedNext)
	var l ledger
	if changed {
		l = ledger{acks: d.acks.clone(), next: max(next, d.acks.max()+1)}
	}
	d.ackMu.Unlock()
	if changed {
		if err := d.writeLedgerSpare(&l); err != nil {
			return err
		}
		d.saved, d.savedVer, d.savedNext = l.acks, ver, l.next
	}
	return d.removeDelivered(final)
}

// removeDelivered removes the segments whose records the saved ledger
// resolves; hkMu held.
func (d *Dir) removeDelivered(final bool) error {
	d.mu.Lock()
	var gone []*segment
	keep := d.segs[:0]
	for i, s := range d.segs {
		last := d.next - 1
		if i+1 < len(d.segs) {
			last = d.segs[i+1].base - 1
		}
		if (s != d.cur || final) && d.saved.covers(s.base, last) {
			gone = append(gone, s)
			d.bytes -= s.size
			continue
		}
		keep = append(keep, s)
	}
	clear(d.segs[len(keep):])
	d.segs = keep
	d.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	var errs []error
	for _, s := range gone {
		if err := os.Remove(filepath.Join(d.dir, s.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if d.cfg.Sync != SyncNever {
		if err := syncDir(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	d.log.Debug("delivered segments removed", "segments", len(gone), "first", gone[0].name)
	return errors.Join(errs...)
}

// Close syncs what was appended, persists the acknowledgements, removes
// the delivered segments and releases the directory.
func (d *Dir) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.isClosed.Store(true)
	cur := d.cur
	d.mu.Unlock()
	if d.cfg.ReadOnly {
		d.closeFiles()
		return nil
	}
	close(d.stop)
	<-d.done
	var errs []error
	if d.cfg.Sync != SyncNever {
		if err := d.syncNow(); errors.Is(err, errUnsynced) {
			d.giveUpUnsynced() // the Appends concerned fail with ErrFull
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	if cur != nil {
		d.syncMu.Lock()
		if !cur.closed {
			cur.closed = true
			errs = append(errs, cur.f.Close())
		}
		d.syncMu.Unlock()
	}
	errs = append(errs, d.housekeep(true))
	d.closeFiles()
	return errors.Join(errs...)
}

// abandon stops the spool as kill -9 would: no sync, no ledger, no
// removal (tests).
func (d *Dir) abandon() {
	d.mu.Lock()
	d.closed = true
	d.isClosed.Store(true)
	cur := d.cur
	d.mu.Unlock()
	if !d.cfg.ReadOnly {
		close(d.stop)
		<-d.done
	}
	if cur != nil && !cur.closed {
		cur.f.Close()
	}
	d.closeFiles()
}

func (d *Dir) closeFiles() {
	if d.lock != nil {
		d.lock.Close() // releases the flock
		d.lock = nil
	}
}
