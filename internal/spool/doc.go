// Package spool is logdist's disk spool: an append-only, crash-safe queue
// of packets (DATA frames as received, syslog batches, dead letters),
// replayed after a restart until an analyzer has acknowledged them. It is
// the storage layer only; the proxy drives it through its worker seam
// (proxy/worker.go), because everything here that touches the disk
// blocks.
//
// # Directory
//
//	spool.lock                 flock: exclusive for the writer, shared for the tools
//	00000000000000000001.seg   segments, named after their first record's sequence (20 digits)
//	00000000000000004711.seg
//	acks                       the ack ledger, replaced whole (via acks.tmp and rename)
//	acks.reserve               64 KiB kept for the ledger on a full disk (see Space); made
//	                           via acks.reserve.tmp, missing only until there is room
//
// The spool wants a directory of its own (e.g. <data-dir>/spool): the
// data directory's LOCK is another lock.
//
// # Segment format (version 1)
//
// Integers are big-endian, as in the wire protocol. A segment is a
// header and records, appended and never rewritten (only a repair
// rewrites one). Records never straddle segments; a segment is closed at
// Config.SegmentBytes (64 MiB) and the next begun.
//
//	segment header, 32 bytes:
//	  off len
//	    0   8 magic     "LDSPOOL1"
//	    8   2 version   1
//	   10   2 reserved  0
//	   12   8 base      sequence of the first record (= the file name)
//	   20   8 created   Unix nanoseconds
//	   28   4 crc       CRC-32C (Castagnoli) of bytes 0-27
//
//	record, 18 bytes and a body:
//	    0   4 length    n = 10 + len(body); 10 ≤ n ≤ 10 + MaxBody (16 MiB + 8 KiB)
//	    4   4 crc       CRC-32C of the n bytes that follow
//	    8   8 seq       1, 2, 3, … across segments; a sequence once durable
//	                    (or given up by a cut) is never reused — one appended
//	                    but lost unsynced in a host crash may be
//	   16   1 kind      1 data, 2 syslog, 3 dead letter (0 never: a zeroed stretch is no record)
//	   17   1 flags     bit 0 (0x01) FlagSealed: the body is sealed (below);
//	                    other bits: written 0, passed on as read
//	   18     body      data, syslog: one DATA frame, header and payload, exactly as
//	                    received (its own CRC-32C inside: both are checked on replay);
//	                    dead letter: the header below, then the DATA frame
//
//	sealed body (FlagSealed; Config.Keys, a key file: keys.go):
//	    0   2 key       the key's id in the key file, 1-65535
//	    2  12 nonce     random (crypto/rand), one per record
//	   14     sealed    the body above encrypted with AES-256-GCM, then its 16-byte tag;
//	                    additional data: seq (8 bytes) and kind (1 byte)
//
//	dead-letter body:
//	    0   1 reason    1 rejected by an analyzer, 2 retries exhausted
//	    1   2 code      the analyzer's packet error code (frame.Code), 0 if none
//	    3   8 time      Unix nanoseconds
//	   11   8 origin    spool sequence of the record it came from, 0 if none
//	   19 2+n analyzer  u16 length (≤ 255), name
//	    … 2+n error     u16 length (≤ 1024), the analyzer's error text
//	    …     frame     the DATA frame, to the end of the body
//
//	ack ledger ("acks"):
//	    0   8 magic     "LDSPACK1"
//	    8   8 floor     every sequence ≤ floor is resolved
//	   16   8 next      the writer's next sequence when written
//	   24   4 n         spans that follow
//	   28 16n spans     (u64 first, u64 last) resolved above floor+1, sorted, disjoint
//	    …   4 crc       CRC-32C of every byte before it
//
// testdata/golden pins these bytes, testdata/golden-sealed the sealed
// form (with a fixed key and nonces).
//
// # Encryption at rest
//
// With Config.Keys (a Keyring, from a key file of "ID HEX" lines, the
// first the current key), Append seals every body with the current key
// and sets FlagSealed; what is in clear is the headers: sequences,
// kinds, sizes, CRCs, times. The CRC covers the sealed bytes, so damage
// is found and skipped without the key. Readers open sealed bodies
// before the DATA-frame check; records not sealed (written before a key
// file was given) are read as ever. A sealed record whose key is not in
// the keyring (or with no keyring) is DamageKey: reported, not resolved,
// not lost — Reread holds it for the run (out of the evicted set, so it
// does not come back to it) and a restart with the key reads it back.
// A seal that fails authentication (altered, relabelled, moved) is
// DamageSeal: lost, like a bad frame. Rotation: a new first line in the
// key file; old records open while their key stays in it.
//
// # Guarantees
//
// Sequences: Append numbers records 1, 2, 3, … and no sequence is ever
// used twice, not after a restart, a torn tail, a failed Append, or the
// removal of every segment (the ledger keeps "next").
//
// Durability, by SyncPolicy: SyncAlways, a record Append returned
// survives a host crash; SyncInterval(d), the default (100 ms), a record
// survives a process crash (kill -9) at once and a host crash once
// Durable() covers it — a group commit fsyncs as soon as writes are
// pending, at most every 2 ms, so within milliseconds and at most d
// later — and OnDurable says when, so the proxy can acknowledge agents
// then; SyncNever, a process crash only.
// Segment creation and removal fsync the directory (except SyncNever).
//
// Acknowledgements: Ack marks a record delivered, in memory; every
// Config.AckInterval (1 s) the set of resolved sequences is written to
// the ledger (temporary file, fsync, rename, directory fsync), and then,
// only then, the segments whose records are all resolved are removed. A
// crash between a delivery and its acknowledgement's persistence replays
// the record again: a duplicate, which analyzers drop by (agent id,
// packet id). Nothing acknowledged late is ever lost, and nothing can be
// lost by a lost acknowledgement.
//
// Why a ledger file and not ack-marker records in the segments: the ack
// state must be known before replay begins, and markers come after the
// records they acknowledge (a first pass over every segment, or markers
// copied forward to keep old segments removable); acknowledgements arrive
// out of order across analyzers, so the state is a floor and spans, tiny
// to rewrite whole; and a ledger that is lost or damaged costs only
// duplicates, because it is never the authority on what exists: the
// segments are (see Vector below). It costs two fsyncs per AckInterval.
//
// Damage: every record is checked by its CRC-32C, and the DATA frame in
// it by its own. Damage is reported as Damage values with the segment,
// the offset, the bytes and the sequences lost (Config.OnDamage, Stats),
// and skipped as narrowly as the bytes allow:
//
//   - a torn tail (the newest segment ends in a partial or damaged record
//     with nothing intact after it: the normal result of a crash) is cut
//     at Open; its sequence is given up;
//   - a record whose CRC fails but whose length leads to an intact record
//     is that record alone (DamageChecksum);
//   - a length out of range, past the segment's end, or landing on no
//     record is never allocated: the reader reads through a window that
//     grows only to records the file really holds, and searches the
//     following bytes for the next intact record (known kind, plausible
//     sequence, matching CRC); only if there is none is the rest of the
//     segment lost (DamageLength);
//   - a record intact by its CRC whose frame fails its own (DamageFrame), a
//     header that is not one (DamageHeader, its records still read),
//     sequences missing with no bytes to show (DamageGap: a segment removed
//     by hand, writes a host crash took), an unreadable ledger (DamageAcks:
//     everything is replayed).
//
// Replay resolves what it found lost, so a restart does not report it
// again; Scan (the tools) reports all of it every time; Repair rewrites
// damaged segments with their intact records only. A segment of an
// unknown version stops Open instead of being judged.
//
// Eviction: the caller need not keep every record it spooled in memory.
// Evict(seq) says it let go of a record not acknowledged; Reread hands
// evicted records back, lowest sequence first, in batches bounded by a
// count and by bytes, each exactly once unless it is resolved first (an
// evicted record acknowledged is never read back). At Open every record
// not acknowledged counts as evicted, so after a restart Reread is the
// replay; records appended since Open are held until evicted. The
// evicted set is spans in memory, like the acknowledgements: evicting
// does no I/O and a long outage's millions of sequences are a few spans.
// Reread goes on from a cursor where the previous call stopped and
// reads only segments holding evicted records, so reading a backlog back
// in small batches reads each segment about once. Damage it meets is
// reported and resolved as Replay's is. An evicted record exists only in
// its segment: as durable as the sync policy made it, and lost only to
// damage (reported) or DropOldest (counted).
//
// Space: Config.MaxBytes caps the segments' total; Append refuses a
// batch that would pass it, or that the disk (or the user's quota:
// ENOSPC, EDQUOT) cannot take, with ErrFull, keeping nothing of it, and
// the caller applies its overflow policy. A full disk leaves nothing
// behind: once there is room, Append works again. (Under SyncAlways an
// fsync that fails for want of space fails the Appends waiting on it
// with ErrFull, their records given up. Under SyncInterval the records
// it was to make durable were already returned, and OnDurable cannot
// take back what it has not said, so that failure, like any other
// fsync failure, is ErrFailed until a restart.)
// Space comes back a whole segment at a time, once the ledger saying its
// records are resolved is written; that write needs space too, so the
// ledger keeps a reserve, acks.reserve (64 KiB of pseudo-random bytes,
// synced: room for a new ledger of 4,000 spans beside the old one),
// made at Open when missing (failing to is logged, not fatal). When the
// ledger cannot be written for want of space, the reserve is removed,
// the ledger written into its room, and the delivered segments removed:
// a disk filled by the spool empties as its records are delivered. A
// later housekeeping makes the reserve again once the file system has
// room for it; until then Append refuses (ErrFull) what would leave less
// free than the reserve and 16 KiB, so that the segments never take its
// room (Linux, where statfs says what is free). The spool's footprint
// is MaxBytes, the ledger and the reserve; Stats.Bytes counts the
// segments. A policy of dropping the
// oldest calls DropOldest: the oldest segment, never the newest, is
// given up, its records not acknowledged resolved and counted
// (Stats.Dropped, not damage), and its file removed at once. The ledger
// saying so is written first; if it cannot be (the disk full), the file
// goes all the same and housekeeping writes the ledger later. A restart
// after the ledger is written neither replays nor reports the dropped
// records; one before reports them as a DamageGap ("older segments are
// missing") and resolves them. No sequence is reused either way: the
// newest segment stays.
//
// # Use from the proxy
//
// Append, Sync, Replay, Reread, DropOldest, Repair and Close block on
// I/O: run them on a loop's worker (proxy/worker.go), a Job whose Done
// hands the result back to the loop. Ack, Durable, Evict and Evicted
// never wait for I/O; Stats may wait for an Append's write (call it from
// a metrics scrape). Append is meant for one goroutine and safe for
// several (concurrent SyncAlways appenders share an fsync: group commit);
// within one goroutine, a batch per Append is the group commit, and with
// SyncInterval many Appends share each background fsync. OnDurable runs
// on the syncing goroutine and must only hand the sequence over (gnet's
// Execute or a channel).
//
// Spill: the proxy keeps a bounded window of spooled records in memory.
// A record it cannot keep (the window full, an analyzer down) it evicts
// with Evict, from the loop, and forgets; when there is room again a
// worker calls Reread(max, maxBytes) and hands the records to the loop,
// which holds them again (fn must copy Body). After a restart the same
// loop is the replay: Open evicted everything not acknowledged, Evicted
// says how much waits, and nothing else replays it (use Reread or
// Replay, not both). Reread calls are one at a time (one worker); the
// cost of each is its records, not the backlog before them. On ErrFull
// with a drop-oldest policy the worker calls DropOldest and appends
// again; records of the dropped segment the proxy still holds may still
// be delivered (their Acks do nothing), and those evicted are gone.
//
// # Learned from others
//
// Vector's disk buffer v2 (lib/vector-buffers/src/variants/disk_v2):
// adopted data files of bounded size, CRC-32C per record, records never
// split across files, files deleted whole once every record is
// acknowledged, a size cap. Avoided: a memory-mapped ledger that is the
// authority on reader and writer positions, whose disagreement with the
// data files after a crash stopped Vector ("Last record written to data
// file is behind expected position. Events have likely been lost", issues
// 16231 and 16463: users deleted the buffer by hand) — here the segments
// are the truth and the ledger can only add duplicates; skipping a whole
// data file on one bad record; a record layout that is the in-memory one
// (rkyv, host byte order); a corrupted buffer making startup fail or spin
// (17644, 18130) — here damage is reported and skipped, never fatal.
//
// NATS JetStream's file store (server/filestore.go): adopted message
// blocks with a sequence in every record and a checksum, a state file
// with its own checksum that is trusted only when it agrees with the
// blocks, and the "lost data" report naming the sequences lost. Avoided:
// truncating a block at its first bad record (rebuildStateLocked), which
// loses every good record after it — here the reader resynchronises;
// sequences that restart after the blocks holding them are removed and
// the state file is not yet on disk (issues 2055 and 5412: consumers'
// ack floor ahead of the stream, PR 2753) — here "next" is persisted
// before a segment goes, and a torn sequence is never reused.
//
// Fluent Bit's filesystem chunks (chunkio): adopted a magic and version
// at the head of every file, and a storage size limit. Avoided: one
// optional CRC over a whole chunk, so that one bad byte discards every
// record in it (issues 3229, 7279) — here every record has its own, always
// on; a corrupted chunk stopping the start (5265) or leaving the agent
// running but stuck (11847), or never removed and retried at every start
// (4278); the size accounting forgotten at a restart (3060) — here it is
// the files' sizes; loading every chunk at start (5166) — here Open reads
// the headers and the newest segment, and Replay streams through a
// bounded window, Reread in bounded batches.
//
// # Version history
//
//	1  2026-12  first version.
package spool
