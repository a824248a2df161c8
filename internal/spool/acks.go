package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// span is a run of sequences, first ≤ last.
type span struct{ first, last uint64 }

// ackSet is the set of resolved sequences: acknowledged by an analyzer,
// or known never to be delivered (lost to damage, or given to a batch
// whose write failed). Acknowledgements come mostly in order, so the set
// is a floor and a few spans above it: the seqSet holds those above
// floor+1 (its first span starts past floor+1), and its n counts them.
type ackSet struct {
	floor uint64 // every sequence ≤ floor is resolved
	seqSet
}

// add resolves first..last and reports whether the set changed.
func (s *ackSet) add(first, last uint64) bool {
	if last <= s.floor || first > last {
		return false
	}
	first = max(first, s.floor+1)
	if s.seqSet.covers(first, last) {
		return false
	}
	s.seqSet.add(first, last)
	if lo := s.spans[0]; lo.first == s.floor+1 {
		// Into the floor. Not seqSet.remove: it lets an emptied set's
		// storage go, and in-order acks empty it at every one, which would
		// allocate per ack (TestAppendAllocs).
		s.floor = lo.last
		s.n -= lo.last - lo.first + 1
		s.spans = slices.Delete(s.spans, 0, 1)
	}
	return true
}

// has reports whether seq is resolved.
func (s *ackSet) has(seq uint64) bool {
	return seq <= s.floor || s.seqSet.has(seq)
}

// covers reports whether every sequence of first..last is resolved (true
// for an empty run).
func (s *ackSet) covers(first, last uint64) bool {
	if first > last || last <= s.floor {
		return true
	}
	return s.seqSet.covers(max(first, s.floor+1), last)
}

// max returns the highest resolved sequence.
func (s *ackSet) max() uint64 {
	if n := len(s.spans); n > 0 {
		return s.spans[n-1].last
	}
	return s.floor
}

func (s *ackSet) clone() ackSet {
	return ackSet{floor: s.floor, seqSet: seqSet{spans: slices.Clone(s.spans), n: s.n}}
}

// The ack ledger, file "acks" in the spool directory: the resolved set
// and the writer's next sequence, replaced whole (written to "acks.tmp",
// synced, renamed over "acks", directory synced).
//
//	off  len field
//	  0    8 magic   "LDSPACK1"
//	  8    8 floor   every sequence ≤ floor is resolved
//	 16    8 next    the writer's next sequence when written: sequences are never reused
//	 24    4 n       spans that follow
//	 28  16n spans   n × (u64 first, u64 last): resolved above floor+1, sorted, disjoint
//	  …    4 crc     CRC-32C of every byte before it
const (
	ackMagic    = "LDSPACK1"
	ackFile     = "acks"
	ackTemp     = "acks.tmp"
	ackFixed    = 28
	maxAckBytes = 1 << 30 // a ledger larger than this is damage, not read
)

// ledger is what the ack file holds.
type ledger struct {
	acks ackSet
	next uint64
}

func encodeLedger(l *ledger) []byte {
	b := make([]byte, 0, ackFixed+16*len(l.acks.spans)+4)
	b = append(b, ackMagic...)
	b = binary.BigEndian.AppendUint64(b, l.acks.floor)
	b = binary.BigEndian.AppendUint64(b, l.next)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.acks.spans)))
	for _, sp := range l.acks.spans {
		b = binary.BigEndian.AppendUint64(b, sp.first)
		b = binary.BigEndian.AppendUint64(b, sp.last)
	}
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

func decodeLedger(b []byte) (ledger, error) {
	if len(b) < ackFixed+4 || string(b[:8]) != ackMagic {
		return ledger{}, errors.New("not an ack ledger (bad magic or too short)")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if checksum(body) != sum {
		return ledger{}, errors.New("checksum mismatch")
	}
	l := ledger{acks: ackSet{floor: binary.BigEndian.Uint64(b[8:16])}, next: binary.BigEndian.Uint64(b[16:24])}
	// Sequences start at 1, and what is resolved was written: a ledger
	// saying otherwise (only a forged or miswritten one can) would make
	// new appends count as resolved, and be deleted.
	if l.next == 0 || l.acks.floor >= l.next {
		return ledger{}, fmt.Errorf("floor %d and next %d: not a ledger the writer makes", l.acks.floor, l.next)
	}
	n := binary.BigEndian.Uint32(b[24:28])
	if uint64(len(body)-ackFixed) != 16*uint64(n) {
		return ledger{}, fmt.Errorf("%d spans announced, %d bytes hold them", n, len(body)-ackFixed)
	}
	prev := l.acks.floor + 1
	l.acks.spans = make([]span, 0, n)
	for p := ackFixed; p < len(body); p += 16 {
		sp := span{binary.BigEndian.Uint64(b[p:]), binary.BigEndian.Uint64(b[p+8:])}
		if sp.first <= prev || sp.last < sp.first {
			return ledger{}, fmt.Errorf("span %d-%d out of order", sp.first, sp.last)
		}
		if sp.last >= l.next { // checked per span: prev below would wrap at 2^64-1
			return ledger{}, fmt.Errorf("sequence %d resolved but the next one to write is %d", sp.last, l.next)
		}
		l.acks.spans = append(l.acks.spans, sp)
		l.acks.n += sp.last - sp.first + 1
		prev = sp.last + 1
	}
	return l, nil
}

// ledgerError is an ack ledger that is there but cannot be read: damage,
// not a reason to stop.
type ledgerError struct{ err error }

func (e *ledgerError) Error() string { return "ack ledger " + ackFile + ": " + e.err.Error() }

// readLedger reads the ack ledger of dir. A missing one is no error (a
// spool that never persisted acknowledgements): found is false. One
// that does not decode is a *ledgerError.
func readLedger(dir string) (l ledger, found bool, err error) {
	path := filepath.Join(dir, ackFile)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return ledger{}, false, nil
	}
	if err != nil {
		return ledger{}, false, err
	}
	if fi.Size() > maxAckBytes {
		return ledger{}, true, &ledgerError{fmt.Errorf("%d bytes, larger than any ledger", fi.Size())}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ledger{}, false, err
	}
	if l, err = decodeLedger(b); err != nil {
		return ledger{}, true, &ledgerError{err}
	}
	return l, true, nil
}

// writeLedger replaces the ack ledger of dir atomically; with sync, the
// new one is on disk when it returns.
func writeLedger(dir string, l *ledger, sync bool) error {
	tmp := filepath.Join(dir, ackTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeLedger(l))
	if err == nil && sync {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ackFile))
	}
	if err == nil && sync {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write the ack ledger in %s: %w", dir, err)
	}
	return nil
}
