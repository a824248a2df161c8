// Package version says which build of logdist is running: the release
// version make release stamps into the binary, or else the module
// version, and the commit Go stamped into it (go build embeds them from
// the Git checkout it builds in), for --version on every command and the
// logdist_build_info metric.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// stamp is the version the build says, set by the linker:
//
//	go build -ldflags "-X github.com/logdist/logdist/internal/version.stamp=v1.2.0"
//
// make release and make image set it to git describe --tags --always
// --dirty. A tree that has no tag yet gets only a pseudo-version from go
// build (v0.0.0-20261206121910-60d5a53e0d29), which names no release.
var stamp string

// Build describes the running binary.
type Build struct {
	// Version is the stamped version when the build set one, else the
	// module version: a tag (v1.2.0), a pseudo-version for an untagged
	// commit, or "(devel)" (go run, go test).
	Version string
	// Revision is the commit hash, with Modified set when the tree had
	// uncommitted changes; Time is the commit's time (RFC 3339). Empty when
	// built outside a Git checkout.
	Revision string
	Time     string
	Modified bool
	// Go is the toolchain that built it.
	Go string
}

// Get reads the build information stamped into the binary.
func Get() Build {
	bi, _ := debug.ReadBuildInfo()
	return get(bi, stamp)
}

// get is Get over given build information (nil when the binary has none)
// and stamp.
func get(bi *debug.BuildInfo, stamp string) Build {
	b := Build{Version: "(devel)", Go: runtime.Version()}
	if stamp != "" {
		b.Version = stamp
	}
	if bi == nil {
		return b
	}
	if v := bi.Main.Version; v != "" && stamp == "" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the line --version prints for the command name.
func (b Build) String(name string) string {
	var parts []string
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		// A pseudo-version (+dirty) or a stamp from git describe --dirty
		// (-dirty) says it already.
		if b.Modified && !strings.HasSuffix(b.Version, "+dirty") && !strings.HasSuffix(b.Version, "-dirty") {
			rev += " (modified)"
		}
		parts = append(parts, "commit "+rev)
	}
	if b.Time != "" {
		parts = append(parts, b.Time)
	}
	parts = append(parts, b.Go, runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("%s %s (%s)", name, b.Version, strings.Join(parts, ", "))
}
