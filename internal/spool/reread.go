package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Evict tells the spool the caller dropped its in-memory copy of record
// seq, not yet acknowledged: Reread will hand it back. Evicting a
// resolved (acknowledged, dropped, lost) or never-appended sequence, or
// one already evicted, does nothing; so does anything on a ReadOnly Dir.
// It does no I/O and is safe from any goroutine, an event loop included:
// a mutex and a span set, cheapest for sequences evicted in increasing
// order.
//
// An Ack (or any resolution) of an evicted record takes it out of the
// evicted set: it is not read back.
func (d *Dir) Evict(seq uint64) {
	if d.cfg.ReadOnly || seq == 0 || seq > d.written.Load() {
		return
	}
	d.ackMu.Lock()
	if !d.acks.has(seq) {
		d.evicted.add(seq, seq)
	}
	d.ackMu.Unlock()
}

// Evicted returns how many records wait to be read back by Reread: those
// evicted, and, from Open on, every record not acknowledged then (none
// on a ReadOnly Dir). Records appended since Open are held by the caller
// until it evicts them. It does no I/O.
func (d *Dir) Evicted() uint64 {
	d.ackMu.Lock()
	defer d.ackMu.Unlock()
	return d.evicted.n
}

// Reread reads back up to max evicted records whose bodies total at most
// maxBytes (but always at least one if any is evicted; max < 1 reads
// nothing), lowest sequence first, and calls fn for each with
// Record.Seq, Kind, Flags, Body, Segment and Offset set. Body is valid
// only until fn returns. Each record given to fn is no longer evicted:
// the caller holds it again, and evicts it again if it lets go of it
// before its Ack. Records resolved meanwhile are skipped. It returns the
// number of records given to fn.
//
// Damage met on the way is reported (Config.OnDamage, Stats) and its
// sequences resolved, as Replay does: every record fn gets passed its
// CRC-32C and its DATA frame's own. A damaged stretch without sequences
// (a damaged header, an out-of-order record) is reported once, however
// often Reread passes it. Reread reads only where evicted records are,
// so damage among records the caller holds may go unseen (a restart's
// Reread meets it).
//
// After a restart, Reread is the replay: everything not acknowledged is
// evicted at Open. Use it or Replay, not both: each hands the records
// over.
//
// Cost: Reread keeps a cursor where the previous call stopped (segment,
// offset, sequence) and goes on from there while the lowest evicted
// sequence is at or after it; otherwise it starts at the beginning of
// the segment holding the lowest evicted sequence. It leaves a segment
// once nothing evicted is left in it, and skips segments without
// evicted records, so reading back an outage's worth of records in
// small batches reads each segment about once. Records that the caller
// holds between evicted ones are read and skipped.
//
// It blocks on I/O: run it on a worker, never on an event loop. Calls
// are serialised (a second waits for the first); fn must not call
// Reread, and may call anything else. Appends, Acks, Evicts and
// DropOldest may go on meanwhile. ErrReadOnly on a ReadOnly Dir.
func (d *Dir) Reread(max int, maxBytes int64, fn func(Record)) (int, error) {
	if d.cfg.ReadOnly {
		return 0, ErrReadOnly
	}
	d.rrMu.Lock()
	defer d.rrMu.Unlock()
	if d.isClosed.Load() {
		return 0, ErrClosed
	}
	r := rereader{d: d, max: max, maxBytes: maxBytes, fn: fn}
	defer func() {
		d.rrRead.r = nil // closed
		if cap(d.rrRead.buf) > 4*readAhead {
			d.rrRead.reset(nil, 0) // a huge record grew the window: let it go
			d.rrRead.buf, d.rrSeg = nil, nil
		}
	}()
	for r.n < max && !r.full {
		lo, ok := d.lowestEvicted()
		if !ok {
			break
		}
		v, ok := d.segmentOf(lo)
		if !ok {
			// No segment holds it: only removing segments by hand does
			// that (load resolves what is below the oldest).
			end := v.end
			if end < lo {
				end = lo
			}
			r.v, r.claimed, r.pending = v, lo-1, r.pending[:0]
			r.upTo(end)
			continue
		}
		if err := r.read(v, lo); err != nil {
			d.cursor = rcursor{}
			return r.n, err
		}
	}
	return r.n, nil
}

// rcursor is where the previous Reread stopped: in seg, off is the first
// record it did not read, and every sequence up to seq was handed back,
// skipped, or reported lost.
type rcursor struct {
	seg *segment
	off int64
	seq uint64
}

