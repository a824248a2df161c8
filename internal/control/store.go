package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The version history on disk, under --data-dir:
//
//	LOCK                    held (flock) while a logdist uses the directory
//	config-versions.jsonl   one Version per line, oldest first
//
// A version is appended and synced before it counts as made. A line cut
// short by a crash is dropped when the file is read back (and logged); a
// damaged line before the last stops the start, because what follows it
// cannot be trusted to be the history the operator made. When the file
// holds twice maxVersions it is rewritten with the newest maxVersions
// (to a temporary file, synced, renamed over it).

const (
	versionsFile = "config-versions.jsonl"
	lockFile     = "LOCK"
)

type store struct {
	dir   string
	lock  *os.File
	f     *os.File // versions file, appending
	lines int
	max   int
}

// openStore takes the data directory (creating it) and reads the history
// back. torn reports a last line dropped because it was cut short.
func openStore(dir string, max int) (st *store, hist []Version, torn bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, false, fmt.Errorf("data dir: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lock.Name())
		lock.Close()
		return nil, nil, false, fmt.Errorf("data dir %s is in use by another logdist (pid %s): %w", dir, strings.TrimSpace(string(holder)), err)
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	s := &store{dir: dir, lock: lock, max: max}
	defer func() {
		if err != nil {
			s.close() // not st: the error returns set it to nil
		}
	}()
	path := filepath.Join(dir, versionsFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, fmt.Errorf("data dir: %w", err)
	}
	hist, good, torn, err := parseVersions(b)
	if err != nil {
		return nil, nil, false, fmt.Errorf("data dir: %s: %w", path, err)
	}
	if torn {
		if err := os.Truncate(path, int64(good)); err != nil {
			return nil, nil, false, fmt.Errorf("data dir: dropping the torn last line: %w", err)
		}
	}
	s.lines = len(hist)
	if len(hist) > max {
		hist = hist[len(hist)-max:]
	}
	if s.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return nil, nil, false, fmt.Errorf("data dir: %w", err)
	}
	return s, hist, torn, nil
}

// parseVersions reads the lines of a versions file; good is the length of
// the part kept. A last line without its newline, or a last line that
// does not parse (a crash can leave zeros), is torn: dropped. A damaged
// line before the last is an error.
func parseVersions(b []byte) (hist []Version, good int, torn bool, err error) {
	lines := bytes.SplitAfter(b, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		last := i == len(lines)-1 || i == len(lines)-2 && len(lines[len(lines)-1]) == 0
		var v Version
		jerr := json.Unmarshal(line, &v)
		if jerr == nil && v.Version == 0 {
			jerr = errors.New("no version number")
		}
		if !bytes.HasSuffix(line, []byte("\n")) || jerr != nil {
			if last {
				return hist, good, true, nil
			}
			return nil, 0, false, fmt.Errorf("line %d is damaged (%v); move the file away to start with no history", i+1, jerr)
		}
		if len(hist) > 0 && v.Version <= hist[len(hist)-1].Version {
			return nil, 0, false, fmt.Errorf("line %d: version %d after %d", i+1, v.Version, hist[len(hist)-1].Version)
		}
		hist = append(hist, v)
		good += len(line)
	}
	return hist, good, false, nil
}

// append writes v and syncs it. A failed write or sync is undone (the
// file is cut back to its length before), so that a version reported as
// not saved never comes back at the next start, and the next append does
// not glue onto a fragment. Past twice max lines the file is compacted to
// hist (the newest versions, v included); a compaction that fails leaves
// the longer file, which is still right, and is only reported (compactErr).
func (st *store) append(v Version, hist []Version) (compactErr, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	fi, err := st.f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	_, err = st.f.Write(append(b, '\n'))
	if err == nil {
		err = st.f.Sync()
	}
	if err != nil {
		if terr := st.f.Truncate(size); terr != nil {
			return nil, fmt.Errorf("%v (and cutting the partial line off failed: %v; the start will drop it)", err, terr)
		}
		return nil, err
	}
	st.lines++
	if st.lines >= 2*st.max {
		return st.compact(hist), nil
	}
	return nil, nil
}

// compact rewrites the file with hist only.
func (st *store) compact(hist []Version) error {
	path := filepath.Join(st.dir, versionsFile)
	tmp, err := os.CreateTemp(st.dir, versionsFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	for _, v := range hist {
		b, err := json.Marshal(v)
		if err != nil {
			tmp.Close()
			return err
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(st.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st.f.Close()
	st.f, st.lines = f, len(hist)
	return nil
}

func (st *store) close() {
	if st.f != nil {
		st.f.Close()
	}
	if st.lock != nil {
		st.lock.Close() // releases the flock
	}
}
