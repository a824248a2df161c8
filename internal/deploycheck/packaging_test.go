package deploycheck

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// commands are the binaries a release and the image ship.
var commands = []string{"logdist", "analyzerd", "logsend", "logbench"}

// testStamp is the version the tests stamp into the binaries, as make
// release stamps git describe's.
const testStamp = "v0.0.0-deploycheck"

// static holds the four binaries, built once for the package as make
// image and make release build them.
var static struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if static.dir != "" {
		os.RemoveAll(static.dir)
	}
	os.Exit(code)
}

// staticBinaries returns the directory holding the four commands built
// for this machine's architecture the way the Makefile's image and release
// targets build them: CGO_ENABLED=0, -trimpath, the version stamped with
// -X (testStamp).
func staticBinaries(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the image and the releases are Linux binaries; this is %s", runtime.GOOS)
	}
	static.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			static.err = fmt.Errorf("cannot find the go command: %v", err)
			return
		}
		if static.dir, static.err = os.MkdirTemp("", "logdist-deploycheck-bin-"); static.err != nil {
			return
		}
		args := []string{"build", "-buildvcs=auto", "-trimpath",
			"-ldflags", "-X github.com/logdist/logdist/internal/version.stamp=" + testStamp,
			"-o", static.dir + "/"}
		for _, c := range commands {
			args = append(args, "./cmd/"+c)
		}
		cmd := exec.Command(gobin, args...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			static.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built %s with CGO_ENABLED=0 in %v", strings.Join(commands, ", "), time.Since(start).Round(time.Millisecond))
	})
	if static.err != nil {
		t.Fatal(static.err)
	}
	return static.dir
}

// checkStatic says why the ELF file at path is not a static executable
// for this machine: it asks for a program interpreter (PT_INTERP, the
// dynamic loader), or names shared libraries it needs (DT_NEEDED), or is
// for another architecture. A FROM scratch image has no loader and no
// libc, so such a binary would not start in it.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			why = append(why, fmt.Sprintf("it has a PT_INTERP program header (%s)", strings.TrimRight(string(interp), "\x00")))
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return fmt.Errorf("cannot read its dynamic section: %v", err)
	}
	if len(needed) > 0 {
		why = append(why, "it needs shared libraries (DT_NEEDED "+strings.Join(needed, ", ")+")")
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if want != 0 && f.Machine != want {
		why = append(why, fmt.Sprintf("it is for %v, not %v", f.Machine, want))
	}
	if len(why) > 0 {
		return errors.New("not static: " + strings.Join(why, "; "))
	}
	return nil
}

// The binaries the image and the release ship are static: no loader, no
// libc, so that they run on an empty (FROM scratch) image and on any
// Linux of their architecture.
func TestStaticBinaries(t *testing.T) {
	dir := staticBinaries(t)
	for _, c := range commands {
		if err := checkStatic(filepath.Join(dir, c)); err != nil {
			t.Errorf("%s, built with CGO_ENABLED=0: %v", c, err)
		}
	}
}

// checkStatic tells a dynamically linked program apart: the system's own
// ls (or, failing it, any dynamic executable the system has).
func TestCheckStaticCatchesDynamic(t *testing.T) {
	for _, p := range []string{"/bin/ls", "/usr/bin/ls", "/bin/sh", "/usr/bin/env"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		err := checkStatic(p)
		if err == nil {
			t.Logf("%s is static here; trying another", p)
			continue
		}
		if !strings.Contains(err.Error(), "PT_INTERP") || !strings.Contains(err.Error(), "DT_NEEDED") {
			t.Errorf("checkStatic(%s) = %v; want it to name PT_INTERP and DT_NEEDED", p, err)
		}
		t.Logf("checkStatic(%s): %v", p, err)
		return
	}
	t.Skip("no dynamically linked program found to check against")
}

// Every binary says the version stamped with -X
// github.com/logdist/logdist/internal/version.stamp=..., as make release
// stamps git describe's.
func TestVersionStamp(t *testing.T) {
	dir := staticBinaries(t)
	for _, c := range commands {
		out, err := exec.Command(filepath.Join(dir, c), "--version").CombinedOutput()
		if err != nil {
			t.Errorf("%s --version: %v\n%s", c, err, out)
			continue
		}
		if want := c + " " + testStamp + " ("; !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version says %q; want it to start with %q", c, out, want)
		}
	}
}
