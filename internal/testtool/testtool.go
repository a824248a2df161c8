// Package testtool finds the external programs tests run (promtool,
// yamllint, rsyslogd, chromium, openssl), installing the Debian package
// that has one when the test runs as root on a machine with apt-get, and
// otherwise skipping the test with the reason and what to install.
package testtool

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// installs remembers each Debian package's install attempt, so that tests
// wanting the same tool try once.
var installs sync.Map // package → *installResult

type installResult struct {
	once sync.Once
	err  error
}

// Need returns the path of bin. When it is missing and the test runs
// as root on a system with apt-get (a Debian or Ubuntu CI machine), it
// installs the Debian package pkg first; otherwise the test is skipped,
// saying why and what to install.
func Need(t testing.TB, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is not installed and this is not root: install the Debian package %s to run this test", bin, pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skipf("%s is not installed and there is no apt-get to install %s with", bin, pkg)
	}
	v, _ := installs.LoadOrStore(pkg, &installResult{})
	r := v.(*installResult)
	r.once.Do(func() {
		t.Logf("%s missing: apt-get install -y %s", bin, pkg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		install := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", pkg)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
		if _, err := install(); err != nil { // the package lists may be missing or stale
			if uout, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
				r.err = &installError{pkg, uerr, uout}
				return
			}
			if out, err := install(); err != nil {
				r.err = &installError{pkg, err, out}
			}
		}
	})
	if r.err != nil {
		t.Skipf("%s is not installed and installing it failed: %v", bin, r.err)
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("apt-get installed %s but %s is still not on PATH", pkg, bin)
	}
	return p
}

type installError struct {
	pkg string
	err error
	out []byte
}

func (e *installError) Error() string {
	out := e.out
	if len(out) > 500 {
		out = out[len(out)-500:]
	}
	return "apt-get install " + e.pkg + ": " + e.err.Error() + ": " + string(out)
}
