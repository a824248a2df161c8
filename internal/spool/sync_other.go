//go:build !linux

package spool

import "os"

// datasync makes f's data durable (fsync: there is no fdatasync here).
func datasync(f *os.File) error { return f.Sync() }

// freeSpace is not asked here: the reserve is retried every reserveRetry.
func freeSpace(string) (int64, bool) { return 0, false }
