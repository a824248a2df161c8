package spool

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig: small segments, acknowledgements persisted every 10 ms,
// quiet.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 64 << 10
	cfg.AckInterval = 10 * time.Millisecond
	cfg.Log = slog.New(slog.DiscardHandler)
	return cfg
}

func open(t testing.TB, dir string, cfg Config) *Dir {
	t.Helper()
	d, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dataFrame returns an uncompressed DATA frame of about size bytes whose
// one message body names n.
func dataFrame(n, size int) []byte {
	body := []byte(fmt.Sprintf("message %d ", n))
	for len(body) < size-90 {
		body = append(body, byte('a'+len(body)%26))
	}
	p := frame.Packet{ID: uint64(n), AgentID: []byte("agent-" + fmt.Sprint(n%7)), Messages: []frame.Message{{
		Timestamp: int64(n) * 1e9, Severity: frame.SevInfo, Facility: 1, Hostname: []byte("host"), App: []byte("app"), Body: body,
	}}}
	var enc frame.Encoder
	return enc.AppendData(nil, uint64(n), &p, false)
}

// rec is a KindData record of dataFrame(n, size).
func rec(n, size int) Record { return Record{Kind: KindData, Body: dataFrame(n, size)} }

// appendN appends records first..first+n-1 (by dataFrame number), in
// batches of batch, and returns the sequences given.
func appendN(t testing.TB, d *Dir, first, n, batch, size int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := first; i < first+n; i += batch {
		var recs []Record
		for j := i; j < min(i+batch, first+n); j++ {
			recs = append(recs, rec(j, size))
		}
		last, err := d.Append(recs)
		if err != nil {
			t.Fatalf("Append of %d records from %d: %v", len(recs), i, err)
		}
		for k := range recs {
			seqs = append(seqs, last-uint64(len(recs)-1-k))
		}
	}
	return seqs
}

// got is a replayed record, copied.
type got struct {
	Seq     uint64
	Kind    Kind
	Body    []byte
	Segment string
	Offset  int64
	Acked   bool
}

func replay(t testing.TB, d *Dir) []got {
	t.Helper()
	var out []got
	if err := d.Replay(func(r Record) error {
		out = append(out, got{r.Seq, r.Kind, bytes.Clone(r.Body), r.Segment, r.Offset, r.Acked})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func scan(t testing.TB, d *Dir) []got {
	t.Helper()
	var out []got
	if err := d.Scan(func(r Record) error {
		out = append(out, got{r.Seq, r.Kind, bytes.Clone(r.Body), r.Segment, r.Offset, r.Acked})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func seqsOf(gs []got) []uint64 {
	s := make([]uint64, len(gs))
	for i, g := range gs {
		s[i] = g.Seq
	}
	return s
}

// seqRange returns first..last.
func seqRange(first, last uint64) []uint64 {
	var s []uint64
	for q := first; q <= last; q++ {
		s = append(s, q)
	}
	return s
}

func without(s []uint64, drop ...uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(s), func(v uint64) bool { return slices.Contains(drop, v) })
}

// damages collects what OnDamage is told.
type damages struct {
	mu   sync.Mutex
	list []Damage
}

func (ds *damages) add(d Damage) {
	ds.mu.Lock()
	ds.list = append(ds.list, d)
	ds.mu.Unlock()
}

func (ds *damages) take() []Damage {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	l := ds.list
	ds.list = nil
	return l
}

// segFiles returns the segment file names of dir, sorted.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// patch changes the bytes of dir/name at off with f.
func patch(t testing.TB, dir, name string, f func(b []byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reopen opens dir after a crash and replays it, returning the sequences
// and the damage reported (at Open and by Replay).
func reopen(t *testing.T, dir string) (*Dir, []uint64, []Damage) {
	t.Helper()
	var ds damages
	cfg := testConfig()
	cfg.OnDamage = ds.add
	d := open(t, dir, cfg)
	t.Cleanup(func() { d.Close() })
	return d, seqsOf(replay(t, d)), ds.take()
}

func wantDamage(t *testing.T, got []Damage, want ...Damage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("damage reported: %v\nwant: %v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Kind != w.Kind || g.Segment != w.Segment || g.Offset != w.Offset || g.FirstSeq != w.FirstSeq || g.LastSeq != w.LastSeq ||
			(w.Length != 0 && g.Length != w.Length) || g.Repair != w.Repair {
			t.Fatalf("damage %d: %+v\nwant %+v", i, g, w)
		}
	}
}

func mustBase(name string) uint64 {
	b, ok := parseSegmentName(name)
	if !ok {
		panic(fmt.Sprint("BUG: not a segment name: ", name))
	}
	return b
}
