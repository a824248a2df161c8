package analyzerd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/analyzerd"
)

// With Server.Concurrency 8 one connection's packets are processed 8 at a
// time: the delay no longer adds up, every packet is counted once (a copy
// in the same batch is answered BUSY or counted as a duplicate, never
// processed twice) and every message is written to --out whole, once.
func TestConcurrentHandlers(t *testing.T) {
	const n, delay = 64, 20 * time.Millisecond
	path := filepath.Join(t.TempDir(), "out.jsonl")
	a := start(t, func(c *analyzerd.Config) {
		c.Delay = delay
		c.Out = path
		c.Server.Concurrency = 8
	})
	c := dial(t, a)
	var b []byte
	for i := 1; i <= n; i++ {
		b = c.AppendData(b, packet("agent-1", uint64(i), fmt.Sprintf("line %d a", i), fmt.Sprintf("line %d b", i)), i%2 == 0)
	}
	// Copies of packets 1 and 2 in the same batch, on the same connection.
	b = c.AppendData(b, packet("agent-1", 1, "line 1 a", "line 1 b"), true)
	b = c.AppendData(b, packet("agent-1", 2, "line 2 a", "line 2 b"), false)
	began := time.Now()
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	acked := uint64(0)
	busy := 0
	for acked < n+2 {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("after ACK %d: %v", acked, err)
		}
		switch f.Type.String() {
		case "ACK":
			acked = f.Seq
		case "BUSY":
			busy++
		default:
			t.Fatalf("unexpected %s", f)
		}
	}
	took := time.Since(began)
	t.Logf("%d packets with a %s delay, concurrency 8: %s; copies answered BUSY: %d", n+2, delay, took, busy)
	if limit := n * delay / 2; took > limit {
		t.Errorf("took %s, want under %s (half the serial time)", took, limit)
	}
	st := a.Stats()
	if st.Packets != n || st.Messages != 2*n || st.Duplicates+uint64(busy) != 2 {
		t.Errorf("stats %+v with %d BUSY; want %d packets, %d messages, 2 copies BUSY or duplicate", st, busy, n, 2*n)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2*n {
		t.Fatalf("%d lines, want %d", len(lines), 2*n)
	}
	seen := map[string]bool{}
	for i := 0; i < len(lines); i += 2 {
		// A packet's lines are written together.
		var id int
		if _, err := fmt.Sscanf(lines[i][strings.Index(lines[i], `"msg":"line `)+len(`"msg":"line `):], "%d", &id); err != nil {
			t.Fatalf("line %q: %v", lines[i], err)
		}
		for j, want := range []string{fmt.Sprintf(`"msg":"line %d a"`, id), fmt.Sprintf(`"msg":"line %d b"`, id)} {
			if !strings.Contains(lines[i+j], want) {
				t.Fatalf("line %d %q lacks %s", i+j, lines[i+j], want)
			}
		}
		if seen[lines[i]] {
			t.Fatalf("packet %d written twice", id)
		}
		seen[lines[i]] = true
	}
}
