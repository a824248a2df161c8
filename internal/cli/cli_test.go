package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	f := func(format, level, wantErr string) {
		t.Helper()
		var buf bytes.Buffer
		log, err := NewLogger(&buf, format, level)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("NewLogger(%q, %q) error %v, want one mentioning %s", format, level, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("hello", "k", "v")
		log.Debug("hidden")
		if !strings.Contains(buf.String(), "hello") || strings.Contains(buf.String(), "hidden") {
			t.Fatalf("logged %q", buf.String())
		}
		if format == "json" && !strings.HasPrefix(buf.String(), "{") {
			t.Fatalf("json logger wrote %q", buf.String())
		}
	}
	f("text", "info", "")
	f("json", "warn", "")
	f("JSON", "info", "")
	f("text", "proxy=debug,info", "")
	f("xml", "info", "--log-format")
	f("text", "loud", "--log-level")
}

// JSON writes durations as text does ("1.5s"), not as integer
// nanoseconds, wherever they are.
func TestJSONDurations(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.With("retry_in", 250*time.Millisecond).WithGroup("g").Info("m", "waited", 1500*time.Millisecond, slog.Duration("d", time.Minute), "n", 3)
	var rec struct {
		RetryIn string `json:"retry_in"`
		G       struct {
			Waited string
			D      string
			N      int
		} `json:"g"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if rec.RetryIn != "250ms" || rec.G.Waited != "1.5s" || rec.G.D != "1m0s" || rec.G.N != 3 {
		t.Fatalf("durations not strings: %s", buf.Bytes())
	}
}

func TestComponentLevels(t *testing.T) {
	spec, err := ParseLevels("proxy=debug,balancer=info,warn")
	if err != nil {
		t.Fatal(err)
	}
	levels := NewLevels(spec)
	var buf bytes.Buffer
	base, err := NewLoggerLevels(&buf, "text", levels)
	if err != nil {
		t.Fatal(err)
	}
	proxy := base.With("component", "proxy")
	balancer := base.With("component", "balancer")
	other := base.With("component", "admin")
	f := func(log *slog.Logger, level slog.Level, want bool) {
		t.Helper()
		buf.Reset()
		log.Log(context.Background(), level, "record")
		if got := buf.Len() > 0; got != want {
			t.Fatalf("%s at %v: logged %v, want %v (%q)", spec, level, got, want, buf.String())
		}
	}
	f(proxy, slog.LevelDebug, true) // proxy=debug lets proxy's debug through
	f(balancer, slog.LevelDebug, false)
	f(balancer, slog.LevelInfo, true)
	f(base, slog.LevelInfo, false) // no component: the bare level, warn
	f(base, slog.LevelWarn, true)
	f(other, slog.LevelInfo, false) // a component the list does not name: the same
	f(other.With("loop", 1), slog.LevelWarn, true)
	// The last component given wins: a subsystem's logger made from another's.
	f(balancer.With("component", "proxy"), slog.LevelDebug, true)
	f(proxy.WithGroup("g").With("k", "v"), slog.LevelDebug, true)

	// A reload changes the loggers already made.
	spec2, _ := ParseLevels("balancer=debug,error")
	levels.Set(spec2)
	f(balancer, slog.LevelDebug, true)
	f(proxy, slog.LevelWarn, false)
	f(proxy, slog.LevelError, true)
	f(base, slog.LevelWarn, false)
	if got := levels.Spec().String(); got != "balancer=debug,error" {
		t.Fatalf("Spec() = %q", got)
	}
}

// Checking the level costs no allocation and no lock: a disabled debug
// line on a hot path is free.
func TestLevelCheckAllocs(t *testing.T) {
	spec, _ := ParseLevels("proxy=debug,warn")
	log, _ := NewLoggerLevels(&bytes.Buffer{}, "json", NewLevels(spec))
	bal := log.With("component", "balancer")
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		if bal.Enabled(ctx, slog.LevelDebug) {
			t.Fatal("enabled")
		}
		bal.Debug("dropped")
	}); n != 0 {
		t.Fatalf("a disabled record costs %v allocations", n)
	}
}

func TestParseLevels(t *testing.T) {
	ok := func(in, want string) {
		t.Helper()
		spec, err := ParseLevels(in)
		if err != nil {
			t.Fatalf("ParseLevels(%q): %v", in, err)
		}
		if spec.String() != want {
			t.Fatalf("ParseLevels(%q) = %q, want %q", in, spec.String(), want)
		}
	}
	ok("info", "info")
	ok("DEBUG", "debug")
	ok("proxy=debug", "proxy=debug,info") // the default stays info
	ok(" warn , proxy = debug,frame/server=error", "frame/server=error,proxy=debug,warn")
	bad := func(in, why string) {
		t.Helper()
		_, err := ParseLevels(in)
		if err == nil || !strings.HasPrefix(err.Error(), "--log-level ") || !strings.Contains(err.Error(), why) ||
			!strings.Contains(err.Error(), "proxy=debug,balancer=info,warn") {
			t.Fatalf("ParseLevels(%q) error %v, want one naming the flag, saying %q and showing the syntax", in, err, why)
		}
	}
	bad("", "empty")
	bad("loud", `"loud" is not a level`)
	bad("proxy=", `"" is not a level`)
	bad("proxy:debug", `"proxy:debug" is not a level`)
	bad("=debug", `"" is not a component name`)
	bad("info,warn", "two default levels")
	bad("proxy=debug,proxy=info", `component "proxy" named twice`)
	bad("proxy=debug,", `"" is not a level`)

	spec, _ := ParseLevels("proxi=debug,info")
	if err := spec.Check([]string{"balancer", "proxy"}); err == nil || !strings.Contains(err.Error(), `unknown component "proxi"; the components are balancer, proxy`) {
		t.Fatalf("Check: %v", err)
	}
	if err := spec.Check([]string{"proxi"}); err != nil {
		t.Fatal(err)
	}
}

func TestReadyLine(t *testing.T) {
	attrs := []slog.Attr{slog.String("listen", "127.0.0.1:7400"), slog.String("admin", ""), slog.Int("version", 3)}

	// Text: exactly the line scripts have always read, at any level.
	var w bytes.Buffer
	log, _ := NewLogger(&w, "text", "error")
	WriteReady(&w, log, false, "logdist", attrs...)
	if got := w.String(); got != "logdist ready listen=127.0.0.1:7400 admin= version=3\n" {
		t.Fatalf("text ready line %q", got)
	}
	f := func(line string) {
		t.Helper()
		fields, ok := ParseReady(strings.TrimSuffix(line, "\n"), "logdist")
		if !ok || len(fields) != 3 || fields["listen"] != "127.0.0.1:7400" || fields["admin"] != "" || fields["version"] != "3" {
			t.Fatalf("ParseReady(%q) = %v, %v", line, fields, ok)
		}
	}
	f(w.String())

	// JSON: one record, written even at --log-level error.
	w.Reset()
	log, _ = NewLogger(&w, "json", "error")
	WriteReady(&w, log, true, "logdist", attrs...)
	var rec map[string]any
	if err := json.Unmarshal(w.Bytes(), &rec); err != nil || rec["msg"] != "logdist ready" || rec["level"] != "INFO" || rec["listen"] != "127.0.0.1:7400" {
		t.Fatalf("JSON ready line %q (%v)", w.String(), err)
	}
	f(w.String())

	for _, line := range []string{"logdist readyness", "analyzerd ready listen=x", `{"msg":"logdist"}`, "{broken", ""} {
		if _, ok := ParseReady(line, "logdist"); ok {
			t.Errorf("ParseReady(%q) took it for a ready line", line)
		}
	}
	if f, ok := ParseReady("logbench idle ready conns=5", "logbench idle"); !ok || f["conns"] != "5" {
		t.Errorf("logbench idle ready: %v %v", f, ok)
	}
}
