package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Spool is what logdist needs of a durable queue of records. Dir, the
// segment files in a directory, is one; a replicated backend (a shared
// log on a distributed engine) can be another, provided it keeps the
// same promises:
//
//   - Append assigns consecutive sequences 1, 2, 3, … in the order given,
//     never reusing one (not after a restart, not after a failed Append);
//   - Durable never goes back, and a record ≤ Durable() survives what
//     the backend promises to survive (for Dir: what its SyncPolicy says);
//   - a record is replayed after a restart until it is acknowledged, and
//     an acknowledgement can be lost only as a duplicate (the record comes
//     back), never as a loss;
//   - what cannot be read back is reported (Config.OnDamage), never
//     silently dropped;
//   - a record evicted (and, after a restart, every record not
//     acknowledged) is handed back by Reread exactly once, unless it is
//     resolved first;
//   - a stored record is given up undelivered only to damage (reported)
//     or by DropOldest (counted, Stats.Dropped).
type Spool interface {
	// Append adds records, in order, and returns the sequence of the
	// last; records[i] gets last-len(records)+1+i. Only Kind, Flags and
	// Body are read, and nothing is kept after it returns. It blocks on
	// I/O: never call it on an event loop. ErrFull: no room (the caller
	// applies its overflow policy).
	Append(records []Record) (last uint64, err error)
	// Durable returns the highest sequence at or below which every
	// record is durable (or resolved). Config.OnDurable reports each
	// advance.
	Durable() uint64
	// Ack marks a record delivered: it is not replayed after a restart
	// (once the acknowledgement is persisted) and its space is freed once
	// its neighbours are delivered too. It does no I/O.
	Ack(seq uint64) error
	// Replay calls fn for every record not acknowledged, in sequence
	// order, as the spool was when Replay began; damage met on the way
	// goes to Config.OnDamage and is skipped. Record.Body is valid only
	// until fn returns. An error from fn stops it and is returned.
	Replay(fn func(Record) error) error
	// Evict tells the spool the caller dropped its in-memory copy of
	// record seq, not yet acknowledged: Reread will hand it back.
	// Evicting a resolved (acknowledged, dropped, lost) or never-appended
	// sequence does nothing. It does no I/O.
	Evict(seq uint64)
	// Evicted returns how many records wait to be read back by Reread:
	// those evicted, and, from Open on, every record not acknowledged
	// then. It does no I/O.
	Evicted() uint64
	// Reread reads back up to max evicted records whose bodies total at
	// most maxBytes (at least one, if any is evicted), lowest sequence
	// first, and calls fn for each; a record given to fn is no longer
	// evicted (the caller holds it again). Records resolved meanwhile
	// are skipped; damage met on the way is reported and resolved, as by
	// Replay. Record.Body is valid only until fn returns. It returns how
	// many records fn was given. It blocks on I/O; calls must not
	// overlap.
	Reread(max int, maxBytes int64, fn func(Record)) (int, error)
	// DropOldest gives up the oldest stretch of records (for Dir, the
	// oldest segment; never the newest, the one being written): those
	// not yet acknowledged are resolved (Stats.Dropped) and their space
	// is freed at once. It returns the records dropped and the bytes
	// freed; ErrNothingToDrop when only the newest is left. It blocks on
	// I/O.
	DropOldest() (records uint64, bytes int64, err error)
	// Stats returns sizes and counts.
	Stats() Stats
	// Close syncs, persists the acknowledgements and releases the spool.
	Close() error
}

var _ Spool = (*Dir)(nil)

// Record is one record: what Append takes and Replay, Reread and Scan
// give.
type Record struct {
	// Seq is the record's sequence (Replay, Reread, Scan); Append ignores
	// it.
	Seq uint64
	// Kind says what Body is.
	Kind Kind
	// Flags are the record's flag bits. Append writes them as given
	// (give 0), except FlagSealed, which it sets when it seals the body
	// (Config.Keys) and clears otherwise; readers give them as read.
	Flags uint8
	// Key is the id of the key a sealed record was sealed with (readers;
	// 0: not sealed). Body is then the opened body.
	Key uint16
	// Body is the record's content: for KindData and KindSyslog one DATA
	// frame, for KindDeadLetter AppendDeadLetter's output. From Replay,
	// Reread and Scan it is valid only until the callback returns.
	Body []byte

	// Segment and Offset say where the record is (Replay, Reread, Scan).
	Segment string
	Offset  int64
	// Acked is set by Scan for a record already acknowledged.
	Acked bool
}

