package deploycheck

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
)

// promtool and yamllint return the tools' paths (installing or skipping
// as testtool.Need does).
func promtool(t *testing.T) string { t.Helper(); return testtool.Need(t, "promtool", "prometheus") }
func yamllint(t *testing.T) string { t.Helper(); return testtool.Need(t, "yamllint", "yamllint") }

// run runs a tool in the repository's root and fails the test, with the
// tool's output, when it fails.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s %v: %v\n%s", bin, args, err, out)
	}
	return string(out)
}
