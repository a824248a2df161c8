package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

const spoolUsage = `Usage: logdist spool verify DIR [--repair] [--key-file FILE]
       logdist spool dump DIR [--pending] [--key-file FILE]
       logdist spool stats DIR [--json] [--key-file FILE]
       logdist spool keygen [ID]

Reads a disk spool (the directory of *.seg segment files).

  verify   checks every record's CRC-32C and sequence, and the DATA frame in it
           against its own CRC; prints each damage with its segment and offset.
           Exit 0: clean; 1: damage found; 2: the spool could not be read.
           With --repair (logdist must not be running on it): cuts torn tails,
           rewrites damaged segments with their intact records only, marks the
           sequences lost, and prints exactly what it skipped; exit 1 if it
           repaired anything. A verify after it exits 0.
  dump     one JSON object per record: seq, kind, segment, offset, acked, and the
           decoded packet (agent, packet_id, messages, bodies); dead letters add
           reason, code, analyzer, error. --pending: only records not acknowledged.
  stats    bytes, segments, records pending, the oldest one's age. With --key-file,
           it also reads the pending records and counts them by the key that
           sealed them: a key no record pending uses any more can be removed.
  keygen   prints a new key line "ID HEX" (32 random bytes; ID 1-65535, default 1)
           for a key file (logdist --spool-key-file): see docs/OPERATIONS.md,
           "Encryption at rest".

verify, dump and stats only read, and work beside a running logdist (the end of
its newest segment may then be a record being written, and is not judged).
A spool written with --spool-key-file holds sealed records: give the same key
file (--key-file) to open them. Without their key, sealed records are reported
as needing it ("needs key"), not as damage: their CRC is still checked.

Flags:
`

// runSpool is "logdist spool".
func runSpool(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("logdist spool", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	repair := fs.Bool("repair", false, "verify: repair what is damaged")
	pending := fs.Bool("pending", false, "dump: only the records not acknowledged")
	asJSON := fs.Bool("json", false, "stats: print JSON")
	keyFile := fs.String("key-file", "", "the key file logdist seals the spool with (--spool-key-file): needed to open sealed records")
	help := fs.BoolP("help", "h", false, "show this help")
	if code, ok := parseSubcommand(fs, args, help, 1, "spool", spoolUsage, stdout, stderr); !ok {
		return code
	}
	if fs.Arg(0) == "keygen" && fs.NArg() <= 2 {
		return spoolKeygen(fs.Arg(1), stdout, stderr)
	}
	if fs.NArg() != 2 {
		fmt.Fprint(stdout, spoolUsage+fs.FlagUsages())
		return 2
	}
	cmd, dir := fs.Arg(0), fs.Arg(1)
	var keys *spool.Keyring
	if *keyFile != "" {
		var err error
		if keys, err = spool.LoadKeyring(*keyFile); err != nil {
			fmt.Fprintf(stderr, "logdist spool: %v\n", err)
			return 2
		}
	}
	switch {
	case cmd == "verify" && *repair:
		return spoolRepair(dir, keys, stdout, stderr)
	case cmd == "verify":
		return spoolVerify(dir, keys, stdout, stderr)
	case cmd == "dump":
		return spoolDump(dir, keys, *pending, stdout, stderr)
	case cmd == "stats":
		return spoolStats(dir, keys, *asJSON, stdout, stderr)
	}
	fmt.Fprintf(stderr, "logdist spool: unknown command %q (see logdist spool --help)\n", cmd)
	return 2
}

// spoolKeygen is "logdist spool keygen [ID]".
func spoolKeygen(id string, stdout, stderr io.Writer) int {
	n := uint64(1)
	if id != "" {
		var err error
		if n, err = strconv.ParseUint(id, 10, 16); err != nil || n == 0 {
			fmt.Fprintf(stderr, "logdist spool keygen: key id %q: want a decimal number 1-65535\n", id)
			return 2
		}
	}
	fmt.Fprintln(stdout, spool.KeyLine(uint16(n)))
	return 0
}

// openSpool opens dir read-only, with keys (nil: none); damage met goes
// to onDamage.
func openSpool(dir string, keys *spool.Keyring, onDamage func(spool.Damage), stderr io.Writer) (*spool.Dir, bool) {
	cfg := spool.DefaultConfig()
	cfg.ReadOnly = true
	cfg.Keys = keys
	cfg.OnDamage = onDamage
	d, err := spool.Open(dir, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "logdist spool: %v\n", err)
		return nil, false
	}
	if d.Live() {
		fmt.Fprintf(stderr, "logdist spool: note: a logdist is writing %s; this is what it had written when read\n", dir)
	}
	return d, true
}

