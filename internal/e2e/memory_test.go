package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read RSS from: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// Agents holding half-sent frames cost at most --max-partial-bytes, and
// the memory goes back to the system when they leave: 300 connections each
// holding half of a 1 MiB frame used to take logdist from 11 MB to 331 MB,
// still held after they closed.
func TestHalfSentFramesMemoryGoesBack(t *testing.T) {
	c := newCluster(t, []float64{1}, "--max-partial-bytes", "160000000")
	pid := c.logdist.cmd.Process.Pid
	base := rssBytes(t, pid)
	const conns, part = 300, 512 << 10
	hello := frame.AppendHello(nil, &frame.Hello{Caps: frame.CapZstd, Window: 8, MaxFrame: 1 << 20, AgentID: []byte("half")})
	msg := append(hello, frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<20-64, 1<<20-64, 0)...)
	msg = append(msg, make([]byte, part)...)
	var open []net.Conn
	defer func() {
		for _, nc := range open {
			nc.Close()
		}
	}()
	refused := 0
	for i := 0; i < conns; i++ {
		nc, err := net.Dial("tcp", c.listen)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, nc)
		if _, err := nc.Write(msg); err != nil {
			refused++ // closed by logdist: over the bound
		}
	}
	waitFor(t, "the half-sent frames buffered", 20*time.Second, func() bool {
		return rssBytes(t, pid) > base+100<<20
	})
	peak := rssBytes(t, pid)
	if bound := base + 160000000 + 64<<20; peak > bound {
		t.Fatalf("RSS %d MiB with half-sent frames, above the bound of %d MiB (max partial bytes plus 64 MiB)", peak>>20, bound>>20)
	}
	for _, nc := range open {
		nc.Close()
	}
	open = nil
	took := waitFor(t, "the memory given back", 30*time.Second, func() bool {
		return rssBytes(t, pid) < base+48<<20
	})
	t.Logf("RSS %d MiB at start, %d MiB holding %d half-sent frames (%d refused), back under %d MiB %v after they closed",
		base>>20, peak>>20, conns-refused, refused, (base+48<<20)>>20, took.Round(100*time.Millisecond))
}