// SyncPolicy says when appended records are made durable with fsync.
//
//   - SyncAlways: Append returns once its records are on disk. A host
//     crash loses nothing Append returned; each Append costs an fsync
//     (concurrent Appends share one).
//   - SyncInterval(d): a background group commit. Append returns once
//     the records are written (in the page cache) and wakes the syncer,
//     which fsyncs at once, or 2 ms (at most d) after its previous fsync,
//     covering everything written meanwhile; Durable and OnDurable say
//     when records are on disk — under load every few ms, always within
//     d. A process crash (kill -9) loses nothing; a host crash loses at
//     most the appends of the last fsync's length plus 2 ms (at most d),
//     none of which was reported durable.
//   - SyncNever: no fsync at all; records count as durable once written.
//     A process crash loses nothing; a host crash can lose anything the
//     kernel had not written back (typically the last 30 s), acks and
//     segment removals included.
type SyncPolicy time.Duration

const (
	// SyncAlways syncs before Append returns.
	SyncAlways SyncPolicy = 0
	// SyncNever never syncs.
	SyncNever SyncPolicy = -1
)

// DefaultSyncInterval is SyncInterval's period in DefaultConfig.
const DefaultSyncInterval = 100 * time.Millisecond

// SyncInterval syncs in the background every d (d ≤ 0: SyncAlways).
func SyncInterval(d time.Duration) SyncPolicy {
	if d <= 0 {
		return SyncAlways
	}
	return SyncPolicy(d)
}

// Interval returns the period of a SyncInterval policy, 0 otherwise.
func (p SyncPolicy) Interval() time.Duration {
	if p > 0 {
		return time.Duration(p)
	}
	return 0
}

// String returns "always", "never" or "interval:100ms".
func (p SyncPolicy) String() string {
	switch {
	case p == SyncAlways:
		return "always"
	case p < 0:
		return "never"
	}
	return "interval:" + time.Duration(p).String()
}

// ParseSync reads a policy as --spool-sync takes it: "always", "never",
// "interval" (every DefaultSyncInterval), "interval:50ms", or a bare
// duration ("50ms").
func ParseSync(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "never":
		return SyncNever, nil
	case "interval":
		return SyncInterval(DefaultSyncInterval), nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(s, "interval:"))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("spool sync %q: want always, never, interval, or interval:DURATION (a positive duration such as 100ms)", s)
	}
	return SyncInterval(d), nil
}

// Config configures a Dir.
type Config struct {
	// SegmentBytes is the size at which a segment is closed and the next
	// begun (a record larger than it gets a segment of its own). Space is
	// freed a segment at a time, so it is also the granularity of
	// MaxBytes.
	SegmentBytes int64
	// MaxBytes caps the segments' total size on disk; Append refuses
	// with ErrFull past it. 0: no cap but the disk's (a full disk is
	// ErrFull too). The ack ledger and its 64 KiB reserve come on top.
	MaxBytes int64
	// Sync is the fsync policy.
	Sync SyncPolicy
	// AckInterval is how often acknowledgements are written to the ack
	// ledger and delivered segments removed. A crash loses at most this
	// much of acknowledgements: those records are replayed again.
	AckInterval time.Duration
	// ReadOnly opens without changing anything: no torn tail is cut, and
	// Append and Ack fail. For the tools; it works beside a running
	// writer.
	ReadOnly bool
	// OnDurable, if set, is called with each new Durable() value, in
	// increasing order, one call at a time, from the goroutine that
	// synced (Append's with SyncAlways and SyncNever, the background one
	// with SyncInterval). It must not block: hand the value over.
	OnDurable func(seq uint64)
	// OnDamage, if set, is told of every damaged stretch met: at Open (a
	// torn tail cut, an unreadable ack ledger), by Replay and by Scan.
	// Called on the goroutine that met it. Damage is counted in Stats
	// either way.
	OnDamage func(Damage)
	// SyncSeconds, if set, observes the latency of every data fsync.
	SyncSeconds *metrics.PrometheusHistogram
	// Log receives what the spool does on its own (segments removed,
	// failures of the background sync). nil: discarded.
	Log *slog.Logger
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// Keys, if set, seals every record Append writes with its current
	// key (AES-256-GCM, FlagSealed) and opens sealed records on reading.
	// Records not sealed stay readable either way. A sealed record whose
	// key is not in it (or with no Keys) is reported as DamageKey and
	// kept: not lost, it is read once its key is given.
	Keys *Keyring
}

