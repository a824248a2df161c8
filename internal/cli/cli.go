// Package cli holds what the commands share: building the slog logger from
// the --log-format and --log-level flags, and --version.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/version"
)

// NewLogger returns a logger writing to w in format "text" or "json" at
// level "debug", "info", "warn" or "error", or an error naming the flag
// that is wrong.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return NewLoggerLevel(w, format, lvl)
}

// ParseLevel reads a --log-level.
func ParseLevel(level string) (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return lvl, nil
}

// NewLoggerLevel is NewLogger at a level the caller may change while the
// logger runs (a *slog.LevelVar) or a fixed one.
func NewLoggerLevel(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// VersionFlag adds --version to fs. After fs.Parse, call the function it
// returns: when --version was given it prints the build of name to w and
// returns true (the command then exits 0 without doing anything else).
func VersionFlag(fs *pflag.FlagSet, name string) func(w io.Writer) bool {
	v := fs.Bool("version", false, "print the version and the commit this binary was built from, and exit")
	return func(w io.Writer) bool {
		if *v {
			fmt.Fprintln(w, version.Get().String(name))
		}
		return *v
	}
}
