// Package iov writes many buffers to a socket in one system call.
package iov

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writev makes one writev(2) of bufs to fd with iovs as the iovec
// array, grown once and kept, and returns how many bytes the socket
// took: 0 on EAGAIN and on any error, which the caller leaves to gnet.
//
// Why not gnet's Conn.Writev: it calls x/sys/unix.Writev, which builds
// its iovecs with append from a capacity of 8, so every batch of more
// than eight packets cost one to four allocations (growslice was 5% of
// logdist's user time under load). The caller must be on the loop that
// owns fd, and gnet must hold nothing in the connection's outbound
// buffer, or the bytes would overtake it.
func Writev(fd int, bufs [][]byte, iovs *[]unix.Iovec) int {
	v := (*iovs)[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		var e unix.Iovec
		e.Base = &b[0]
		e.SetLen(len(b))
		v = append(v, e)
	}
	*iovs = v
	if len(v) == 0 {
		return 0
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
	clear(v) // drop the pointers into the arena until the next batch
	if errno != 0 {
		return 0
	}
	return int(n)
}

// Advance drops the first n bytes from bufs, trimming the buffer the
// write ended in, and returns what is left to write.
func Advance(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}
