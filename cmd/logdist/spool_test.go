package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

func spoolCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runSpool(args, &out, &errb)
	return code, out.String(), errb.String()
}

// testSpool writes a spool of n data records (packet i from agent
// "agent-<i%3>", one message "message <i>"), a dead letter, and
// acknowledges the first five; it returns the directory and each
// record's segment and offset by sequence.
func testSpool(t *testing.T, n int) (string, map[uint64]spool.Record) {
	t.Helper()
	dir := t.TempDir()
	cfg := spool.DefaultConfig()
	cfg.SegmentBytes = 8 << 10
	d, err := spool.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var enc frame.Encoder
	for i := 1; i <= n; i++ {
		p := frame.Packet{ID: uint64(1000 + i), AgentID: []byte(fmt.Sprintf("agent-%d", i%3)), Messages: []frame.Message{
			{Timestamp: int64(i), Severity: frame.SevInfo, Hostname: []byte("h"), App: []byte("a"), Body: []byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", 300)))},
		}}
		if _, err := d.Append([]spool.Record{{Kind: spool.KindData, Body: enc.AppendData(nil, uint64(i), &p, i%2 == 0)}}); err != nil {
			t.Fatal(err)
		}
	}
	p := frame.Packet{ID: 7, AgentID: []byte("agent-dl"), Messages: []frame.Message{{Body: []byte("refused")}}}
	dl := spool.AppendDeadLetter(nil, &spool.DeadLetter{Reason: spool.ReasonRejected, Code: frame.CodeRejected,
		Time: time.Unix(1767225600, 0), Analyzer: []byte("a1"), Error: []byte("bad schema"), Frame: enc.AppendData(nil, 1, &p, false)})
	if _, err := d.Append([]spool.Record{{Kind: spool.KindDeadLetter, Body: dl}}); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		d.Ack(seq)
	}
	where := map[uint64]spool.Record{}
	if err := d.Scan(func(r spool.Record) error {
		where[r.Seq] = spool.Record{Seq: r.Seq, Segment: r.Segment, Offset: r.Offset, Body: bytes.Clone(r.Body)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, where
}

// verify on a damaged spool names each damage by segment and offset and
// exits 1; --repair cuts the torn tail and skips the damaged record,
// saying so; verify then exits 0.
func TestSpoolVerifyRepair(t *testing.T) {
	dir, where := testSpool(t, 40)
	code, out, errs := spoolCmd("verify", dir)
	if code != 0 || !strings.HasSuffix(out, ": clean\n") || !strings.Contains(out, "41 records (40 data, 0 syslog, 1 dead letters; 5 acknowledged)") {
		t.Fatalf("verify on a clean spool: %d %q %q", code, out, errs)
	}

	// A bit flipped in record 20, and the newest segment torn.
	bad := where[20]
	flip(t, filepath.Join(dir, bad.Segment), bad.Offset+100)
	last := where[41]
	path := filepath.Join(dir, last.Segment)
	if err := os.Truncate(path, last.Offset+30); err != nil {
		t.Fatal(err)
	}
	code, out, _ = spoolCmd("verify", dir)
	wantLines(t, "verify", code, 1, out,
		fmt.Sprintf(`damage: %s offset %d: checksum mismatch \(record CRC-32C does not match\), %d bytes, record 20 lost`, bad.Segment, bad.Offset, spool.RecordHeaderSize+len(bad.Body)),
		fmt.Sprintf(`damage: %s offset %d: torn tail .*, 30 bytes, record 41 lost`, last.Segment, last.Offset),
		`: 2 damaged, 2 records lost; logdist spool verify --repair `)

	code, out, _ = spoolCmd("verify", "--repair", dir)
	wantLines(t, "verify --repair", code, 1, out,
		fmt.Sprintf(`repaired: %s offset %d: torn tail .*: cut`, last.Segment, last.Offset),
		fmt.Sprintf(`repaired: %s offset %d: checksum mismatch .*, record 20 lost: rewritten without the damaged bytes`, bad.Segment, bad.Offset),
		`: 2 damaged stretches repaired`)

	code, out, errs = spoolCmd("verify", dir)
	if code != 0 || !strings.Contains(out, "39 records (39 data, 0 syslog, 0 dead letters; 5 acknowledged): clean") {
		t.Fatalf("verify after repair: %d %q %q", code, out, errs)
	}
	if code, out, _ = spoolCmd("verify", "--repair", dir); code != 0 || !strings.Contains(out, "nothing to repair") {
		t.Fatalf("repair of a clean spool: %d %q", code, out)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantLines checks the exit code and that each pattern matches a line,
// in order.
func wantLines(t *testing.T, what string, code, wantCode int, out string, patterns ...string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: exit %d, want %d:\n%s", what, code, wantCode, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(patterns) {
		t.Fatalf("%s: %d lines, want %d:\n%s", what, len(lines), len(patterns), out)
	}
	for i, p := range patterns {
		if !regexp.MustCompile(p).MatchString(lines[i]) {
			t.Fatalf("%s: line %d is\n  %s\nwant it to match\n  %s", what, i+1, lines[i], p)
		}
	}
}

// dump prints a JSON line per record with the decoded packet; --pending
// leaves out what was acknowledged.
func TestSpoolDump(t *testing.T) {
	dir, where := testSpool(t, 12)
	code, out, errs := spoolCmd("dump", dir)
	if code != 0 {
		t.Fatalf("dump: %d %q", code, errs)
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		recs = append(recs, m)
	}
	if len(recs) != 13 {
		t.Fatalf("%d records dumped", len(recs))
	}
	r := recs[7] // seq 8, compressed
	if r["seq"] != 8.0 || r["kind"] != "data" || r["segment"] != where[8].Segment || r["offset"] != float64(where[8].Offset) ||
		r["acked"] != false || r["agent"] != "agent-2" || r["packet_id"] != 1008.0 || r["messages"] != 1.0 ||
		!strings.HasPrefix(r["bodies"].([]any)[0].(string), "message 8 xxx") {
		t.Fatalf("record 8: %v", r)
	}
	if recs[0]["acked"] != true {
		t.Fatalf("record 1 not acked: %v", recs[0])
	}
	dl := recs[12]
	if dl["kind"] != "dead-letter" || dl["reason"] != "rejected" || dl["code"] != "rejected" || dl["analyzer"] != "a1" ||
		dl["error"] != "bad schema" || dl["agent"] != "agent-dl" || dl["bodies"].([]any)[0] != "refused" || dl["dead_at"] != "2026-01-01T00:00:00Z" {
		t.Fatalf("dead letter: %v", dl)
	}
	code, out, _ = spoolCmd("dump", "--pending", dir)
	if n := strings.Count(out, "\n"); code != 0 || n != 8 || !strings.HasPrefix(out, `{"seq":6,`) {
		t.Fatalf("dump --pending: %d, %d lines:\n%s", code, n, out)
	}
}

func TestSpoolStats(t *testing.T) {
	dir, _ := testSpool(t, 12)
	code, out, _ := spoolCmd("stats", dir)
	if code != 0 || !strings.Contains(out, "records pending  8\n") || !strings.Contains(out, "oldest pending   #6,") || !strings.Contains(out, "last sequence    13\n") {
		t.Fatalf("stats: %d\n%s", code, out)
	}
	code, out, _ = spoolCmd("stats", "--json", dir)
	var m map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m["records_pending"] != 8.0 || m["ack_floor"] != 5.0 {
		t.Fatalf("stats --json: %d %s", code, out)
	}
}

// Bad usage exits 2; an unreadable spool exits 2 with the reason.
func TestSpoolUsage(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		code, out, errs := spoolCmd(args...)
		if code != 2 || !strings.Contains(out+errs, want) {
			t.Fatalf("%v: %d %q %q", args, code, out, errs)
		}
	}
	f("Usage: logdist spool verify DIR")
	f("unknown command", "check", t.TempDir())
	f("unknown flag", "verify", "--fix", t.TempDir())
	f("no such file", "verify", filepath.Join(t.TempDir(), "nope"))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), newerSegment(), 0o600)
	f("newer logdist", "stats", dir)
	if code, out, _ := spoolCmd("--help"); code != 0 || !strings.Contains(out, "--repair") {
		t.Fatalf("--help: %d %q", code, out)
	}
}

// newerSegment is a segment header of format version 2.
func newerSegment() []byte {
	h := make([]byte, spool.FileHeaderSize)
	copy(h, spool.Magic)
	binary.BigEndian.PutUint16(h[8:], 2)
	binary.BigEndian.PutUint64(h[12:], 1)
	binary.BigEndian.PutUint32(h[28:], crc32c(h[:28]))
	return h
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
