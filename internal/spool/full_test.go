//go:build linux

package spool

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size (e.g. "1m") on a temporary directory
// and unmounts it when the test ends; the test is skipped when that is
// not possible (not root, no mount(8), no tmpfs).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: not root, so no small tmpfs can be mounted to fill (run as root to test a really full disk)")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("skipped: cannot mount a %s tmpfs on %s: %v %s", size, dir, err, out)
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func free(t *testing.T, dir string) int64 {
	t.Helper()
	n, ok := freeSpace(dir)
	if !ok {
		t.Fatal("statfs failed")
	}
	return n
}

// fill appends single records until the disk refuses one, which must be
// ErrFull keeping nothing of it; it returns the sequences stored.
func fill(t *testing.T, d *Dir) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 1; ; i++ {
		last, err := d.Append([]Record{rec(i, 300)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("Append %d: %v (want success, or ErrFull once the disk is full)", i, err)
		}
		seqs = append(seqs, last)
		if i > 100000 {
			t.Fatal("the disk never filled")
		}
	}
	if len(seqs) == 0 {
		t.Fatal("nothing fit")
	}
	if st := d.Stats(); st.Records != uint64(len(seqs)) {
		t.Fatalf("after ErrFull the spool holds %d records, want the %d stored (nothing of the refused one)", st.Records, len(seqs))
	}
	if e := d.failure.Load(); e != nil {
		t.Fatalf("a full disk failed the spool for good: %v", *e)
	}
	return seqs
}

// On a full disk the ack ledger cannot be written, and without it no
// delivered segment may go: the spool would stay full for ever. The
// reserve gives the ledger its room; the segments go, the space comes
// back, Append works again, and the reserve is made again.
func TestFullDiskGivesSpaceBack(t *testing.T) {
	for _, how := range []string{"housekeeping", "close"} {
		t.Run(how, func(t *testing.T) {
			dir := smallDisk(t, "1m")
			cfg := testConfig()
			cfg.MaxBytes = 0 // the disk is the limit
			if how == "close" {
				cfg.AckInterval = time.Hour // only Close housekeeps
			}
			d := open(t, dir, cfg)
			defer func() { d.Close() }()
			if fi, err := os.Stat(filepath.Join(dir, reserveFile)); err != nil || fi.Size() != reserveBytes {
				t.Fatalf("reserve after Open: %v %v, want %d bytes", fi, err, reserveBytes)
			}

			seqs := fill(t, d)
			// Full: with the reserve, or (housekeeping may have written
			// the ledger since, the refused batch's sequence given up) in
			// the room it left, which Append keeps free.
			if f := free(t, dir); f >= reserveBytes {
				t.Fatalf("%d bytes free after ErrFull: the disk is not full", f)
			}
			segs := d.Stats().Segments
			for _, s := range seqs {
				if err := d.Ack(s); err != nil {
					t.Fatal(err)
				}
			}

			switch how {
			case "housekeeping":
				waitFor(t, "the delivered segments removed", func() bool {
					st := d.Stats()
					return st.Segments == 0 && st.Bytes == 0
				})
			case "close":
				if f := free(t, dir); f >= 4096 {
					t.Fatalf("%d bytes free before Close: the disk is not full", f)
				}
				if err := d.Close(); err != nil {
					t.Fatalf("Close on a full disk: %v", err)
				}
				if got := segFiles(t, dir); len(got) != 0 {
					t.Fatalf("after Close, segments left: %v", got)
				}
				if _, err := os.Stat(filepath.Join(dir, reserveFile)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("reserve after Close on a full disk: %v, want it given up for the ledger", err)
				}
				d = open(t, dir, cfg) // makes the reserve at Open
			}
			if f := free(t, dir); f < 512<<10 {
				t.Fatalf("only %d bytes free after %d delivered segments went", f, segs)
			}
			waitFor(t, "the reserve made again", func() bool {
				fi, err := os.Stat(filepath.Join(dir, reserveFile))
				return err == nil && fi.Size() == reserveBytes
			})
			if _, err := os.Stat(filepath.Join(dir, reserveTemp)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left behind: %v", reserveTemp, err)
			}

			more := appendN(t, d, 100001, 20, 1, 300)
			if more[0] <= seqs[len(seqs)-1] {
				t.Fatalf("sequence %d reused (last before: %d)", more[0], seqs[len(seqs)-1])
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			_, got, dmg := reopen(t, dir)
			if !slices.Equal(got, more) || len(dmg) != 0 {
				t.Fatalf("replayed %v (damage %v), want %v", got, dmg, more)
			}
		})
	}
}

// A quota (EDQUOT) is a full disk too: ErrFull, nothing kept, and the
// spool goes on.
func TestQuotaIsFull(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, testConfig())
	defer d.Close()
	before := appendN(t, d, 1, 5, 1, 300)
	segWriteAt = func(*os.File, []byte, int64) (int, error) { return 0, syscall.EDQUOT }
	_, err := d.Append([]Record{rec(6, 300), rec(7, 300)})
	segWriteAt = func(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append over quota: %v, want ErrFull", err)
	}
	after := appendN(t, d, 8, 5, 1, 300)
	if got := seqsOf(replay(t, d)); !slices.Equal(got, append(before, after...)) {
		t.Fatalf("replayed %v", got)
	}
}

