package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is held with flock while a spool is open: exclusively by a
// writer, shared by a reader (the tools), so that two logdists never
// write one spool and a repair never runs under a live one.
const lockFile = "spool.lock"

// lockDir takes dir's lock. A writer that cannot have it fails with
// ErrLocked; a reader that cannot have it goes on with live set: a
// writer is running, and the end of the newest segment may be a record
// being written.
func lockDir(dir string, write bool) (f *os.File, live bool, err error) {
	path := filepath.Join(dir, lockFile)
	if write {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	} else {
		f, err = os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil // never opened for writing
		}
	}
	if err != nil {
		return nil, false, err
	}
	how := syscall.LOCK_SH
	if write {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if !write && errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("%w: %s (held by pid %s): %v", ErrLocked, dir, strings.TrimSpace(string(holder)), err)
	}
	if write {
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, false, nil
}

// syncDir makes dir's entries (files created, renamed, removed) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