// rview is a segment as a Reread saw it: records base..end in size
// bytes.
type rview struct {
	seg       *segment
	name      string
	base, end uint64
	size      int64
	hdrErr    error
}

// dmgKey is a damaged stretch that Reread reported, if it had no
// sequences to resolve (those are known by being resolved).
type dmgKey struct {
	seg  string
	off  int64
	kind DamageKind
}

// errStop stops a segment scan from its callback.
var errStop = errors.New("spool: stop")

// lowestEvicted returns the lowest evicted sequence (false: none).
func (d *Dir) lowestEvicted() (uint64, bool) {
	d.ackMu.Lock()
	defer d.ackMu.Unlock()
	return d.evicted.min()
}

// segmentOf returns the segment that holds seq. None (false): v.end is
// the last sequence before the oldest segment (or of the spool, with no
// segment), v.name the oldest segment's.
func (d *Dir) segmentOf(seq uint64) (v rview, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, _ := slices.BinarySearchFunc(d.segs, seq+1, func(s *segment, v uint64) int { return cmpUint(s.base, v) })
	if i == 0 {
		v.end = d.next - 1
		if len(d.segs) > 0 {
			v.name, v.end = d.segs[0].name, d.segs[0].base-1
		}
		return v, false
	}
	s := d.segs[i-1]
	v = rview{seg: s, name: s.name, base: s.base, end: d.next - 1, size: s.size, hdrErr: s.hdrErr}
	if i < len(d.segs) {
		v.end = d.segs[i].base - 1
	}
	return v, true
}

// rereader is one Reread call. Like Replay's walker it follows the
// sequence: every sequence up to claimed was handed back, skipped, or
// reported lost; damaged stretches wait in pending until the next
// intact record says which sequences they took.
type rereader struct {
	d        *Dir
	max      int
	maxBytes int64
	fn       func(Record)
	n        int
	bytes    int64
	full     bool // max or maxBytes reached

	v       rview
	claimed uint64
	pending []Damage
	keys    keyRun // records wanting a missing key, not reported yet
}

