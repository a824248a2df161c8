package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
)

func dictCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runDict(args, &out, &errb)
	return code, out.String(), errb.String()
}

// logLines writes n log-like lines with varied ids and figures.
func logLines(t *testing.T, n int) string {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	paths := []string{"/api/v2/orders", "/api/v2/users", "/healthz", "/login", "/api/v1/invoices"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "2026-12-06T17:%02d:%02d.%06dZ level=%s req_id=%016x method=GET path=%s/%d status=%d bytes=%d latency=%.3fms upstream=10.%d.%d.%d:8080 msg=%q\n",
			r.IntN(60), r.IntN(60), r.IntN(1e6), []string{"INFO", "WARN", "ERROR"}[r.IntN(3)], r.Uint64(), paths[r.IntN(len(paths))], r.IntN(1e5),
			[]int{200, 201, 404, 500}[r.IntN(4)], r.IntN(1e5), r.Float64()*100, r.IntN(256), r.IntN(256), r.IntN(256), "request served")
	}
	p := filepath.Join(t.TempDir(), "lines.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dict train from a file of lines writes a dictionary that loads, with
// the id asked for, and says what it gains on the held-out lines.
func TestDictTrainLines(t *testing.T) {
	in := logLines(t, 3000)
	out := filepath.Join(t.TempDir(), "logs.zdict")
	code, stdout, stderr := dictCmd("train", "--in", in, "--out", out, "--id", "40001", "--size", "16KiB", "--hostname", "web-01", "--app", "api")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	d, err := frame.LoadDict(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != 40001 || d.ContentSize() != 16<<10 {
		t.Fatalf("id %d, content %d", d.ID(), d.ContentSize())
	}
	for _, want := range []string{"trained dictionary 40001: 16384 bytes of content", "from 2700 samples", "wrote " + out,
		"held-out sample: 300 samples (one in ten, not trained on), zstd level default:", "packets of 1 message:", "packets of 10 messages:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	m := regexp.MustCompile(`packets of 1 message: +ratio ([0-9.]+) without the dictionary, ([0-9.]+) with it: ([0-9.]+)x smaller`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no gain line:\n%s", stdout)
	}
	var gain float64
	fmt.Sscan(m[3], &gain)
	if gain < 1.3 {
		t.Fatalf("a 1-message packet is only %.2fx smaller with the dictionary:\n%s", gain, stdout)
	}
}

// dict train from a spool takes its packets as they were sent; with a
// dictionary they were compressed with (--dict) it reads those too.
func TestDictTrainSpool(t *testing.T) {
	dir := t.TempDir()
	d, err := spool.Open(dir, spool.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	test, err := frame.LoadDict("../../frame/testdata/golden/testdict.zdict")
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := os.ReadFile(logLines(t, 400))
	enc := frame.Encoder{Dict: test}
	for i, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		p := frame.Packet{ID: uint64(i + 1), AgentID: []byte("agent-1"), Messages: []frame.Message{{Hostname: []byte("web-01"), App: []byte("api"), Body: []byte(l)}}}
		if _, err := d.Append([]spool.Record{{Kind: spool.KindData, Body: enc.AppendData(nil, 1, &p, true)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "spool.zdict")
	code, stdout, stderr := dictCmd("train", "--spool", dir, "--out", out, "--size", "8KiB")
	if code != 2 || !strings.Contains(stderr, "400 packets could not be read") || !strings.Contains(stderr, "0 samples") {
		t.Fatalf("without the dictionary: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = dictCmd("train", "--spool", dir, "--dict", "../../frame/testdata/golden/testdict.zdict", "--out", out, "--size", "8KiB")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "from 360 samples") || !strings.Contains(stdout, "spooled packets:") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if dd, err := frame.LoadDict(out); err != nil || dd.ID() < 32768 || dd.ID() >= 1<<31 {
		t.Fatalf("random id %v: %v", dd, err)
	}
}

func TestDictTrainErrors(t *testing.T) {
	in := logLines(t, 5)
	f := func(want string, args ...string) {
		t.Helper()
		code, _, stderr := dictCmd(args...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", args, code, stderr, want)
		}
	}
	f("--out FILE is required", "train", "--in", in)
	f("no samples", "train", "--out", "/tmp/x")
	f("5 samples; want at least 10", "train", "--in", in, "--out", filepath.Join(t.TempDir(), "x"))
	f(`--size: "big" is not a size`, "train", "--in", in, "--out", "/tmp/x", "--size", "big")
	f("at most 4 MiB", "train", "--in", in, "--out", "/tmp/x", "--size", "5MiB")
	f(`--level "max"`, "train", "--in", in, "--out", "/tmp/x", "--level", "max")
	f("unknown command", "retrain")
	f("no such file", "train", "--in", "/nonexistent", "--out", "/tmp/x")
	if code, out, _ := dictCmd("--help"); code != 0 || !strings.Contains(out, "--builder") || !strings.Contains(out, "--spool") {
		t.Fatalf("--help: %d\n%s", code, out)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"65536": 65536, "64KiB": 65536, "64K": 65536, "1MiB": 1 << 20, "2M": 2 << 20, "100B": 100} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5KiB", "8MiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// --dict is in the help, and a file that is not a dictionary stops the
// start with exit 2, naming it.
func TestDictFlag(t *testing.T) {
	if code, out := runCapture(t, "--help"); code != 0 || !strings.Contains(out, "--dict stringArray") || !strings.Contains(out, "logdist dict train") {
		t.Fatalf("--help: exit %d, lacks --dict or logdist dict train:\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.zdict")
	os.WriteFile(bad, []byte("not a dictionary"), 0o644)
	code, out := runCapture(t, "--listen", "127.0.0.1:0", "--admin", "", "--syslog-udp", "", "--analyzer", "name=a1,addr=127.0.0.1:7501", "--dict", bad)
	if code != 2 || !strings.Contains(out, "bad.zdict") || !strings.Contains(out, "not a zstd dictionary") {
		t.Fatalf("a bad --dict: exit %d: %s", code, out)
	}
}
