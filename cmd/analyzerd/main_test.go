package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/internal/cli"
)

var binary string // the analyzerd binary built for the end-to-end tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "analyzerd-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "analyzerd")
	code := 1
	if out, err := exec.Command(goTool(), "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build analyzerd: %v\n%s", err, out)
	} else {
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool returns the go command: go test puts its own GOROOT/bin first on
// PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// proc is a running analyzerd.
type proc struct {
	cmd    *exec.Cmd
	listen string
	admin  string
	logs   chan string // stderr lines after the ready line
}

// startProc runs the binary with args and waits for its ready line (text,
// or JSON with --log-format json).
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan string, 1000)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	ready := make(chan map[string]string, 1)
	go func() {
		defer close(p.logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if f, ok := cli.ParseReady(sc.Text(), "analyzerd"); ok {
				ready <- f
				continue
			}
			select {
			case p.logs <- sc.Text():
			default:
			}
		}
	}()
	select {
	case f := <-ready:
		p.listen, p.admin = f["listen"], f["admin"]
	case <-time.After(10 * time.Second):
		t.Fatal("analyzerd did not print its ready line")
	}
	return p
}

// stop sends sig and returns the exit code.
func (p *proc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(10 * time.Second):
		t.Fatal("analyzerd did not exit")
		return -1
	}
}

func getStats(t *testing.T, admin string) analyzerd.Stats {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s analyzerd.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEndToEnd(t *testing.T) {
	out := filepath.Join(t.TempDir(), "messages.jsonl")
	p := startProc(t, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--name", "e2e", "--out", out, "--log-format", "json")

	// The slog line comes before the ready line.
	want := `"msg":"analyzerd e2e listening on ` + p.listen + `"`
	for found := false; !found; {
		select {
		case line := <-p.logs:
			found = strings.Contains(line, want)
		default:
			t.Fatalf("no log line with %s before the ready line", want)
		}
	}

	c, err := servertest.Dial(p.listen, "agent-e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b []byte
	for i := range 10 {
		b = c.AppendData(b, &frame.Packet{ID: uint64(100 + i), AgentID: []byte("agent-e2e"), Messages: []frame.Message{
			{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, App: []byte("e2e"), Body: []byte(fmt.Sprintf("line %d", i))},
			{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, App: []byte("e2e"), Body: []byte("second")},
		}}, i%2 == 0)
	}
	// Packet 100 once more: a duplicate.
	b = c.AppendData(b, &frame.Packet{ID: 100, AgentID: []byte("agent-e2e"), Messages: []frame.Message{{Body: []byte("again")}}}, false)
	if err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAck(11); err != nil {
		t.Fatal(err)
	}
	s := getStats(t, p.admin)
	if s.Name != "e2e" || s.Packets != 10 || s.Messages != 20 || s.Duplicates != 1 || s.DecodedBytes == 0 {
		t.Fatalf("/stats %+v", s)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 20 {
		t.Fatalf("%d JSON lines, want 20", n)
	}

	// SIGTERM with a client connected: GOAWAY, then a clean exit once the
	// client leaves.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f, err := c.Next()
	if err != nil || f.Type != frame.TypeGoAway {
		t.Fatalf("after SIGTERM: %v %v, want GOAWAY", f, err)
	}
	c.Close()
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestSIGINTIdle(t *testing.T) {
	p := startProc(t, "--listen", "127.0.0.1:0")
	if p.admin != "" {
		t.Fatalf("admin %q, want off by default", p.admin)
	}
	if code := p.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("exit code %d after SIGINT, want 0", code)
	}
}

func TestBadFlags(t *testing.T) {
	f := func(wantCode int, wantOut string, args ...string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Errorf("%v: exit code %d, want %d (stderr %q)", args, code, wantCode, stderr.String())
		}
		if wantCode == 2 {
			if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), wantOut) {
				t.Errorf("%v: stderr %q, want one line with %q", args, stderr.String(), wantOut)
			}
			return
		}
		if !strings.Contains(stdout.String(), wantOut) {
			t.Errorf("%v: stdout %q lacks %q", args, stdout.String(), wantOut)
		}
	}
	f(2, "unknown flag: --bogus", "--bogus")
	f(2, "--log-format", "--log-format", "xml")
	f(2, "--window", "--window", "0")
	f(2, "--concurrency 0: must be in [1, 1024]", "--concurrency", "0")
	f(2, "--concurrency 1025: must be in [1, 1024]", "--concurrency", "1025")
	f(2, "invalid argument", "--delay", "soon")
	f(2, "unexpected argument", "extra")
	f(2, "--dict: open /nonexistent.zdict", "--dict", "/nonexistent.zdict")
	f(2, "--pprof needs --admin", "--pprof")
	f(0, `--listen string`, "--help")
	f(0, `--dict stringArray`, "--help")
	f(0, `(default "127.0.0.1:7501")`, "-h")

	// A port already in use is a bad --listen: the same one-line exit 2.
	p := startProc(t, "--listen", "127.0.0.1:0")
	f(2, "cannot listen on "+p.listen, "--listen", p.listen)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	out, err := exec.Command(binary, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"listen", "name", "admin", "out", "delay", "concurrency", "window", "max-frame", "dedup-window",
		"dedup-agents", "idle-timeout", "handshake-timeout", "drain-timeout", "log-level", "log-format"} {
		re := regexp.MustCompile(`(?m)^\s+--` + flag + ` .*\(default [^)]*\)$`)
		if !re.Match(out) {
			t.Errorf("--help lacks --%s with its default:\n%s", flag, out)
		}
	}
}
