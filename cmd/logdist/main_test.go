package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCapture runs the command with args and returns its exit code and
// what it wrote to stderr.
func runCapture(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	code := run(args)
	os.Stderr = old
	w.Close()
	out, _ := io.ReadAll(r)
	return code, string(out)
}

// Bad analyzers are refused at start, with exit status 2 and the reason:
// a name with a quote used to panic (it went unescaped into a metric
// label), and two names with one address silently doubled its weight.
func TestBadAnalyzersRefused(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		args = append(args, "--listen", "127.0.0.1:0", "--admin", "", "--syslog-udp", "")
		code, out := runCapture(t, args...)
		if code != 2 || !strings.Contains(out, want) {
			t.Fatalf("%v: exit %d, stderr %q; want 2 and %q", args, code, out, want)
		}
	}
	f(`character '"' not allowed`, "--analyzer", `name=a"b,addr=127.0.0.1:7501,weight=1`)
	f("character ' ' not allowed", "--analyzer", `name=a b,addr=127.0.0.1:7501`)
	f("have the same address 127.0.0.1:7501", "--analyzer", "name=a1,addr=127.0.0.1:7501", "--analyzer", "name=a2,addr=127.0.0.1:7501")
	f(`name "a1" used twice`, "--analyzer", "name=a1,addr=127.0.0.1:7501", "--analyzer", "name=a1,addr=127.0.0.1:7502")
	f("is not a non-negative number", "--analyzer", "name=a1,addr=127.0.0.1:7501,weight=-1")
	f("missing addr", "--analyzer", "name=a1")
	f("no analyzers", "--max-conns", "5")
	f("must not be negative", "--analyzer", "addr=127.0.0.1:7501", "--max-conns", "-1")
}

// --help documents the --analyzer defaults the parser applies.
func TestHelpSaysAnalyzerDefaults(t *testing.T) {
	code, out := runCapture(t, "--help")
	if code != 0 || !strings.Contains(out, "weight defaults to 1 and name to the address") || !strings.Contains(out, "--max-conns-per-ip") {
		t.Fatalf("exit %d, help lacks the analyzer defaults or the connection limits:\n%s", code, out)
	}
	// Every default is printed, not the zero value (it once said
	// "(default 0s)" for a 500 ms heartbeat).
	for _, want := range []string{"(default 500ms)", `(default ":7400")`, "(default 256)", "(default 100000)"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %s", want)
		}
	}
}

// --check-config validates a file with the flags given and prints the
// effective settings; a bad file exits 2 with one line naming the line.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("ack-timeout: 3s\nanalyzers:\n  - name=a1,addr=127.0.0.1:7501\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("analyzers:\n  - name: a1\n    adr: 127.0.0.1:7501\n"), 0o600)

	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	code := run([]string{"--check-config", good, "--ack-timeout", "4s"})
	os.Stdout = old
	w.Close()
	out, _ := io.ReadAll(r)
	if code != 0 || !strings.Contains(string(out), "ack-timeout: 4s") || !strings.Contains(string(out), "name: a1") {
		t.Fatalf("good file: exit %d\n%s", code, out)
	}
	code, errOut := runCapture(t, "--check-config", bad)
	if code != 2 || !strings.Contains(errOut, `line 3: analyzer: unknown key "adr"`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("bad file: exit %d, stderr %q", code, errOut)
	}
}

// A bad --log-level is refused at start naming the flag; with
// --log-format json even the refusal is one JSON record.
func TestLogLevelAndJSONErrors(t *testing.T) {
	base := []string{"--listen", "127.0.0.1:0", "--admin", "", "--syslog-udp", "", "--analyzer", "name=a1,addr=127.0.0.1:7501"}
	f := func(want string, args ...string) string {
		t.Helper()
		code, out := runCapture(t, append(append([]string(nil), base...), args...)...)
		if code != 2 || !strings.Contains(out, want) || strings.Count(out, "\n") != 1 {
			t.Fatalf("%v: exit %d, stderr %q; want 2 and one line with %q", args, code, out, want)
		}
		return out
	}
	f(`--log-level "proxy=loud": "loud" is not a level; want a level (debug, info, warn or error) or a list like proxy=debug,balancer=info,warn`, "--log-level", "proxy=loud")
	f(`--log-level: unknown component "proxi"; the components are admin, auth, balancer, control, proxy, syslog, tls`, "--log-level", "proxi=debug,info")
	out := f(`--log-level \"info,warn\": two default levels`, "--log-level", "info,warn", "--log-format", "json")
	var rec struct{ Level, Msg string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Level != "ERROR" || !strings.HasPrefix(rec.Msg, "logdist: --log-level") {
		t.Fatalf("with --log-format json the error is %q (%v), want a JSON record", out, err)
	}
}
