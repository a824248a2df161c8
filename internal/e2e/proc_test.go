package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/cli"
)

// bins holds the binaries built once for the whole package.
var bins struct {
	dir  string
	err  error
	once sync.Once
}

// binary returns the path of cmd/<name>, building every command of the
// module once (without -race: the processes are the system under test,
// the race detector runs in the in-process tests).
func binary(t *testing.T, name string) string {
	t.Helper()
	bins.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		bins.dir, bins.err = os.MkdirTemp("", "logdist-e2e-bin-")
		if bins.err != nil {
			return
		}
		// -buildvcs=auto as the Makefile: stamp the commit when in a
		// checkout, whatever GOFLAGS says.
		cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", bins.dir+"/", "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

// proc is a running binary.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	fields map[string]string // from the ready line
	done   chan struct{}
	ready  chan map[string]string
	err    error // exit status, valid after done
	mu     sync.Mutex
	log    []string
}

// start runs bin with args and waits for its "<name> ready k=v ..." line on
// stderr (or its JSON form, with --log-format json).
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := startNoReady(t, bin, args...)
	select {
	case p.fields = <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.err, p.logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not ready after 20s\n%s", p.name, p.logs())
	}
	return p
}

// startNoReady runs bin with args, collecting its stderr.
func startNoReady(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: filepath.Base(bin), cmd: exec.Command(bin, args...), done: make(chan struct{}), ready: make(chan map[string]string, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log = append(p.log, line)
			p.mu.Unlock()
			if f, ok := cli.ParseReady(line, p.name); ok {
				p.ready <- f
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ""
	for _, l := range p.log {
		s += l + "\n"
	}
	return s
}

func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Logf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill sends SIGKILL (and SIGCONT, in case it is stopped) and waits.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v\n%s", p.name, d, p.logs())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(httpGet(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
