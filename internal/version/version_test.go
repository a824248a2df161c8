package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// A stamped version (make release's -X ...version.stamp) wins over the
// module version; without one, Get says what go build recorded, as before.
func TestGet(t *testing.T) {
	bi := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/logdist/logdist", Version: v}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "60d5a53e0d29aa0f"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	f := func(bi *debug.BuildInfo, stamp, want string) {
		t.Helper()
		if got := get(bi, stamp).Version; got != want {
			t.Errorf("get(%v, %q).Version = %q, want %q", bi, stamp, got, want)
		}
	}
	f(nil, "", "(devel)")
	f(nil, "v1.2.0", "v1.2.0")
	f(bi(""), "", "(devel)")
	f(bi("(devel)"), "", "(devel)")
	f(bi("v0.0.0-20261206121910-60d5a53e0d29", rev), "", "v0.0.0-20261206121910-60d5a53e0d29")
	f(bi("v0.0.0-20261206121910-60d5a53e0d29", rev), "v1.2.0", "v1.2.0")
	f(bi("(devel)", rev, dirty), "v1.2.0-3-g60d5a53-dirty", "v1.2.0-3-g60d5a53-dirty")

	b := get(bi("(devel)", rev, dirty), "v1.2.0")
	if b.Revision != rev.Value || !b.Modified || b.Go != runtime.Version() {
		t.Errorf("a stamp must keep the commit and toolchain: %+v", b)
	}
}

// The --version line names the commit, and says "(modified)" only when the
// version does not already say dirty.
func TestString(t *testing.T) {
	f := func(b Build, want, notWant string) {
		t.Helper()
		s := b.String("logdist")
		if !strings.Contains(s, want) || (notWant != "" && strings.Contains(s, notWant)) {
			t.Errorf("%+v: %q; want it to contain %q and not %q", b, s, want, notWant)
		}
	}
	const rev = "60d5a53e0d29aa0f"
	f(Build{Version: "v1.2.0", Revision: rev}, "logdist v1.2.0 (commit 60d5a53e0d29, ", "modified")
	f(Build{Version: "v1.2.0", Revision: rev, Modified: true}, "commit 60d5a53e0d29 (modified)", "")
	f(Build{Version: "60d5a53-dirty", Revision: rev, Modified: true}, "logdist 60d5a53-dirty (commit 60d5a53e0d29, ", "modified")
	f(Build{Version: "v0.0.0-20261206121910-60d5a53e0d29+dirty", Revision: rev, Modified: true}, "+dirty (commit 60d5a53e0d29, ", "modified")
}

// Get, in this test binary, has no stamp: the module's version or (devel).
func TestGetUnstamped(t *testing.T) {
	if stamp != "" {
		t.Skip("this test binary was built with a stamp")
	}
	bi, ok := debug.ReadBuildInfo()
	want := "(devel)"
	if ok && bi.Main.Version != "" {
		want = bi.Main.Version
	}
	if got := Get().Version; got != want {
		t.Errorf("Get().Version = %q, want %q", got, want)
	}
}