// DefaultConfig returns 64 MiB segments, no cap, a sync every 100 ms and
// acknowledgements persisted every second.
func DefaultConfig() Config {
	return Config{
		SegmentBytes: DefaultSegmentBytes,
		Sync:         SyncInterval(DefaultSyncInterval),
		AckInterval:  time.Second,
	}
}

// Validate reports a setting out of range.
func (c *Config) Validate() error {
	switch {
	case c.SegmentBytes < FileHeaderSize+RecordHeaderSize:
		return fmt.Errorf("spool: segment bytes %d: want at least %d", c.SegmentBytes, FileHeaderSize+RecordHeaderSize)
	case c.MaxBytes < 0:
		return fmt.Errorf("spool: max bytes %d: must not be negative (0: no cap)", c.MaxBytes)
	case c.MaxBytes > 0 && c.MaxBytes < c.SegmentBytes:
		return fmt.Errorf("spool: max bytes %d below the segment size %d: space is freed a segment at a time, so the cap must hold at least one", c.MaxBytes, c.SegmentBytes)
	case c.AckInterval <= 0:
		return fmt.Errorf("spool: ack interval %v: must be positive", c.AckInterval)
	}
	return nil
}

// Stats describes a spool.
type Stats struct {
	// Bytes is the segments' size on disk, headers included.
	Bytes int64
	// Segments is the number of segment files.
	Segments int
	// Records is the number of records not acknowledged. Until a Replay,
	// Reread or Scan has read them, records lost to damage count here.
	Records uint64
	// Evicted is the number of those waiting to be read back by Reread
	// (Dir.Evicted): the caller holds Records - Evicted in memory.
	Evicted uint64
	// Oldest is the sequence of the oldest record not acknowledged (0:
	// none), and OldestAge its age: to within a second for records
	// appended since Open, from its segment's creation (an overestimate)
	// for older ones.
	Oldest    uint64
	OldestAge time.Duration
	// Last is the last sequence appended, Durable the last durable one,
	// AckFloor the highest at or below which every record is resolved.
	Last, Durable, AckFloor uint64
	// Syncs counts data fsyncs since Open.
	Syncs uint64
	// Dropped counts the records DropOldest gave up since Open (not
	// acknowledged, and not damage: the space was wanted).
	Dropped uint64
	// Damaged counts damage reports since Open, Lost the sequences they
	// lost, SkippedBytes the bytes they skipped.
	Damaged, Lost uint64
	SkippedBytes  int64
	// NeedKey counts the sealed records met since Open whose key is not
	// in Config.Keys (DamageKey): kept, not lost, and not read back
	// until a restart with their key.
	NeedKey uint64
}

// Damage is a stretch of a spool that could not be read back.
type Damage struct {
	// Kind says what was wrong.
	Kind DamageKind
	// Segment is the segment file's name ("" for the ack ledger), Offset
	// where the damaged bytes begin, Length how many were skipped.
	Segment string
	Offset  int64
	Length  int64
	// FirstSeq..LastSeq are the sequences lost with it, when known (0:
	// unknown, or none).
	FirstSeq, LastSeq uint64
	// Detail says what was found, in words.
	Detail string
	// Repair says what was done about it: "" (reported only), or e.g.
	// "cut" for a torn tail cut at Open.
	Repair string
	// Key is the key id a DamageKey wants.
	Key uint16
}

// Records returns how many sequences the damage lost (0: unknown).
func (d *Damage) Records() uint64 {
	if d.FirstSeq == 0 || d.LastSeq < d.FirstSeq {
		return 0
	}
	return d.LastSeq - d.FirstSeq + 1
}

// String says where and what, for logs and the tools.
func (d Damage) String() string {
	var b strings.Builder
	if d.Segment != "" {
		fmt.Fprintf(&b, "%s offset %d: ", d.Segment, d.Offset)
	}
	b.WriteString(d.Kind.String())
	if d.Detail != "" {
		b.WriteString(" (" + d.Detail + ")")
	}
	if d.Length > 0 {
		fmt.Fprintf(&b, ", %d bytes", d.Length)
	}
	switch n := d.Records(); {
	case d.Kind == DamageKey && n == 1:
		fmt.Fprintf(&b, ", record %d kept until its key is given", d.FirstSeq)
	case d.Kind == DamageKey && n > 1:
		fmt.Fprintf(&b, ", %d records kept until their key is given (%d-%d)", n, d.FirstSeq, d.LastSeq)
	case n == 1:
		fmt.Fprintf(&b, ", record %d lost", d.FirstSeq)
	case n > 1:
		fmt.Fprintf(&b, ", %d records lost (%d-%d)", n, d.FirstSeq, d.LastSeq)
	}
	if d.Repair != "" {
		b.WriteString(": " + d.Repair)
	}
	return b.String()
}