// read reads evicted records of v, lo the lowest evicted sequence, until
// the call has its fill or nothing evicted is left in v; it leaves the
// cursor where it stopped.
func (r *rereader) read(v rview, lo uint64) error {
	d := r.d
	off, prev := int64(FileHeaderSize), v.base-1
	if c := d.cursor; c.seg == v.seg && lo > c.seq && c.off <= v.size {
		off, prev = c.off, c.seq
	} else if v.hdrErr != nil {
		r.damage(Damage{Kind: DamageHeader, Segment: v.name, Length: min(v.size, FileHeaderSize), Detail: v.hdrErr.Error()})
	}
	r.v, r.claimed, r.pending = v, prev, r.pending[:0]
	defer r.keys.flush(r.damage)
	f, err := os.Open(filepath.Join(d.dir, v.name))
	if errors.Is(err, fs.ErrNotExist) {
		// Removed since segmentOf: its records were resolved first
		// (housekeeping, DropOldest), unless it was removed by hand.
		r.upTo(v.end)
		d.cursor = rcursor{}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if d.rrSeg == v.seg {
		d.rrRead.rebind(f, v.size) // what the window holds of it is read
	} else {
		d.rrRead.reset(f, v.size)
		d.rrSeg = v.seg
	}
	err = d.rrRead.scanFrom(off, prev, r.record, r.stretch)
	switch {
	case errors.Is(err, errStop):
		return nil // the cursor is set
	case err != nil:
		return fmt.Errorf("spool segment %s: %w", v.name, err)
	}
	r.upTo(v.end)
	d.cursor = rcursor{v.seg, v.size, v.end}
	return nil
}

// record handles an intact record.
func (r *rereader) record(rr *rawRec) error {
	d := r.d
	if rr.seq <= r.claimed {
		r.damage(Damage{Kind: DamageSequence, Segment: r.v.name, Offset: rr.off, Length: rr.size,
			Detail: fmt.Sprintf("sequence %d after %d", rr.seq, r.claimed)})
		return nil
	}
	r.upTo(rr.seq - 1)
	d.ackMu.Lock()
	evicted := d.evicted.has(rr.seq)
	lo, some := d.evicted.min()
	d.ackMu.Unlock()
	switch {
	case evicted && lo == rr.seq:
	case !evicted && some && lo > rr.seq && lo <= r.v.end:
		r.claimed = rr.seq // held by the caller, or resolved: skipped
		return nil
	default:
		// Nothing evicted is left in this segment past here, or a lower
		// sequence was evicted meanwhile: read on from elsewhere.
		d.cursor = rcursor{r.v.seg, rr.off, rr.seq - 1}
		return errStop
	}
	body, key, res, detail := d.openBody(&d.rrPlain, rr)
	if res != noKey {
		r.keys.flush(r.damage)
	}
	switch res {
	case noKey:
		// Not lost: held, out of the evicted set for this run (Reread
		// does not come back to it), and read back after a restart
		// with its key.
		r.claimed = rr.seq
		d.cursor = rcursor{r.v.seg, rr.off + rr.size, rr.seq}
		d.ackMu.Lock()
		held := d.evicted.remove(rr.seq, rr.seq) == 1
		d.ackMu.Unlock()
		if held {
			r.keys.add(r.v.name, rr, key, detail, r.damage)
		}
		return nil
	case badSeal:
		r.damage(Damage{Kind: DamageSeal, Segment: r.v.name, Offset: rr.off, Length: rr.size,
			FirstSeq: rr.seq, LastSeq: rr.seq, Detail: detail})
		d.resolve(rr.seq, rr.seq)
		r.claimed = rr.seq
		return nil
	}
	if err := checkBody(rr.kind, body, true); err != nil {
		r.damage(Damage{Kind: DamageFrame, Segment: r.v.name, Offset: rr.off, Length: rr.size,
			FirstSeq: rr.seq, LastSeq: rr.seq, Detail: err.Error()})
		d.resolve(rr.seq, rr.seq)
		r.claimed = rr.seq
		return nil
	}
	if r.n > 0 && (r.n >= r.max || r.bytes+int64(len(body)) > r.maxBytes) {
		r.full = true
		d.cursor = rcursor{r.v.seg, rr.off, rr.seq - 1}
		return errStop
	}
	r.claimed = rr.seq
	d.cursor = rcursor{r.v.seg, rr.off + rr.size, rr.seq}
	d.ackMu.Lock()
	taken := d.evicted.remove(rr.seq, rr.seq) == 1 // not resolved since
	d.ackMu.Unlock()
	if !taken {
		return nil
	}
	r.fn(Record{Seq: rr.seq, Kind: rr.kind, Flags: rr.flags, Key: key, Body: body, Segment: r.v.name, Offset: rr.off})
	r.n++
	r.bytes += int64(len(body))
	if r.n >= r.max {
		r.full = true
		return errStop
	}
	return nil
}

// stretch holds a damaged stretch until the sequences it lost are known.
func (r *rereader) stretch(st stretch) error {
	r.keys.flush(r.damage)
	r.pending = append(r.pending, Damage{Kind: st.kind, Segment: r.v.name, Offset: st.off, Length: st.end - st.off, Detail: st.detail})
	return nil
}

// upTo accounts for the sequences after claimed up to seq: the ones the
// pending damage took, or, with none pending, a gap; they are resolved.
func (r *rereader) upTo(seq uint64) {
	if seq <= r.claimed {
		r.flush(0, 0)
		return
	}
	first := r.claimed + 1
	switch {
	case len(r.pending) > 0:
		r.flush(first, seq)
	case !r.d.covered(first, seq):
		r.damage(Damage{Kind: DamageGap, Segment: r.v.name, FirstSeq: first, LastSeq: seq,
			Detail: "no damaged bytes account for them: a segment removed by hand, or writes lost by a host crash"})
	}
	r.d.resolve(first, seq)
	r.claimed = seq
}

// flush reports the pending damage; the first stretch is charged with
// the sequences first..last.
func (r *rereader) flush(first, last uint64) {
	for i := range r.pending {
		if i == 0 {
			r.pending[i].FirstSeq, r.pending[i].LastSeq = first, last
		}
		r.damage(r.pending[i])
	}
	clear(r.pending)
	r.pending = r.pending[:0]
}

// damage reports dmg unless its sequences are all resolved already, or,
// having none, it was reported before.
func (r *rereader) damage(dmg Damage) {
	d := r.d
	if dmg.Records() > 0 {
		if d.covered(dmg.FirstSeq, dmg.LastSeq) {
			return
		}
	} else {
		k := dmgKey{dmg.Segment, dmg.Offset, dmg.Kind}
		if _, seen := d.rrSeen[k]; seen {
			return
		}
		if d.rrSeen == nil {
			d.rrSeen = map[dmgKey]struct{}{}
		}
		d.rrSeen[k] = struct{}{}
	}
	d.report(dmg)
}