// Under SyncAlways an fsync that fails for want of space (a file system
// that allocates at writeback) fails the Appends waiting on it with
// ErrFull and gives their records up, without failing the spool for
// good; one that fails otherwise (EIO) does.
func TestSyncAlwaysNoSpace(t *testing.T) {
	defer func() { segSync = datasync }()
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Sync = SyncAlways
	var mu sync.Mutex
	var durable []uint64
	cfg.OnDurable = func(seq uint64) {
		mu.Lock()
		durable = append(durable, seq)
		mu.Unlock()
	}
	d := open(t, dir, cfg)
	before := appendN(t, d, 1, 5, 1, 300)

	segSync = func(*os.File) error { return &os.PathError{Op: "fdatasync", Path: "x", Err: syscall.ENOSPC} }
	if _, err := d.Append([]Record{rec(6, 300), rec(7, 300)}); !errors.Is(err, ErrFull) {
		t.Fatalf("Append whose fsync ran out of space: %v, want ErrFull", err)
	}
	segSync = datasync
	if err := d.Sync(); err != nil {
		t.Fatalf("Sync after the give-up: %v", err)
	}
	after := appendN(t, d, 8, 5, 1, 300)
	if e := d.failure.Load(); e != nil {
		t.Fatalf("the spool failed for good: %v", *e)
	}
	if got := seqsOf(replay(t, d)); !slices.Equal(got, append(before, after...)) {
		t.Fatalf("replayed %v, want %v", got, append(before, after...))
	}
	if dur := d.Durable(); dur != after[len(after)-1] {
		t.Fatalf("Durable %d, want %d", dur, after[len(after)-1])
	}
	mu.Lock()
	if !slices.IsSorted(durable) {
		t.Fatalf("OnDurable out of order: %v", durable)
	}
	mu.Unlock()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, got, _ := reopen(t, dir)
	if !slices.Equal(got, append(before, after...)) {
		t.Fatalf("after a restart replayed %v, want %v", got, append(before, after...))
	}

	// EIO is for good.
	d2 := open(t, t.TempDir(), cfg)
	defer d2.Close()
	appendN(t, d2, 1, 2, 1, 300)
	segSync = func(*os.File) error { return &os.PathError{Op: "fdatasync", Path: "x", Err: syscall.EIO} }
	_, err := d2.Append([]Record{rec(3, 300)})
	segSync = datasync
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Append whose fsync failed with EIO: %v, want ErrFailed", err)
	}
	if _, err := d2.Append([]Record{rec(4, 300)}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after an EIO: %v, want ErrFailed", err)
	}
}

// Concurrent SyncAlways appenders sharing a failed fsync all fail with
// ErrFull (none is told its records are stored), and none of their
// records is replayed.
func TestSyncAlwaysNoSpaceConcurrent(t *testing.T) {
	defer func() { segSync = datasync }()
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Sync = SyncAlways
	d := open(t, dir, cfg)
	defer d.Close()
	before := appendN(t, d, 1, 1, 1, 300) // the segment exists (its creation fsyncs too)
	var failing sync.WaitGroup
	gate := make(chan struct{})
	var once sync.Once
	segSync = func(f *os.File) error {
		once.Do(func() { <-gate }) // hold the first fsync until all have written
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.ENOSPC}
	}
	const n = 8
	errs := make([]error, n)
	for i := range n {
		failing.Add(1)
		go func() {
			defer failing.Done()
			_, errs[i] = d.Append([]Record{rec(i+2, 300)})
		}()
	}
	waitFor(t, "every batch written", func() bool { return d.written.Load() == n+1 })
	close(gate)
	failing.Wait()
	segSync = datasync
	for i, err := range errs {
		if !errors.Is(err, ErrFull) {
			t.Fatalf("appender %d: %v, want ErrFull", i, err)
		}
	}
	after := appendN(t, d, 100, 3, 1, 300)
	if got, want := seqsOf(replay(t, d)), append(before, after...); !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
}

// While the reserve is missing (given up to write the ledger), Append
// leaves its room free, and housekeeping makes it again in that room:
// the segments must not take it, or the next full disk would find none.
func TestFullDiskKeepsReserveRoom(t *testing.T) {
	dir := smallDisk(t, "1m")
	cfg := testConfig()
	cfg.AckInterval = time.Hour // housekeeping by hand
	d := open(t, dir, cfg)
	defer d.Close()
	d.hkMu.Lock() // as if given up to write the ledger
	if err := os.Remove(filepath.Join(dir, reserveFile)); err != nil {
		t.Fatal(err)
	}
	d.setReserveGone(true)
	d.hkMu.Unlock()

	seqs := fill(t, d)
	if f := free(t, dir); f < reserveBytes {
		t.Fatalf("%d bytes free after ErrFull with the reserve missing: its room was taken", f)
	}
	if err := d.housekeep(false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, reserveFile)); err != nil || fi.Size() != reserveBytes {
		t.Fatalf("reserve after housekeeping: %v %v, want %d bytes", fi, err, reserveBytes)
	}
	// Now the disk itself is what refuses.
	for i := 1; ; i++ {
		last, err := d.Append([]Record{rec(100000+i, 300)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil || i > 10000 {
			t.Fatalf("Append %d: %v", i, err)
		}
		seqs = append(seqs, last)
	}
	if f := free(t, dir); f >= 4096 {
		t.Fatalf("%d bytes free after ErrFull with the reserve made: the disk is not full", f)
	}
	if got := seqsOf(replay(t, d)); !slices.Equal(got, seqs) {
		t.Fatalf("replayed %d records, want %d", len(got), len(seqs))
	}
}
