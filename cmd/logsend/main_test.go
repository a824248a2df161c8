package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame/client/clienttest"
)

var binary string

// TestMain builds the real binary once; the tests run it as a process.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "logsend-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "logsend")
	gobin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot find the go command:", err)
		os.Exit(1)
	}
	if out, err := exec.Command(gobin, "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build logsend: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// logsend runs the binary and returns its exit code, stdout and stderr.
func logsend(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("cannot run logsend: %v", err)
	return 0, "", ""
}

func TestLinesArrive(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	file := filepath.Join(t.TempDir(), "in.log")
	if err := os.WriteFile(file, []byte("from file 1\r\nfrom file 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdin := "line 1\nline 2\nline 3\nline 4\nline 5\n"
	code, _, stderr := logsend(t, stdin, "--target", "127.0.0.1:1,"+srv.Addr(), "--agent-id", "agent-7",
		"--batch", "2", "--app", "myapp", "--severity", "warning", "--timeout", "20s", "-", file)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	got := make(map[string]int)
	for _, d := range srv.Received() {
		if len(d.Bodies) > 2 || d.AgentID != "agent-7" {
			t.Fatalf("packet with %d messages from agent %q; want at most 2 (--batch) from agent-7", len(d.Bodies), d.AgentID)
		}
		for _, b := range d.Bodies {
			got[b]++
		}
	}
	for _, want := range []string{"line 1", "line 2", "line 3", "line 4", "line 5", "from file 1", "from file 2"} {
		if got[want] == 0 {
			t.Errorf("%q did not arrive; got %v", want, got)
		}
	}
}

func TestUnreachable(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	addr := srv.Addr()
	srv.Kill()
	code, _, stderr := logsend(t, "a\nb\nc\n", "--target", addr, "--timeout", "1s")
	want := regexp.MustCompile(`^logsend: 3 of 3 lines not acknowledged within 1s: dial tcp ` +
		regexp.QuoteMeta(addr) + `: connect: connection refused\n$`)
	if code != 1 || !want.MatchString(stderr) {
		t.Fatalf("exit %d, stderr %q; want 1 and a line matching %s", code, stderr, want)
	}
}

// With --log-format json what logsend says on stderr is JSON too: the
// --verbose log and the failure.
func TestJSONLog(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	addr := srv.Addr()
	srv.Kill()
	code, _, stderr := logsend(t, "a\n", "--target", addr, "--timeout", "1s", "--log-format", "json", "-v")
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil {
			t.Errorf("not a JSON record: %q (%v)", line, err)
		}
	}
	if code != 1 || !strings.Contains(stderr, `"level":"ERROR","msg":"logsend: 1 of 1 lines not acknowledged within 1s`) || len(lines) < 2 {
		t.Fatalf("exit %d, stderr %q; want 1, the client's log and the failure as JSON", code, stderr)
	}
	if code, _, stderr := logsend(t, "", "--log-format", "xml"); code != 2 || !strings.Contains(stderr, `--log-format "xml"`) {
		t.Fatalf("--log-format xml: exit %d, %q", code, stderr)
	}
}

func TestBadToken(t *testing.T) {
	srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{Token: "secret"})
	code, _, stderr := logsend(t, "a\n", "--target", srv.Addr(), "--token", "wrong", "--agent-id", "x")
	want := `rejected the token for agent "x": auth: unknown token`
	if code != 1 || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q; want 1 and one line with %q", code, stderr, want)
	}
}

func TestBadFlags(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		code, stdout, stderr := logsend(t, "", args...)
		if code != 2 || !strings.HasPrefix(stderr, "logsend: ") || strings.Count(stderr, "\n") != 1 ||
			!strings.Contains(stderr, want) || stdout != "" {
			t.Errorf("logsend %q: exit %d, stderr %q; want 2 and one line with %q", args, code, stderr, want)
		}
	}
	f("unknown flag: --bogus", "--bogus")
	f(`unknown --severity "loud"`, "--severity", "loud")
	f(`unknown --facility "nope"`, "--facility", "nope")
	f("--batch 0", "--batch", "0")
	f("not host:port", "--target", "nohostport")
	f("invalid argument", "--timeout", "soon")
	f("--dict: open /nonexistent.zdict", "--dict", "/nonexistent.zdict")
}

func TestHelp(t *testing.T) {
	code, stdout, _ := logsend(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{
		`--target strings`, `(default [127.0.0.1:7400])`, `--agent-id`, `--token`, `--severity string`, `(default "info")`,
		`--facility string`, `(default "user")`, `--app string`, `(default "logsend")`, `--hostname`, `--batch int`,
		`(default 100)`, `--timeout duration`, `(default 30s)`, `--no-compress`, `--dict stringArray`, `-h, --help`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, stdout)
		}
	}
}

func TestParseFacility(t *testing.T) {
	f := func(in string, want uint8, ok bool) {
		t.Helper()
		got, gotOK := parseFacility(in)
		if got != want || gotOK != ok {
			t.Errorf("parseFacility(%q) = %d, %v; want %d, %v", in, got, gotOK, want, ok)
		}
	}
	f("user", 1, true)
	f("LOCAL7", 23, true)
	f("3", 3, true)
	f("24", 0, false)
	f("x", 0, false)
}
