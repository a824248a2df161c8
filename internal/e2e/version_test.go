package e2e

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Every binary answers --version with its name and the commit it was built
// from (when built in a Git checkout), and exits 0 without doing anything
// else; logdist also exports it as logdist_build_info.
func TestVersion(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	head := ""
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		head = strings.TrimSpace(string(out))[:12]
	} else {
		t.Logf("not a Git checkout (%v): checking the version line without a commit", err)
	}
	for _, name := range []string{"logdist", "analyzerd", "logsend", "logbench"} {
		out, err := exec.Command(binary(t, name), "--version").CombinedOutput()
		line := strings.TrimSpace(string(out))
		if err != nil || !strings.HasPrefix(line, name+" ") || strings.Count(line, "\n") != 0 {
			t.Errorf("%s --version: %v, %q; want one line starting %q and exit 0", name, err, line, name+" ")
			continue
		}
		if head != "" && !strings.Contains(line, "commit "+head) {
			t.Errorf("%s --version: %q does not name HEAD %s", name, line, head)
		}
	}

	c := newCluster(t, []float64{1})
	body := httpGet(t, "http://"+c.admin+"/metrics")
	want := `logdist_build_info{version="`
	if head != "" {
		want = `",revision="` + head
	}
	if !strings.Contains(body, want) {
		t.Fatalf("/metrics lacks %s:\n%s", want, grepLines(body, "build_info"))
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
