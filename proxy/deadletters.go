package proxy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

// Dead letters are packets logdist gave up on: rejected for good by an
// analyzer (a packet ERROR), or not acknowledged within --retry-max
// attempts. They are kept under DataDir/dead-letters (the spool's segment
// format, one KindDeadLetter record each, with the reason and the
// analyzer's error) until an operator replays or deletes them (admin API
// /api/v1/dead-letters, "logdist ctl dead-letters").
//
// A replay appends the packets to the spool as new records and has the
// loops read them back like any spilled packet; the dead letters are
// deleted once the spool has them. A crash between the two replays them
// twice: analyzers drop the duplicate by packet id.

// ErrNoSpool is returned by the dead-letter calls of a server without a
// data directory.
var ErrNoSpool = errors.New("proxy: no dead letters: logdist runs without --data-dir")

// DeadLetter describes one dead letter.
type DeadLetter struct {
	// Seq identifies it (its sequence in the dead letters).
	Seq uint64 `json:"seq"`
	// Reason is rejected or retries-exhausted.
	Reason string `json:"reason"`
	// Code is the analyzer's packet error code (rejected), Analyzer the
	// analyzer, Error its error text or logdist's.
	Code     string `json:"code,omitempty"`
	Analyzer string `json:"analyzer,omitempty"`
	Error    string `json:"error,omitempty"`
	// Time is when logdist gave up on the packet.
	Time time.Time `json:"time"`
	// SpoolSeq is the packet's sequence in the spool it came from (0: it
	// was not in the spool).
	SpoolSeq uint64 `json:"spool_seq,omitempty"`
	// Messages and Bytes describe the packet (Bytes: the DATA frame).
	Messages uint32 `json:"messages"`
	Bytes    int    `json:"bytes"`
}

// DeadLetters lists up to limit dead letters with a sequence above after,
// oldest first; more says whether others follow.
func (s *Server) DeadLetters(after uint64, limit int) (list []DeadLetter, more bool, err error) {
	if s.dur == nil {
		return nil, false, ErrNoSpool
	}
	if limit <= 0 {
		limit = 1000
	}
	errEnough := errors.New("enough")
	err = s.dur.dead.Replay(func(r spool.Record) error {
		if r.Seq <= after {
			return nil
		}
		if len(list) == limit {
			more = true
			return errEnough
		}
		list = append(list, describeDeadLetter(r))
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return list, more, err
}

func describeDeadLetter(r spool.Record) DeadLetter {
	out := DeadLetter{Seq: r.Seq, Bytes: len(r.Body)}
	dl, err := spool.ParseDeadLetter(r.Body)
	if err != nil {
		out.Reason, out.Error = "unreadable", err.Error()
		return out
	}
	out.Reason, out.Analyzer, out.Error = dl.Reason.String(), string(dl.Analyzer), string(dl.Error)
	if dl.Code != 0 {
		out.Code = dl.Code.String()
	}
	out.Time, out.SpoolSeq, out.Bytes = dl.Time.UTC(), dl.Origin, len(dl.Frame)
	if len(dl.Frame) >= frame.HeaderSize {
		out.Messages = frame.Header(dl.Frame[:frame.HeaderSize]).Count()
	}
	return out
}

// ReplayDeadLetters sends the dead letters seqs (nil: all) to the
// analyzers again, through the spool, and removes them from the dead
// letters. It returns how many it replayed; sequences that name no dead
// letter are ignored.
func (s *Server) ReplayDeadLetters(seqs []uint64) (int, error) {
	if s.dur == nil {
		return 0, ErrNoSpool
	}
	d := s.dur
	const batch = 256
	var recs []spool.Record
	var from []uint64
	n := 0
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		last, err := d.dir.Append(recs)
		if err != nil {
			return fmt.Errorf("proxy: replaying dead letters: the spool refused them: %w", err)
		}
		// On disk before the dead letters go: a host crash in between must
		// leave one copy.
		if sy, ok := d.dir.(interface{ Sync() error }); ok {
			if err := sy.Sync(); err != nil {
				return fmt.Errorf("proxy: replaying dead letters: syncing the spool: %w", err)
			}
		}
		first := last - uint64(len(recs)) + 1
		for i := range recs {
			d.dir.Evict(first + uint64(i)) // the loops read them back
		}
		for _, seq := range from {
			_ = d.dead.Ack(seq)
		}
		n += len(recs)
		recs, from = recs[:0], from[:0]
		return nil
	}
	var ferr error
	err := d.dead.Replay(func(r spool.Record) error {
		if seqs != nil && !slices.Contains(seqs, r.Seq) {
			return nil
		}
		dl, err := spool.ParseDeadLetter(r.Body)
		if err != nil {
			return nil // unreadable: listed as such, left for a delete
		}
		recs = append(recs, spool.Record{Kind: spool.KindData, Body: slices.Clone(dl.Frame)})
		from = append(from, r.Seq)
		if len(recs) == batch {
			if ferr = flush(); ferr != nil {
				return ferr
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if n > 0 {
		s.log.Info("dead letters replayed", "packets", n)
	}
	return n, err
}

// DeleteDeadLetters removes the dead letters seqs (nil: all) for good
// and returns how many it removed.
func (s *Server) DeleteDeadLetters(seqs []uint64) (int, error) {
	if s.dur == nil {
		return 0, ErrNoSpool
	}
	n := 0
	err := s.dur.dead.Replay(func(r spool.Record) error {
		if seqs == nil || slices.Contains(seqs, r.Seq) {
			if err := s.dur.dead.Ack(r.Seq); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if n > 0 {
		s.log.Warn("dead letters deleted", "packets", n)
	}
	return n, err
}
