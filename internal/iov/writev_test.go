package iov

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair returns a non-blocking writer with a small send buffer and
// its reader, both closed at the end of the test.
func socketPair(t *testing.T) (w, r int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

// TestWritevDirectPartialWrites writes many buffers through a socket
// that takes a few KiB at a time: Writev and advance must hand
// over every byte once, in order, whatever the split.
func TestWritevDirectPartialWrites(t *testing.T) {
	w, r := socketPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var want []byte
	bufs := make([][]byte, 600)
	for i := range bufs {
		b := make([]byte, rng.IntN(700))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		bufs[i] = b
		want = append(want, b...)
	}
	var got []byte
	rb := make([]byte, 1500)
	var iovs []unix.Iovec
	partial, stalls := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for rest := bufs; len(rest) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("stuck with %d buffers left", len(rest))
		}
		total := 0
		for _, b := range rest {
			total += len(b)
		}
		n := Writev(w, rest, &iovs)
		switch {
		case n == 0:
			stalls++ // the socket is full (EAGAIN): drain a little
		case n < total:
			partial++
		}
		rest = Advance(rest, n)
		if k, err := unix.Read(r, rb); err == nil {
			got = append(got, rb[:k]...)
		}
	}
	for len(got) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d bytes", len(got), len(want))
		}
		k, err := unix.Read(r, rb)
		if err != nil && err != unix.EAGAIN {
			t.Fatal(err)
		}
		if k > 0 {
			got = append(got, rb[:k]...)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the reader got %d bytes that differ from the %d written", len(got), len(want))
	}
	if partial == 0 || stalls == 0 {
		t.Fatalf("the test did not exercise short writes (%d) and a full socket (%d)", partial, stalls)
	}
	for _, v := range iovs[:cap(iovs)] {
		if v.Base != nil {
			t.Fatal("Writev kept a pointer into a written buffer")
		}
	}
}

// TestWritevDirectError: a write to a closed peer is 0 bytes, so the
// caller hands the batch to gnet, which closes the connection.
func TestWritevDirectError(t *testing.T) {
	w, r := socketPair(t)
	unix.Close(r)
	var iovs []unix.Iovec
	if n := Writev(w, [][]byte{[]byte("abc"), []byte("def")}, &iovs); n != 0 {
		t.Fatalf("wrote %d bytes to a closed peer", n)
	}
	if n := Writev(w, [][]byte{nil, {}}, &iovs); n != 0 {
		t.Fatalf("empty buffers: %d", n)
	}
}

func TestAdvance(t *testing.T) {
	mk := func() [][]byte { return [][]byte{[]byte("ab"), []byte("cde"), []byte("f")} }
	for _, c := range []struct {
		n    int
		want string
		left int
	}{
		{0, "abcdef", 3}, {1, "bcdef", 3}, {2, "cdef", 2}, {4, "ef", 2}, {5, "f", 1}, {6, "", 0},
	} {
		got := Advance(mk(), c.n)
		if s := string(bytes.Join(got, nil)); s != c.want || len(got) != c.left {
			t.Errorf("Advance(%d) = %q in %d buffers, want %q in %d", c.n, s, len(got), c.want, c.left)
		}
	}
}

// TestWritevDirectAllocs pins the reason Writev exists: a batch of
// 100 packets costs no allocation once the iovec array has grown.
func TestWritevDirectAllocs(t *testing.T) {
	w, r := socketPair(t)
	if err := unix.SetsockoptInt(w, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	bufs := make([][]byte, 100)
	for i := range bufs {
		bufs[i] = buf
	}
	var iovs []unix.Iovec
	rb := make([]byte, 1<<16)
	allocs := testing.AllocsPerRun(200, func() {
		if Writev(w, bufs, &iovs) != len(buf)*len(bufs) {
			t.Fatal("short write to an empty socket")
		}
		for k := 0; k < len(buf)*len(bufs); {
			n, err := unix.Read(r, rb)
			if err != nil {
				t.Fatal(err)
			}
			k += n
		}
	})
	if allocs != 0 {
		t.Fatalf("Writev allocated %.1f times per batch", allocs)
	}
}
