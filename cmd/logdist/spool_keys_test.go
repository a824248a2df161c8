package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

// keyFile writes lines as a key file of mode 0600 and returns its path.
func keyFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool.keys")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSpoolKeygen(t *testing.T) {
	code, out, _ := spoolCmd("keygen")
	code2, out2, _ := spoolCmd("keygen", "7")
	if code != 0 || code2 != 0 || !strings.HasPrefix(out, "1 ") || !strings.HasPrefix(out2, "7 ") || len(out) != 2+64+1 || out[2:] == out2[2:] {
		t.Fatalf("keygen: %q, %q", out, out2)
	}
	if _, err := spool.ParseKeyring([]byte(out2 + out)); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := spoolCmd("keygen", "0"); code != 2 || !strings.Contains(errs, "1-65535") {
		t.Fatalf("keygen 0: %d %q", code, errs)
	}
}

// A sealed spool: verify, dump and stats open it with --key-file;
// without it, its records need the key (not damage); stats counts the
// pending records by key.
func TestSpoolKeyFile(t *testing.T) {
	_, k1, _ := spoolCmd("keygen", "1")
	_, k2, _ := spoolCmd("keygen", "2")
	k1, k2 = strings.TrimSpace(k1), strings.TrimSpace(k2)
	dir := t.TempDir()
	write := func(keys string, first, n int) {
		t.Helper()
		kr, err := spool.LoadKeyring(keys)
		if err != nil {
			t.Fatal(err)
		}
		cfg := spool.DefaultConfig()
		cfg.Keys = kr
		d, err := spool.Open(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var enc frame.Encoder
		for i := first; i < first+n; i++ {
			p := frame.Packet{ID: uint64(i), AgentID: []byte("agent"), Messages: []frame.Message{{Body: []byte(fmt.Sprintf("secret %d", i))}}}
			if _, err := d.Append([]spool.Record{{Kind: spool.KindData, Body: enc.AppendData(nil, uint64(i), &p, false)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile(t, k1), 1, 5)
	both := keyFile(t, k2, k1)
	write(both, 6, 3)

	code, out, errs := spoolCmd("verify", "--key-file", both, dir)
	if code != 0 || !strings.Contains(out, "8 records (8 data") || !strings.HasSuffix(out, ": clean\n") {
		t.Fatalf("verify --key-file: %d %q %q", code, out, errs)
	}
	code, out, errs = spoolCmd("verify", dir)
	if code != 0 || !strings.Contains(out, "needs key: ") || !strings.Contains(out, "key 1 not in the key file") ||
		!strings.Contains(out, "8 sealed records not opened") || strings.Contains(out, "damage:") {
		t.Fatalf("verify without the key file: %d %q %q", code, out, errs)
	}
	code, out, errs = spoolCmd("dump", "--key-file", both, dir)
	var recs []dumpRecord
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r dumpRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		recs = append(recs, r)
	}
	if code != 0 || len(recs) != 8 || recs[0].Key != 1 || recs[7].Key != 2 || recs[7].Bodies[0] != "secret 8" {
		t.Fatalf("dump --key-file: %d %q %q", code, out, errs)
	}
	if code, out, errs = spoolCmd("dump", dir); code != 1 || out != "" || !strings.Contains(errs, "needs key:") {
		t.Fatalf("dump without the key file: %d %q %q", code, out, errs)
	}
	code, out, _ = spoolCmd("stats", "--key-file", both, dir)
	if code != 0 || !strings.Contains(out, "pending, key 1       5\n") || !strings.Contains(out, "pending, key 2       3  (current)\n") {
		t.Fatalf("stats --key-file: %d\n%s", code, out)
	}
	code, out, _ = spoolCmd("stats", "--json", "--key-file", keyFile(t, k2), dir)
	var st struct {
		ByKey     map[string]uint64 `json:"pending_by_key"`
		NotSealed *uint64           `json:"pending_not_sealed"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.ByKey["1"] != 5 || st.ByKey["2"] != 3 || st.NotSealed == nil || *st.NotSealed != 0 {
		t.Fatalf("stats --json: %d %s", code, out)
	}

	// Once key 1's records are delivered, stats says it may go.
	kr, _ := spool.LoadKeyring(both)
	cfg := spool.DefaultConfig()
	cfg.Keys = kr
	d, err := spool.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for q := uint64(1); q <= 5; q++ {
		d.Ack(q)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ = spoolCmd("stats", "--key-file", both, dir)
	if code != 0 || strings.Contains(out, "pending, key 1") || !strings.Contains(out, "key 1: no pending record uses it") {
		t.Fatalf("stats after key 1's records went: %d\n%s", code, out)
	}

	// A key file others may read is refused.
	bad := keyFile(t, k1)
	os.Chmod(bad, 0o644)
	if code, _, errs := spoolCmd("verify", "--key-file", bad, dir); code != 2 || !strings.Contains(errs, "too open") {
		t.Fatalf("verify with a key file of mode 0644: %d %q", code, errs)
	}
	for _, name := range mustGlob(t, filepath.Join(dir, "*.seg")) {
		b, _ := os.ReadFile(name)
		if bytes.Contains(b, []byte("secret ")) {
			t.Fatalf("%s holds a message in clear", name)
		}
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, m, err)
	}
	return m
}
