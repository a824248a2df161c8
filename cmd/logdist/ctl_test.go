package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/internal/control/controltest"
	"github.com/logdist/logdist/proxy"
)

// ctlRig serves the admin API (over a controller and a server built but
// not started) on a loopback port for logdist ctl to talk to.
func ctlRig(t *testing.T) (url, tokenFile string, srv *proxy.Server) {
	t.Helper()
	ctl, srv := controltest.New(t, controltest.Spec(), control.Options{})
	const tok = "ctl-test-0123456789abcdef"
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("ops "+tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := admin.NewAccess([]config.Token{{Identity: "ops", Secret: tok}}, nil)
	hs := httptest.NewServer(admin.New(admin.Config{Server: srv, Control: ctl, Access: acc}))
	t.Cleanup(hs.Close)
	return hs.URL, tokenFile, srv
}

func ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runCtl(args, &out, &errb)
	return code, out.String(), errb.String()
}

// logdist ctl drives the admin API: reads without a token, changes with
// one; refusals exit 1 with the API's reason; bad usage exits 2.
func TestCtl(t *testing.T) {
	url, tokenFile, srv := ctlRig(t)
	code, out, _ := ctl("--admin", url, "analyzers")
	if code != 0 || !strings.Contains(out, "a1") || !strings.Contains(out, "a2") || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("analyzers: %d %q", code, out)
	}
	code, _, errs := ctl("--admin", url, "weight", "a1", "0.5")
	if code != 1 || !strings.Contains(errs, "401 Unauthorized: a token is needed") {
		t.Fatalf("weight without a token: %d %q", code, errs)
	}
	code, out, errs = ctl("--admin", url, "--token-file", tokenFile, "weight", "a1", "0.5", "--ramp", "1m")
	if code != 0 || !strings.Contains(out, "version 2 applied:\n  analyzer a1: weight 1 → 0.5 over 1m0s") {
		t.Fatalf("weight with a ramp: %d %q %q", code, out, errs)
	}
	if a := srv.Config().Analyzers[0]; a.Weight != 0.5 || a.Ramp.Over == 0 {
		t.Fatalf("server after ctl weight: %+v", a)
	}
	for _, args := range [][]string{{"drain", "a2"}, {"add", "a3", "127.0.0.1:3", "--weight", "2"}, {"remove", "a3"}, {"rollback", "1"}, {"flush"}} {
		if code, out, errs := ctl(append([]string{"--admin", url, "--token-file", tokenFile}, args...)...); code != 0 {
			t.Fatalf("ctl %v: %d %q %q", args, code, out, errs)
		}
	}
	code, out, _ = ctl("--admin", url, "versions")
	if code != 0 || !strings.Contains(out, "6 (running)") || !strings.Contains(out, "ops@127.0.0.1:") || !strings.Contains(out, "rollback to 1") {
		t.Fatalf("versions: %d\n%s", code, out)
	}
	code, out, _ = ctl("--admin", url, "config")
	if code != 0 || !strings.Contains(out, "# version 6 (rollback to 1)") || !strings.Contains(out, "name: a2") {
		t.Fatalf("config: %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--admin", url, "--token-file", tokenFile, "weight", "zz", "1"}, 1, `404 Not Found: no analyzer "zz"`},
		{[]string{"--admin", url, "weight", "a1", "heavy"}, 2, `weight "heavy" is not a non-negative number`},
		{[]string{"--admin", url, "drain"}, 2, "want 1 argument(s), got 0"},
		{[]string{"--admin", url, "weight", "a1", "NaN"}, 2, "not a non-negative number"},
		{[]string{"--admin", url, "add", "a9", "127.0.0.1:9", "--weight", "Inf"}, 2, "not a non-negative number"},
		{[]string{"--admin", url, "explode"}, 2, `unknown command "explode"`},
		{[]string{"--admin", "127.0.0.1:1", "status"}, 1, "cannot reach logdist's admin API"},
	} {
		code, _, errs := ctl(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.says) || strings.Count(errs, "\n") != 1 {
			t.Errorf("ctl %v: exit %d, stderr %q; want %d and one line saying %q", tc.args, code, errs, tc.code, tc.says)
		}
	}
}

// logdist ctl health, the container image's HEALTHCHECK: exit 0 while
// /healthz answers 200; 1 with a one-line reason when logdist drains, is
// gone, or answers anything else.
func TestCtlHealth(t *testing.T) {
	url, _, srv := ctlRig(t)
	code, out, errs := ctl("--admin", url, "health")
	if code != 0 || out != "healthy: 200 OK\n" || errs != "" {
		t.Fatalf("health of a running logdist: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Host:port without a scheme, as the Dockerfile's HEALTHCHECK gives it.
	if code, _, errs := ctl("--admin", strings.TrimPrefix(url, "http://"), "health"); code != 0 {
		t.Fatalf("health with --admin HOST:PORT: exit %d, stderr %q", code, errs)
	}

	// A logdist that stops drains, and /healthz says so.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty/healthz":
			w.WriteHeader(http.StatusInternalServerError)
		case "/lines/healthz":
			http.Error(w, "first line\nsecond line\n", http.StatusBadGateway)
		case "/accepted/healthz":
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	defer odd.Close()
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--admin", url, "health"}, 1, "logdist ctl health: 503 Service Unavailable: draining\n"},
		{[]string{"--admin", "127.0.0.1:1", "health"}, 1, "logdist ctl health: cannot reach logdist's admin API: "},
		{[]string{"--admin", odd.URL + "/empty", "health"}, 1, "logdist ctl health: 500 Internal Server Error\n"},
		{[]string{"--admin", odd.URL + "/lines", "health"}, 1, "logdist ctl health: 502 Bad Gateway: first line second line\n"},
		{[]string{"--admin", odd.URL + "/accepted", "health"}, 1, "logdist ctl health: 202 Accepted\n"},
		{[]string{"--admin", odd.URL, "health"}, 1, "logdist ctl health: 404 Not Found: 404 page not found\n"},
		{[]string{"--admin", url, "health", "now"}, 2, "logdist ctl health: want 0 argument(s), got 1"},
	} {
		code, out, errs := ctl(tc.args...)
		if code != tc.code || !strings.HasPrefix(errs, tc.says) || strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("ctl %v: exit %d, stdout %q, stderr %q; want %d and one line starting %q", tc.args, code, out, errs, tc.code, tc.says)
		}
	}
}
