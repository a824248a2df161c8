package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
)

// Many records of many sizes, in batches of many sizes, across many
// rotations: each segment is named after its first record, no record
// straddles two, and a reopened spool replays every one, in order, byte
// for byte.
func TestRoundTripAcrossRotations(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Sync = SyncNever
	d := open(t, dir, cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	var want [][]byte
	for n := 1; n <= 3000; {
		batch := min(1+rng.IntN(40), 3001-n)
		var recs []Record
		for range batch {
			recs = append(recs, rec(n, 100+rng.IntN(5000)))
			want = append(want, recs[len(recs)-1].Body)
			n++
		}
		last, err := d.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		if last != uint64(n-1) {
			t.Fatalf("Append returned %d, want %d", last, n-1)
		}
	}
	st := d.Stats()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 50 || st.Segments != len(files) || st.Records != 3000 || st.Last != 3000 {
		t.Fatalf("%d segment files, stats %+v", len(files), st)
	}
	var total int64
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
		base, _, err := parseFileHeader(b)
		if err != nil || segmentName(base) != name {
			t.Fatalf("%s: header base %d, err %v", name, base, err)
		}
		if first := binary.BigEndian.Uint64(b[FileHeaderSize+8:]); first != base {
			t.Fatalf("%s: first record %d", name, first)
		}
		if int64(len(b)) > cfg.SegmentBytes && len(b) > FileHeaderSize+RecordHeaderSize+5200 {
			t.Fatalf("%s: %d bytes, over the segment size with more than one record", name, len(b))
		}
	}
	if total != st.Bytes {
		t.Fatalf("files hold %d bytes, Stats.Bytes %d", total, st.Bytes)
	}

	d = open(t, dir, cfg)
	defer d.Close()
	gs := replay(t, d)
	if len(gs) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(gs), len(want))
	}
	for i, g := range gs {
		if g.Seq != uint64(i+1) || g.Kind != KindData || !bytes.Equal(g.Body, want[i]) || g.Segment == "" {
			t.Fatalf("record %d: seq %d kind %v segment %q, body equal %v", i+1, g.Seq, g.Kind, g.Segment, bytes.Equal(g.Body, want[i]))
		}
	}
	if st := d.Stats(); st.Records != 3000 || st.Damaged != 0 {
		t.Fatalf("after reopen: %+v", st)
	}
	// The next record continues the sequence in a new segment.
	if last, err := d.Append([]Record{rec(3001, 200)}); err != nil || last != 3001 {
		t.Fatalf("Append after reopen: %d %v", last, err)
	}
}

