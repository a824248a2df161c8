package k8scheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// helmModule is the helm release the tests build: a well-kept v4 release,
// built from its module so that nothing is installed by hand.
const helmModule = "helm.sh/helm/v4/cmd/helm@v4.3.2"

// root is the repository's root; tmp holds the binaries built for this
// run (helm, logdist), removed when the tests end.
var root, tmp string

func TestMain(m *testing.M) {
	var err error
	if root, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/logdist/logdist\n")) {
		fmt.Fprintf(os.Stderr, "k8scheck: %s is not logdist's repository: run the tests from deploy/k8scheck\n", root)
		os.Exit(1)
	}
	if tmp, err = os.MkdirTemp("", "k8scheck-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// built remembers each binary's build, so that the tests wanting it build
// it once per run.
var built sync.Map // name → *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// build runs the go command in dir to make the binary name in tmp, once
// per run; args follow "go" and must write the binary there (GOBIN is
// set to tmp for go install).
func build(t *testing.T, name, dir, why string, args ...string) string {
	t.Helper()
	v, _ := built.LoadOrStore(name, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		t.Logf("building %s: go %s (%s)", name, strings.Join(args, " "), why)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+tmp)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		r.path = filepath.Join(tmp, name)
		t.Logf("built %s in %v", name, time.Since(start).Round(100*time.Millisecond))
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

// helm returns helm's path, building it on first use.
func helm(t *testing.T) string {
	t.Helper()
	return build(t, "helm", tmp, "about 3 minutes the first time on 2 cores, seconds once Go's build cache has it", "install", helmModule)
}

// logdist returns the path of logdist built from this repository.
func logdist(t *testing.T) string {
	t.Helper()
	return build(t, "logdist", root, "from this repository, for --check-config", "build", "-o", filepath.Join(tmp, "logdist"), "./cmd/logdist")
}

// run runs bin in the repository's root and returns its standard output;
// it fails the test, with both outputs, when bin fails.
func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	out, _, err := runErr(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runErr is run returning both outputs and the failure, with the command
// and its outputs.
func runErr(bin string, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.Bytes(), e.Bytes(), fmt.Errorf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, o.Bytes(), e.Bytes())
	}
	return o.Bytes(), e.Bytes(), nil
}

// need returns the path of bin, installing the Debian package pkg first
// when it is missing and the test runs as root with apt-get, and skipping
// the test, saying why, otherwise. A small copy of the main module's
// internal/testtool.Need: this module cannot import an internal package
// of another module.
func need(t *testing.T, bin, pkg string) string {
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
	v, _ := built.LoadOrStore("apt:"+pkg, &buildResult{})
	r := v.(*buildResult)
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
			if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
				r.err = fmt.Errorf("apt-get update: %v: %s", err, tail(out))
				return
			}
			if out, err := install(); err != nil {
				r.err = fmt.Errorf("apt-get install %s: %v: %s", pkg, err, tail(out))
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

func tail(b []byte) []byte {
	if len(b) > 500 {
		return b[len(b)-500:]
	}
	return b
}
