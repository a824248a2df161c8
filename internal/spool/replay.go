package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Replay calls fn for every record not acknowledged, in sequence order,
// as the spool was when Replay began (Appends may go on meanwhile; their
// records are not included). Damage met on the way goes to
// Config.OnDamage, and the sequences it lost are resolved, so that a
// restart does not report them again and their segments can go. Every
// record's CRC-32C is checked, and the DATA frame in it is checked again
// against its own. Record.Body is valid only until fn returns. An error
// from fn stops Replay and is returned.
func (d *Dir) Replay(fn func(Record) error) error { return d.walk(fn, false, d.report) }

// Scan is Replay over every record, acknowledged ones included
// (Record.Acked set), and every byte of every segment: what the tools
// use. Damage is reported even where its sequences were resolved before.
func (d *Dir) Scan(fn func(Record) error) error { return d.walk(fn, true, d.report) }

// segView is a segment as a walk saw it when it began.
type segView struct {
	name   string
	base   uint64
	size   int64
	hdrErr error
}

// walker follows the sequence across segments: every sequence up to
// claimed was delivered, skipped as acknowledged, or reported lost.
// Damaged stretches wait in pending until the next intact record says
// which sequences they took.
type walker struct {
	d       *Dir
	fn      func(Record) error
	all     bool
	acks    ackSet // as when the walk began
	next    uint64
	claimed uint64
	pending []Damage
	seg     *segView
	sink    func(Damage)
	keys    keyRun // records wanting a missing key, not reported yet
	plain   []byte // opened bodies
}

func (d *Dir) walk(fn func(Record) error, all bool, sink func(Damage)) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	views := make([]segView, len(d.segs))
	for i, s := range d.segs {
		views[i] = segView{name: s.name, base: s.base, size: s.size, hdrErr: s.hdrErr}
	}
	next := d.next
	d.mu.Unlock()
	d.ackMu.Lock()
	w := walker{d: d, fn: fn, all: all, acks: d.acks.clone(), next: next, sink: sink}
	d.ackMu.Unlock()

	var r segReader
	for i := range views {
		v := &views[i]
		w.seg = v
		last := next - 1
		if i+1 < len(views) {
			last = views[i+1].base - 1
		}
		if !all && w.acks.covers(v.base, last) {
			w.upTo(v.base - 1)
			w.claimed = max(w.claimed, last)
			continue
		}
		f, err := os.Open(filepath.Join(d.dir, v.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the walk began: delivered
		}
		if err != nil {
			return err
		}
		w.upTo(v.base - 1) // what earlier segments should have held
		if v.hdrErr != nil {
			w.damage(Damage{Kind: DamageHeader, Segment: v.name, Length: min(v.size, FileHeaderSize), Detail: v.hdrErr.Error()})
		}
		r.reset(f, v.size)
		newest := i == len(views)-1
		err = r.scan(v.base-1, w.record, func(st stretch) error { return w.stretch(st, newest) })
		f.Close()
		w.keys.flush(w.damage)
		if err != nil {
			return fmt.Errorf("spool segment %s: %w", v.name, err)
		}
	}
	w.seg = nil
	w.finish()
	return nil
}

// record handles an intact record.
func (w *walker) record(rr *rawRec) error {
	if rr.seq <= w.claimed {
		w.keys.flush(w.damage)
		w.damage(Damage{Kind: DamageSequence, Segment: w.seg.name, Offset: rr.off, Length: rr.size,
			Detail: fmt.Sprintf("sequence %d after %d", rr.seq, w.claimed)})
		return nil
	}
	w.upTo(rr.seq - 1)
	w.claimed = rr.seq
	acked := w.acks.has(rr.seq)
	if acked && !w.all {
		return nil
	}
	body, key, res, detail := w.d.openBody(&w.plain, rr)
	if res != noKey {
		w.keys.flush(w.damage)
	}
	switch res {
	case noKey:
		if !acked { // delivered: nothing to keep
			w.keys.add(w.seg.name, rr, key, detail, w.damage)
		}
		return nil
	case badSeal:
		w.damage(Damage{Kind: DamageSeal, Segment: w.seg.name, Offset: rr.off, Length: rr.size,
			FirstSeq: rr.seq, LastSeq: rr.seq, Detail: detail})
		w.d.resolve(rr.seq, rr.seq)
		return nil
	}
	if err := checkBody(rr.kind, body, true); err != nil {
		w.damage(Damage{Kind: DamageFrame, Segment: w.seg.name, Offset: rr.off, Length: rr.size,
			FirstSeq: rr.seq, LastSeq: rr.seq, Detail: err.Error()})
		w.d.resolve(rr.seq, rr.seq)
		return nil
	}
	return w.fn(Record{Seq: rr.seq, Kind: rr.kind, Flags: rr.flags, Key: key, Body: body,
		Segment: w.seg.name, Offset: rr.off, Acked: acked})
}

// stretch holds a damaged stretch until the sequences it lost are known.
func (w *walker) stretch(st stretch, newest bool) error {
	w.keys.flush(w.damage)
	dmg := Damage{Kind: st.kind, Segment: w.seg.name, Offset: st.off, Length: st.end - st.off, Detail: st.detail}
	if st.toEnd && newest {
		if w.d.live {
			return nil // the record a running writer is writing
		}
		dmg.Kind = DamageTornTail
	}
	w.pending = append(w.pending, dmg)
	return nil
}

// upTo accounts for the sequences after claimed up to seq: the ones the
// pending damage took, or, with none pending, a gap.
func (w *walker) upTo(seq uint64) {
	if seq <= w.claimed {
		w.flush(0, 0)
		return
	}
	first := w.claimed + 1
	switch {
	case len(w.pending) > 0:
		w.flush(first, seq)
	case !w.acks.covers(first, seq):
		dmg := Damage{Kind: DamageGap, FirstSeq: first, LastSeq: seq,
			Detail: "no damaged bytes account for them: a segment removed by hand, or writes lost by a host crash"}
		if w.seg != nil {
			dmg.Segment = w.seg.name
		}
		w.damage(dmg)
	}
	w.d.resolve(first, seq)
	w.claimed = seq
}

// flush reports the pending damage; the first stretch is charged with
// the sequences first..last.
func (w *walker) flush(first, last uint64) {
	for i := range w.pending {
		if i == 0 {
			w.pending[i].FirstSeq, w.pending[i].LastSeq = first, last
		}
		w.damage(w.pending[i])
	}
	clear(w.pending)
	w.pending = w.pending[:0]
}

// finish accounts for the end: the sequences up to the last one
// appended. A torn tail that a read-only walk finds (Open cuts it
// otherwise) took at least the one after the last intact record.
func (w *walker) finish() {
	end := w.next - 1
	if w.d.live {
		end = w.claimed // the writer is ahead of what this walk saw
	}
	if len(w.pending) > 0 && end <= w.claimed {
		w.flush(w.claimed+1, w.claimed+1) // not resolved: the writer has not used it
		return
	}
	w.upTo(end)
	w.flush(0, 0)
}

// damage reports dmg; Replay stays quiet about damage whose sequences
// were all resolved before (reported by an earlier run).
func (w *walker) damage(dmg Damage) {
	if !w.all && dmg.Records() > 0 && w.acks.covers(dmg.FirstSeq, dmg.LastSeq) {
		return
	}
	w.sink(dmg)
}