// SyncAlways: durable when Append returns. SyncInterval: Append returns
// before; the background sync makes it durable without another call,
// and OnDurable says so. SyncNever: durable (as far as it goes) at once,
// never an fsync.
func TestSyncPolicies(t *testing.T) {
	type result struct {
		d        *Dir
		last     uint64
		notified *atomic.Uint64
		set      *metrics.Set
	}
	start := func(t *testing.T, p SyncPolicy) result {
		r := result{notified: new(atomic.Uint64), set: metrics.NewSet()}
		cfg := testConfig()
		cfg.Sync = p
		cfg.SyncSeconds = r.set.NewPrometheusHistogram("fsync_seconds")
		var mu sync.Mutex
		cfg.OnDurable = func(seq uint64) {
			mu.Lock()
			defer mu.Unlock()
			if seq <= r.notified.Load() {
				t.Errorf("OnDurable(%d) after %d", seq, r.notified.Load())
			}
			r.notified.Store(seq)
		}
		r.d = open(t, t.TempDir(), cfg)
		t.Cleanup(func() { r.d.Close() })
		seqs := appendN(t, r.d, 1, 100, 10, 1400)
		r.last = seqs[len(seqs)-1]
		return r
	}
	t.Run("always", func(t *testing.T) {
		r := start(t, SyncAlways)
		if r.d.Durable() != r.last || r.notified.Load() != r.last {
			t.Fatalf("Durable %d, notified %d, want %d", r.d.Durable(), r.notified.Load(), r.last)
		}
		if st := r.d.Stats(); st.Syncs < 10 || st.Durable != r.last {
			t.Fatalf("stats %+v: want a sync per Append", st)
		}
		var b bytes.Buffer
		r.set.WritePrometheus(&b)
		if strings.Contains(b.String(), "fsync_seconds_count 0") || !strings.Contains(b.String(), "fsync_seconds_count") {
			t.Fatalf("fsync latency not observed:\n%s", b.String())
		}
	})
	t.Run("interval", func(t *testing.T) {
		r := start(t, SyncInterval(20*time.Millisecond))
		waitFor(t, "the background sync", func() bool { return r.d.Durable() == r.last && r.notified.Load() == r.last })
		if r.d.Stats().Syncs == 0 {
			t.Fatal("no fsync counted")
		}
	})
	t.Run("interval-not-yet", func(t *testing.T) {
		r := start(t, SyncInterval(time.Hour))
		if r.d.Durable() >= r.last {
			t.Fatalf("Durable %d before any sync, last %d", r.d.Durable(), r.last)
		}
		if err := r.d.Sync(); err != nil {
			t.Fatal(err)
		}
		if r.d.Durable() != r.last || r.notified.Load() != r.last {
			t.Fatalf("after Sync: Durable %d, notified %d, want %d", r.d.Durable(), r.notified.Load(), r.last)
		}
	})
	t.Run("never", func(t *testing.T) {
		r := start(t, SyncNever)
		if r.d.Durable() != r.last || r.notified.Load() != r.last {
			t.Fatalf("Durable %d, notified %d, want %d", r.d.Durable(), r.notified.Load(), r.last)
		}
		if st := r.d.Stats(); st.Syncs != 0 {
			t.Fatalf("SyncNever synced: %+v", st)
		}
	})
}

// Concurrent SyncAlways appenders share fsyncs and each gets its records
// durable before its Append returns.
func TestGroupCommit(t *testing.T) {
	cfg := testConfig()
	cfg.Sync = SyncAlways
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				last, err := d.Append([]Record{rec(g*1000+i+1, 1400)})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Durable() < last {
					t.Errorf("Append returned %d, Durable %d", last, d.Durable())
				}
			}
		})
	}
	wg.Wait()
	if st := d.Stats(); st.Last != 200 || st.Syncs > 200+uint64(st.Segments)*2 {
		t.Fatalf("stats %+v", st)
	}
	if got := len(replay(t, d)); got != 200 {
		t.Fatalf("replayed %d", got)
	}
}