func spoolVerify(dir string, keys *spool.Keyring, stdout, stderr io.Writer) int {
	var found []spool.Damage
	var needKey uint64
	d, ok := openSpool(dir, keys, func(dmg spool.Damage) {
		if dmg.Kind == spool.DamageKey {
			needKey += dmg.Records()
			fmt.Fprintf(stdout, "needs key: %s\n", dmg)
			return
		}
		found = append(found, dmg)
		fmt.Fprintf(stdout, "damage: %s\n", dmg)
	}, stderr)
	if !ok {
		return 2
	}
	defer d.Close()
	var records, acked int
	kinds := map[spool.Kind]int{}
	if err := d.Scan(func(r spool.Record) error {
		records++
		kinds[r.Kind]++
		if r.Acked {
			acked++
		}
		return nil
	}); err != nil {
		fmt.Fprintf(stderr, "logdist spool verify: %v\n", err)
		return 2
	}
	st := d.Stats()
	fmt.Fprintf(stdout, "%s: %d segments, %d bytes, %d records (%d data, %d syslog, %d dead letters; %d acknowledged)",
		dir, st.Segments, st.Bytes, records, kinds[spool.KindData], kinds[spool.KindSyslog], kinds[spool.KindDeadLetter], acked)
	if needKey > 0 {
		fmt.Fprintf(stdout, "; %d sealed records not opened: their key is not given (--key-file), only their CRC-32C was checked", needKey)
	}
	if len(found) == 0 {
		fmt.Fprintln(stdout, ": clean")
		return 0
	}
	var lost uint64
	for i := range found {
		lost += found[i].Records()
	}
	fmt.Fprintf(stdout, ": %d damaged, %d records lost; logdist spool verify --repair %s cuts them out\n", len(found), lost, dir)
	return 1
}

func spoolRepair(dir string, keys *spool.Keyring, stdout, stderr io.Writer) int {
	cfg := spool.DefaultConfig()
	cfg.Sync = spool.SyncAlways
	cfg.Keys = keys
	n := 0
	cfg.OnDamage = func(dmg spool.Damage) { // a torn tail, cut at Open
		n++
		fmt.Fprintf(stdout, "repaired: %s\n", dmg)
	}
	d, err := spool.Open(dir, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "logdist spool verify --repair: %v\n", err)
		return 2
	}
	fixed, err := d.Repair()
	for _, dmg := range fixed {
		if dmg.Kind == spool.DamageKey { // kept: not damage
			fmt.Fprintf(stdout, "needs key: %s\n", dmg)
			continue
		}
		n++
		fmt.Fprintf(stdout, "repaired: %s\n", dmg)
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "logdist spool verify --repair: %v\n", err)
		return 2
	}
	if n == 0 {
		fmt.Fprintf(stdout, "%s: clean, nothing to repair\n", dir)
		return 0
	}
	fmt.Fprintf(stdout, "%s: %d damaged stretches repaired\n", dir, n)
	return 1
}

// dumpRecord is one line of logdist spool dump.
type dumpRecord struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind"`
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	Acked   bool   `json:"acked"`
	// Key is the id of the key that sealed the record (0: not sealed).
	Key uint16 `json:"key,omitempty"`

	// Dead letters.
	Reason   string     `json:"reason,omitempty"`
	Code     string     `json:"code,omitempty"`
	Analyzer string     `json:"analyzer,omitempty"`
	Error    string     `json:"error,omitempty"`
	DeadAt   *time.Time `json:"dead_at,omitempty"`
	Origin   uint64     `json:"origin,omitempty"`

	// The packet.
	Agent    string   `json:"agent"`
	PacketID uint64   `json:"packet_id"`
	TraceID  string   `json:"trace_id,omitempty"`
	Messages int      `json:"messages"`
	Bodies   []string `json:"bodies"`
	// Undecodable says why the packet did not decode (its frame is
	// intact: the analyzer would refuse it).
	Undecodable string `json:"undecodable,omitempty"`
}

