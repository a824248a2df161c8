package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Repair rewrites every damaged segment so that it holds only its
// intact records in order, and resolves the sequences lost, so that a
// Scan afterwards reports nothing. It returns each damage found, with
// what was done about it in Damage.Repair. Nothing intact is dropped.
//
// It is for the tools (logdist spool verify --repair), on a spool opened
// for writing and not appended to: Open has already cut the torn tail of
// the newest segment (reported to Config.OnDamage), and its exclusive
// lock keeps a running logdist away.
func (d *Dir) Repair() ([]Damage, error) {
	if d.cfg.ReadOnly {
		return nil, ErrReadOnly
	}
	d.mu.Lock()
	busy := d.cur != nil || d.closed
	d.mu.Unlock()
	if busy {
		return nil, errors.New("spool: Repair must come before any Append, and before Close")
	}
	var found []Damage
	lastIn := map[string]uint64{} // the last intact sequence of each segment
	err := d.walk(func(r Record) error {
		lastIn[r.Segment] = r.Seq
		return nil
	}, true, func(dmg Damage) { found = append(found, dmg) })
	if err != nil {
		return found, err
	}
	actions := map[string]string{}
	d.mu.Lock()
	segs := append([]*segment(nil), d.segs...)
	d.mu.Unlock()
	var prev uint64 // the last sequence kept before the segment
	for _, s := range segs {
		damaged := s.hdrErr != nil
		for _, dmg := range found {
			damaged = damaged || dmg.Segment == s.name && dmg.Kind != DamageGap && dmg.Kind != DamageKey
		}
		if !damaged {
			prev = max(prev, lastIn[s.name])
			continue
		}
		name := s.name // rewrite may rename it
		if actions[name], prev, err = d.rewrite(s, prev); err != nil {
			return found, err
		}
	}
	d.rrMu.Lock()
	d.rrSeg, d.cursor = nil, rcursor{} // the bytes Reread saw are rewritten
	d.rrMu.Unlock()
	for i := range found {
		dmg := &found[i]
		switch {
		case dmg.Kind == DamageGap:
			dmg.Repair = "marked lost"
		case dmg.Kind == DamageAcks:
			dmg.Repair = "ledger rewritten"
		case dmg.Kind == DamageKey:
			dmg.Repair = "kept"
		default:
			dmg.Repair = actions[dmg.Segment]
		}
	}
	d.ackMu.Lock()
	d.ackVer++ // write the ledger whatever changed
	d.ackMu.Unlock()
	return found, d.housekeep(false)
}

// keep is an intact record's place in a segment being repaired.
type keep struct{ off, size int64 }

// rewrite makes s hold only its intact records above prev, in order: a
// cut when they are a prefix of the file, a new file otherwise (named
// after its first record), no file when there is none. It returns what
// it did and the last sequence met.
func (d *Dir) rewrite(s *segment, prev uint64) (action string, last uint64, err error) {
	action, err = d.rewriteAbove(s, &prev)
	return action, prev, err
}

func (d *Dir) rewriteAbove(s *segment, pprev *uint64) (string, error) {
	prev := *pprev
	defer func() { *pprev = prev }()
	path := filepath.Join(d.dir, s.name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var (
		r     segReader
		kept  []keep
		first uint64
		plain []byte
	)
	r.reset(f, s.size)
	err = r.scan(s.base-1, func(rr *rawRec) error {
		if rr.seq <= prev {
			return nil // out of order
		}
		prev = rr.seq
		// A record whose key is missing is kept: it is not lost.
		body, _, res, _ := d.openBody(&plain, rr)
		if res == badSeal || res == opened && checkBody(rr.kind, body, true) != nil {
			return nil
		}
		if first == 0 {
			first = rr.seq
		}
		kept = append(kept, keep{rr.off, rr.size})
		return nil
	}, func(stretch) error { return nil })
	if err != nil {
		return "", err
	}
	sync := d.cfg.Sync != SyncNever
	if len(kept) == 0 {
		if err := os.Remove(path); err != nil {
			return "", err
		}
		d.dropSegment(s)
		return "segment removed: it held no intact record", d.syncDirIf(sync)
	}
	prefix := s.hdrErr == nil
	end := int64(FileHeaderSize)
	for _, k := range kept {
		prefix = prefix && k.off == end
		end = k.off + k.size
	}
	if prefix {
		if err := f.Truncate(end); err != nil {
			return "", err
		}
		if sync {
			if err := datasync(f); err != nil {
				return "", err
			}
		}
		d.resize(s, s.name, s.base, end)
		return fmt.Sprintf("cut at offset %d", end), nil
	}
	name := segmentName(first)
	tmp := filepath.Join(d.dir, name+".repair.tmp")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp) // gone once renamed; removed on failure
	buf := appendFileHeader(nil, first, s.created)
	size := int64(len(buf))
	for _, k := range kept {
		b, err := r.get(k.off, int(k.size))
		if err != nil {
			out.Close()
			return "", err
		}
		buf = append(buf, b...)
		size += k.size
		if len(buf) >= writeChunk {
			if _, err := out.Write(buf); err != nil {
				out.Close()
				return "", err
			}
			buf = buf[:0]
		}
	}
	_, err = out.Write(buf)
	if err == nil && sync {
		err = datasync(out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err == nil && name != s.name {
		err = os.Remove(path)
	}
	if err == nil {
		err = d.syncDirIf(sync)
	}
	if err != nil {
		return "", fmt.Errorf("cannot rewrite segment %s: %w", s.name, err)
	}
	d.resize(s, name, first, size)
	if name != s.name {
		return "rewritten without the damaged bytes, as " + name, nil
	}
	return "rewritten without the damaged bytes", nil
}

// resize records s's new name, base and size after a repair.
func (d *Dir) resize(s *segment, name string, base uint64, size int64) {
	d.mu.Lock()
	d.bytes += size - s.size
	s.name, s.base, s.size, s.hdrErr = name, base, size, nil
	d.mu.Unlock()
}

// dropSegment forgets s, removed by a repair.
func (d *Dir) dropSegment(s *segment) {
	d.mu.Lock()
	for i, x := range d.segs {
		if x == s {
			d.segs = append(d.segs[:i], d.segs[i+1:]...)
			d.bytes -= s.size
			break
		}
	}
	d.mu.Unlock()
}

func (d *Dir) syncDirIf(sync bool) error {
	if sync {
		return syncDir(d.dir)
	}
	return nil
}