// DamageKind classifies damage.
type DamageKind uint8

const (
	// DamageTornTail: the newest segment ends inside a record, with no
	// valid record after: the write in progress when the host or process
	// stopped. The normal result of a crash; Open cuts it.
	DamageTornTail DamageKind = iota + 1
	// DamageChecksum: a record whose CRC-32C does not match; its length
	// was intact (the next record follows it), so exactly it is skipped.
	DamageChecksum
	// DamageLength: a length field out of range, or one that runs past
	// the segment or lands on no record. Found records after it are read
	// again (resynchronised); what cannot be is the rest of the segment.
	// No length is ever allocated before the bytes are there.
	DamageLength
	// DamagePartial: a segment that is not the newest ends inside a
	// record.
	DamagePartial
	// DamageFrame: a record intact by its CRC whose body is not a valid
	// DATA frame (the frame's own CRC-32C or its header fails).
	DamageFrame
	// DamageSequence: an intact record out of order (its sequence not
	// above the previous one): skipped.
	DamageSequence
	// DamageHeader: a segment file header that is not one; its records
	// are still read.
	DamageHeader
	// DamageGap: sequences missing with no damaged bytes to show for
	// them: a segment file removed by hand, or writes lost by a host
	// crash past the last sync.
	DamageGap
	// DamageAcks: the ack ledger cannot be read: every record is
	// replayed (duplicates, no loss).
	DamageAcks
	// DamageKey: sealed records (FlagSealed) whose key is not in the key
	// file (Config.Keys), or no key file given. Not lost: they are kept
	// (not resolved), not read back until a restart with their key, and
	// Stats.Lost does not count them.
	DamageKey
	// DamageSeal: a sealed record intact by its CRC whose seal fails:
	// altered (with its CRC made to match), moved from another record,
	// or too short to be one. Lost, like DamageFrame.
	DamageSeal
	numDamageKinds
)

var damageNames = [numDamageKinds]string{
	DamageTornTail: "torn tail",
	DamageChecksum: "checksum mismatch",
	DamageLength:   "bad length",
	DamagePartial:  "partial record at segment end",
	DamageFrame:    "bad frame",
	DamageSequence: "sequence out of order",
	DamageHeader:   "bad segment header",
	DamageGap:      "missing sequences",
	DamageAcks:     "ack ledger unreadable",
	DamageKey:      "key not in the key file",
	DamageSeal:     "seal fails authentication",
}

// String names the kind, e.g. "checksum mismatch".
func (k DamageKind) String() string {
	if k > 0 && k < numDamageKinds {
		return damageNames[k]
	}
	return "damage"
}

// Errors.
var (
	// ErrFull is returned by Append when the records would take the
	// spool past MaxBytes, or the disk is full: nothing of them was
	// kept, and the caller applies its overflow policy.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrReadOnly is returned by Append and Ack on a spool opened
	// ReadOnly.
	ErrReadOnly = errors.New("spool: opened read-only")
	// ErrTooLarge is returned by Append for a body over MaxBody.
	ErrTooLarge = errors.New("spool: record body over 16 MiB")
	// ErrBadFrame is returned by Append for a body that is not what its
	// kind says (a DATA frame, a dead letter around one).
	ErrBadFrame = errors.New("spool: not a DATA frame")
	// ErrBadKind is returned by Append for a kind this version does not
	// define.
	ErrBadKind = errors.New("spool: unknown record kind")
	// ErrBadAck is returned by Ack for a sequence not appended yet (or
	// 0): acknowledging it would drop a future record.
	ErrBadAck = errors.New("spool: acknowledged sequence was never appended")
	// ErrLocked is returned by Open when another process writes the
	// spool.
	ErrLocked = errors.New("spool: directory in use by another process")
	// ErrFailed wraps an fsync failure: the kernel may have dropped the
	// pages it could not write, so nothing after it can be called
	// durable. Every later Append fails with it; restart (Open) to go on
	// from what is on disk. (Not one for want of space under SyncAlways:
	// that is ErrFull for the Appends it concerned, and the spool goes
	// on.)
	ErrFailed = errors.New("spool: fsync failed")
	// ErrNothingToDrop is returned by DropOldest when no segment is left
	// but the newest, the one being written.
	ErrNothingToDrop = errors.New("spool: nothing to drop but the segment being written")
)