func spoolDump(dir string, keys *spool.Keyring, pending bool, stdout, stderr io.Writer) int {
	damaged := 0
	d, ok := openSpool(dir, keys, func(dmg spool.Damage) {
		damaged++
		if dmg.Kind == spool.DamageKey {
			fmt.Fprintf(stderr, "needs key: %s\n", dmg)
			return
		}
		fmt.Fprintf(stderr, "damage: %s\n", dmg)
	}, stderr)
	if !ok {
		return 2
	}
	defer d.Close()
	dec := spoolDecoder()
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	var p frame.Packet
	each := func(r spool.Record) error {
		out := dumpRecord{Seq: r.Seq, Kind: r.Kind.String(), Segment: r.Segment, Offset: r.Offset, Acked: r.Acked, Key: r.Key}
		fb := r.Body
		switch r.Kind {
		case spool.KindData, spool.KindSyslog:
		case spool.KindDeadLetter:
			dl, err := spool.ParseDeadLetter(r.Body)
			if err != nil {
				out.Undecodable = err.Error()
				return enc.Encode(out)
			}
			t := dl.Time.UTC()
			out.Reason, out.Analyzer, out.Error, out.DeadAt, out.Origin = dl.Reason.String(), string(dl.Analyzer), string(dl.Error), &t, dl.Origin
			if dl.Code != 0 {
				out.Code = dl.Code.String()
			}
			fb = dl.Frame
		default:
			out.Undecodable = fmt.Sprintf("a kind this logdist does not know (%d bytes)", len(r.Body))
			return enc.Encode(out)
		}
		h := frame.Header(fb[:frame.HeaderSize])
		if err := dec.Decode(h, fb[frame.HeaderSize:], &p); err != nil {
			out.Undecodable = err.Error()
			return enc.Encode(out)
		}
		out.Agent, out.PacketID, out.TraceID, out.Messages = string(p.AgentID), p.ID, string(p.TraceID), len(p.Messages)
		out.Bodies = make([]string, len(p.Messages))
		for i := range p.Messages {
			out.Bodies[i] = string(p.Messages[i].Body)
		}
		return enc.Encode(out)
	}
	var err error
	if pending {
		err = d.Replay(each)
	} else {
		err = d.Scan(each)
	}
	if err != nil {
		fmt.Fprintf(stderr, "logdist spool dump: %v\n", err)
		return 2
	}
	if damaged > 0 {
		return 1
	}
	return 0
}

func spoolStats(dir string, keys *spool.Keyring, asJSON bool, stdout, stderr io.Writer) int {
	byKey := map[uint16]uint64{} // pending records by the key that sealed them (0: not sealed)
	d, ok := openSpool(dir, keys, func(dmg spool.Damage) {
		if dmg.Kind == spool.DamageKey {
			byKey[dmg.Key] += dmg.Records()
		}
	}, stderr)
	if !ok {
		return 2
	}
	defer d.Close()
	if keys != nil {
		// The key census: which keys the records not yet delivered need.
		if err := d.Replay(func(r spool.Record) error {
			byKey[r.Key]++
			return nil
		}); err != nil {
			fmt.Fprintf(stderr, "logdist spool stats: %v\n", err)
			return 2
		}
	}
	st := d.Stats()
	if asJSON {
		m := map[string]any{
			"bytes": st.Bytes, "segments": st.Segments, "records_pending": st.Records, "oldest_seq": st.Oldest,
			"oldest_age_seconds": st.OldestAge.Seconds(), "last_seq": st.Last, "ack_floor": st.AckFloor,
		}
		if keys != nil {
			sealed := map[string]uint64{}
			for id, n := range byKey {
				if id != 0 {
					sealed[strconv.Itoa(int(id))] = n
				}
			}
			m["pending_by_key"], m["pending_not_sealed"] = sealed, byKey[0]
		}
		b, err := json.Marshal(m)
		if err != nil {
			panic("BUG: stats do not marshal: " + err.Error())
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(stdout, "segments         %d\nbytes            %d\nrecords pending  %d\n", st.Segments, st.Bytes, st.Records)
	if st.Records > 0 {
		fmt.Fprintf(stdout, "oldest pending   #%d, %s old\n", st.Oldest, st.OldestAge.Round(time.Millisecond))
	}
	fmt.Fprintf(stdout, "last sequence    %d\nacknowledged to  %d\n", st.Last, st.AckFloor)
	if keys != nil {
		fmt.Fprintf(stdout, "pending, not sealed  %d\n", byKey[0])
		ids := slices.Sorted(maps.Keys(byKey))
		for _, id := range ids {
			if id == 0 {
				continue
			}
			note := ""
			switch {
			case !keys.Has(id):
				note = "  (not in the key file: these records cannot be read)"
			case id == keys.Current():
				note = "  (current)"
			}
			fmt.Fprintf(stdout, "pending, key %-5d   %d%s\n", id, byKey[id], note)
		}
		for _, id := range keys.IDs() {
			if byKey[id] == 0 && id != keys.Current() {
				fmt.Fprintf(stdout, "key %d: no pending record uses it (it may be removed from the key file)\n", id)
			}
		}
	}
	return 0
}

// spoolDecoder decodes any frame a spool may hold: what logdist took was
// within the limits of its configuration then, which the tools reading
// the spool do not know, so only the format's own bounds apply.
func spoolDecoder() *frame.Decoder {
	return frame.NewDecoder(frame.Limits{MaxFrame: frame.HardMaxFrame, MaxRaw: frame.HardMaxFrame, MaxMessages: math.MaxUint32,
		MaxField: math.MaxUint16, MaxBody: math.MaxUint32, MaxAttrs: math.MaxUint16})
}
