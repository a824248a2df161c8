// Package cli holds what the commands share: building the slog logger from
// the --log-format and --log-level flags (per-component levels, levels.go),
// the machine-readable ready line, and --version.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/version"
)

// LevelHelp documents --log-level for a command's --help: the syntax,
// an example list, and the command's components.
func LevelHelp(example string, components []string) string {
	return "log level: debug, info, warn or error, or per component: a list like " + example +
		" (the bare level is for the rest); components: " + strings.Join(components, ", ")
}

// NewLogger returns a logger writing to w in format "text" or "json" at
// level, a --log-level (see ParseLevels), or an error naming the flag
// that is wrong.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	spec, err := ParseLevels(level)
	if err != nil {
		return nil, err
	}
	return NewLoggerLevels(w, format, NewLevels(spec))
}

// NewLoggerLevels is NewLogger at levels the caller may change while the
// logger runs (Levels.Set).
func NewLoggerLevels(w io.Writer, format string, levels *Levels) (*slog.Logger, error) {
	// The level handler filters; the inner one writes what it is given.
	opts := &slog.HandlerOptions{Level: slog.Level(-1 << 20)}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(NewLevelHandler(slog.NewTextHandler(w, opts), levels)), nil
	case "json":
		opts.ReplaceAttr = jsonAttr
		return slog.New(NewLevelHandler(slog.NewJSONHandler(w, opts), levels)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// CheckFormat reports whether format is a --log-format.
func CheckFormat(format string) error {
	_, err := NewLoggerLevels(io.Discard, format, NewLevels(LevelSpec{}))
	return err
}

// IsJSON reports whether format is the JSON --log-format.
func IsJSON(format string) bool { return strings.EqualFold(format, "json") }

// jsonAttr writes durations as time.Duration.String does ("1.5s"), as the
// text format does, instead of slog's integer nanoseconds.
func jsonAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
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

// Fail writes msg, a command's last word before it exits, as one line:
// plain text on w, or a JSON record at level ERROR through log when the
// log is JSON (log may be nil before it exists).
func Fail(w io.Writer, log *slog.Logger, jsonLog bool, msg string) {
	if jsonLog && log != nil {
		log.Error(msg)
		return
	}
	fmt.Fprintln(w, msg)
}