// Append refuses what it cannot keep, with typed errors, before writing
// anything; Ack refuses sequences not appended; a second writer is
// locked out; a reader is not.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	d := open(t, dir, cfg)
	good := rec(1, 100)
	f := func(want error, r Record) {
		t.Helper()
		if _, err := d.Append([]Record{good, r}); !errors.Is(err, want) {
			t.Fatalf("Append(%v, %d bytes): %v, want %v", r.Kind, len(r.Body), err, want)
		}
	}
	f(ErrBadKind, Record{Kind: 0, Body: good.Body})
	f(ErrBadKind, Record{Kind: 9, Body: good.Body})
	f(ErrTooLarge, Record{Kind: KindData, Body: make([]byte, MaxBody+1)})
	f(ErrBadFrame, Record{Kind: KindData, Body: []byte("hello")})
	f(ErrBadFrame, Record{Kind: KindData, Body: good.Body[:len(good.Body)-1]})
	f(ErrBadFrame, Record{Kind: KindSyslog, Body: frame.AppendFrame(nil, frame.TypePing, 1, 0, nil)})
	f(ErrBadFrame, Record{Kind: KindDeadLetter, Body: good.Body})
	if st := d.Stats(); st.Last != 0 || st.Bytes != 0 {
		t.Fatalf("a refused batch left %+v", st)
	}
	if err := d.Ack(1); !errors.Is(err, ErrBadAck) {
		t.Fatalf("Ack of a sequence never appended: %v", err)
	}
	if _, err := d.Append([]Record{good}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(0); !errors.Is(err, ErrBadAck) {
		t.Fatalf("Ack(0): %v", err)
	}
	if err := d.Ack(1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	ro := cfg
	ro.ReadOnly = true
	r := open(t, dir, ro)
	if !r.live {
		t.Fatal("reader beside a writer not marked live")
	}
	if _, err := r.Append([]Record{good}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Append on a reader: %v", err)
	}
	if err := r.Ack(1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Ack on a reader: %v", err)
	}
	r.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Append([]Record{good}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := d.Replay(func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "nope"), ro); err == nil {
		t.Fatal("read-only Open of a missing directory")
	}
}

// Past MaxBytes Append refuses the whole batch with ErrFull and writes
// nothing of it; acknowledging frees whole segments, and Append works
// again.
func TestErrFull(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Sync = SyncNever
	cfg.SegmentBytes = 16 << 10
	cfg.MaxBytes = 4 * cfg.SegmentBytes
	d := open(t, dir, cfg)
	defer d.Close()
	var accepted uint64
	for n := 1; ; n += 3 {
		last, err := d.Append([]Record{rec(n, 1400), rec(n+1, 1400), rec(n+2, 1400)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted = last
	}
	st := d.Stats()
	if st.Bytes > cfg.MaxBytes || st.Last != accepted || st.Bytes+3*1450 < cfg.MaxBytes-FileHeaderSize*2 {
		t.Fatalf("at the cap: %+v, accepted %d", st, accepted)
	}
	if n := len(replay(t, d)); uint64(n) != accepted {
		t.Fatalf("replayed %d, accepted %d", n, accepted)
	}
	for seq := uint64(1); seq <= accepted; seq++ {
		if err := d.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "delivered segments to be removed", func() bool {
		_, err := d.Append([]Record{rec(1, 1400)})
		return err == nil
	})
}

// Dead letters keep the frame, the reason and the analyzer's error, and
// come back from Replay as written.
func TestDeadLetter(t *testing.T) {
	fb := dataFrame(7, 300)
	in := DeadLetter{Reason: ReasonRejected, Code: frame.CodeRejected, Time: time.Unix(1700000000, 5), Origin: 42,
		Analyzer: []byte("a2"), Error: []byte("unprocessable: schema"), Frame: fb}
	d := open(t, t.TempDir(), testConfig())
	defer d.Close()
	if _, err := d.Append([]Record{{Kind: KindDeadLetter, Body: AppendDeadLetter(nil, &in)}}); err != nil {
		t.Fatal(err)
	}
	gs := replay(t, d)
	if len(gs) != 1 || gs[0].Kind != KindDeadLetter {
		t.Fatalf("replayed %+v", gs)
	}
	out, err := ParseDeadLetter(gs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if out.Reason != in.Reason || out.Code != in.Code || !out.Time.Equal(in.Time) || out.Origin != 42 ||
		string(out.Analyzer) != "a2" || string(out.Error) != string(in.Error) || !bytes.Equal(out.Frame, fb) {
		t.Fatalf("dead letter came back as %+v", out)
	}
	long := in
	long.Error = bytes.Repeat([]byte("x"), 5000)
	if got, _ := ParseDeadLetter(AppendDeadLetter(nil, &long)); len(got.Error) != maxDeadError {
		t.Fatalf("error text not clipped: %d bytes", len(got.Error))
	}
	if ReasonRetries.String() != "retries-exhausted" || KindDeadLetter.String() != "dead-letter" || Kind(9).String() != "kind-9" {
		t.Fatal("names")
	}
}

// The oldest pending record's age follows the clock, and resets when it
// is acknowledged.
func TestOldestAge(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := testConfig()
	cfg.Now = func() time.Time { return time.Unix(0, now.Load()) }
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	appendN(t, d, 1, 10, 10, 500)
	now.Add(int64(5 * time.Second))
	appendN(t, d, 11, 10, 10, 500)
	now.Add(int64(2 * time.Second))
	if st := d.Stats(); st.OldestAge != 7*time.Second || st.Oldest != 1 || st.Records != 20 {
		t.Fatalf("stats %+v", st)
	}
	for seq := uint64(1); seq <= 10; seq++ {
		d.Ack(seq)
	}
	if st := d.Stats(); st.OldestAge != 2*time.Second || st.Oldest != 11 || st.Records != 10 || st.AckFloor != 10 {
		t.Fatalf("after acks: %+v", st)
	}
}

// Appending (no rotation) and acknowledging allocate nothing in the
// steady state.
func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cfg := testConfig()
	cfg.Sync = SyncNever
	cfg.SegmentBytes = 64 << 20
	cfg.Now = func() time.Time { return time.Unix(1, 0) }
	d := open(t, t.TempDir(), cfg)
	defer d.Close()
	recs := []Record{rec(1, 1400), rec(2, 1400), rec(3, 1400)}
	if _, err := d.Append(recs); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	if n := testing.AllocsPerRun(200, func() {
		last, err := d.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		seq = last
	}); n != 0 {
		t.Fatalf("Append: %v allocations", n)
	}
	next := uint64(1)
	if n := testing.AllocsPerRun(200, func() {
		d.Ack(next)
		next++
	}); n != 0 || next > seq {
		t.Fatalf("Ack: %v allocations", n)
	}
}

func TestParseSync(t *testing.T) {
	f := func(in string, want SyncPolicy, ok bool) {
		t.Helper()
		p, err := ParseSync(in)
		if (err == nil) != ok || p != want {
			t.Fatalf("ParseSync(%q) = %v, %v", in, p, err)
		}
		if ok && in != "interval" && !strings.HasPrefix(in, "5") && p.String() != in {
			t.Fatalf("String() = %q, want %q", p.String(), in)
		}
	}
	f("always", SyncAlways, true)
	f("never", SyncNever, true)
	f("interval", SyncInterval(100*time.Millisecond), true)
	f("interval:50ms", SyncInterval(50*time.Millisecond), true)
	f("50ms", SyncInterval(50*time.Millisecond), true)
	f("interval:0s", 0, false)
	f("sometimes", 0, false)
}

func TestConfigValidate(t *testing.T) {
	f := func(mod func(*Config), want string) {
		t.Helper()
		c := DefaultConfig()
		mod(&c)
		err := c.Validate()
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Fatalf("got %v, want %q", err, want)
		}
	}
	f(func(*Config) {}, "")
	f(func(c *Config) { c.SegmentBytes = 10 }, "segment bytes")
	f(func(c *Config) { c.MaxBytes = 1 << 20 }, "below the segment size")
	f(func(c *Config) { c.MaxBytes = -1 }, "negative")
	f(func(c *Config) { c.AckInterval = 0 }, "ack interval")
}

// Appends, acknowledgements as records become durable, Replays, Stats
// and the housekeeping at once (run with -race): afterwards a restart
// replays exactly what was not acknowledged.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 32 << 10
	cfg.Sync = SyncInterval(2 * time.Millisecond)
	var durable atomic.Uint64
	wake := make(chan struct{}, 1)
	cfg.OnDurable = func(seq uint64) { // hand it over, never block
		durable.Store(seq)
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	d := open(t, dir, cfg)
	const n = 2000
	var wg sync.WaitGroup
	wg.Go(func() { appendN(t, d, 1, n, 20, 700) })
	acked := make(map[uint64]bool)
	wg.Go(func() {
		var next uint64 = 1
		for next <= n {
			<-wake
			for upto := durable.Load(); next <= upto; next++ {
				if next%3 != 0 { // leave every third
					if err := d.Ack(next); err != nil {
						t.Error(err)
						return
					}
					acked[next] = true
				}
			}
		}
	})
	wg.Go(func() {
		for range 5 {
			var prev uint64
			if err := d.Replay(func(r Record) error {
				if r.Seq <= prev {
					t.Errorf("Replay: %d after %d", r.Seq, prev)
				}
				prev = r.Seq
				return nil
			}); err != nil {
				t.Error(err)
			}
			_ = d.Stats()
		}
	})
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, seqs, dmg := reopen(t, dir)
	var want []uint64
	for seq := uint64(1); seq <= n; seq++ {
		if !acked[seq] {
			want = append(want, seq)
		}
	}
	if len(dmg) != 0 || !slices.Equal(seqs, want) {
		t.Fatalf("damage %v; replayed %d records, want %d", dmg, len(seqs), len(want))
	}
}
