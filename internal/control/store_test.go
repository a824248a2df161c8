package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A crash can cut the last line short or leave zeros: it is dropped; a
// damaged line before the last stops the start with the line's number.
func TestParseVersions(t *testing.T) {
	good := `{"version":1,"action":"start"}` + "\n" + `{"version":2,"action":"x"}` + "\n"
	for _, tc := range []struct {
		name, body string
		n          int
		torn       bool
		err        string
	}{
		{"whole", good, 2, false, ""},
		{"cut short", good + `{"version":3,"act`, 2, true, ""},
		{"zeros", good + "\x00\x00\x00\n", 2, true, ""},
		{"damaged before the last", `{"version":1}` + "\nnot json\n" + `{"version":3}` + "\n", 0, false, "line 2 is damaged"},
		{"out of order", `{"version":2}` + "\n" + `{"version":1}` + "\n", 0, false, "version 1 after 2"},
		{"empty", "", 0, false, ""},
	} {
		hist, good, torn, err := parseVersions([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || len(hist) != tc.n || torn != tc.torn || (torn && good >= len(tc.body)) {
			t.Errorf("%s: %d versions, torn %v, good %d, err %v", tc.name, len(hist), torn, good, err)
		}
	}
}

// The torn line is cut off the file at open, and the history goes on from
// the last whole version; the file is compacted to the newest versions.
func TestStoreTornLineAndCompaction(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	r.ctl.Close()
	path := filepath.Join(data, versionsFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"version":2,"time":"2026-`)
	f.Close()
	ctl, err := Open(Options{DataDir: data, Log: quiet, MaxVersions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if vs := ctl.hist; len(vs) != 1 || vs[0].Version != 1 {
		t.Fatalf("after a torn line: %+v", vs)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"version":2`) {
		t.Fatal("the torn line is still in the file")
	}
	ctl.srv, ctl.base = r.srv, r.srv.Config()
	ctl.m = r.ctl.m
	for w := 1; w <= 7; w++ {
		if _, err := ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(float64(w))}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ = os.ReadFile(path)
	lines := strings.Count(string(b), "\n")
	if lines > 6 || len(ctl.hist) != 3 || ctl.hist[2].Version != 8 {
		t.Fatalf("after 7 changes with 3 kept: %d lines in the file, history %d ending at %d", lines, len(ctl.hist), ctl.hist[len(ctl.hist)-1].Version)
	}
	hist, _, torn, err := parseVersions(b)
	if err != nil || torn || hist[len(hist)-1].Version != 8 {
		t.Fatalf("compacted file: %d versions, torn %v, %v", len(hist), torn, err)
	}
}

// A damaged history stops the start with an error naming the line (it
// used to panic closing a store it had already dropped).
func TestDamagedHistoryIsAnError(t *testing.T) {
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, versionsFile), []byte("garbage\n{\"version\":2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{DataDir: data, Log: quiet})
	if err == nil || !strings.Contains(err.Error(), "line 1 is damaged") {
		t.Fatalf("Open on a damaged history: %v", err)
	}
	// The lock was released: a fixed history opens.
	os.WriteFile(filepath.Join(data, versionsFile), nil, 0o600)
	c, err := Open(Options{DataDir: data, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A compaction that fails does not unmake a version that was written and
// synced: the change stays applied, and a restart brings it back.
func TestFailedCompactionKeepsTheVersion(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	r.ctl.opts.MaxVersions, r.ctl.store.max = 2, 2
	if _, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(2.0)}); err != nil {
		t.Fatal(err)
	}
	r.ctl.store.dir = filepath.Join(data, "gone") // the temporary file cannot be made there
	res, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(9.0)})
	if err != nil || !res.Changed || r.weights()["a1"] != 9 {
		t.Fatalf("change whose compaction failed: %+v %v, weights %v", res, err, r.weights())
	}
	r.ctl.store.dir = data
	r.ctl.Close()
	if v := r.open(data); v.Version != 3 || r.weights()["a1"] != 9 {
		t.Fatalf("after a restart: version %d weights %v, want 3 and a1 at 9", v.Version, r.weights())
	}
}
