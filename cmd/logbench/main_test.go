package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBadFlagsExit2WithOneLine(t *testing.T) {
	f := func(args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Fatalf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
		if lines := strings.Count(errb.String(), "\n"); lines != 1 || !strings.HasPrefix(errb.String(), "logbench: ") {
			t.Fatalf("%q: stderr %q, want one logbench: line", args, errb.String())
		}
		if out.Len() != 0 {
			t.Fatalf("%q: stdout %q", args, out.String())
		}
	}
	f("--no-such-flag")
	f("--conns", "x")
	f("--compress", "gzip")
	f("--profile", "nope")
	f("--profile", "baseline", "--rate", "5")
	f("--scale", "2")
	f("--duration", "1s", "--packets", "5")
	f("--msgs-per-packet", "0")
	f("--window", "0")
	f("--admin", "http://")
	f("extra")
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"--target", "--conns", "--rate", "--duration", "--packets", "--msgs-per-packet", "--msg-size", "--compress", "--dict", "--window", "--profile", "--scale", "--admin", "--idle-conns", "--json"} {
		if !strings.Contains(errb.String(), f) {
			t.Fatalf("--help does not list %s", f)
		}
	}
}

func TestJSONRun(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DrainTimeout = time.Second
	srv, err := server.New(cfg, server.HandlerFunc(func(context.Context, *server.Meta, *frame.Packet) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	var out, errb bytes.Buffer
	code := run([]string{"--target", srv.Addr().String(), "--packets", "200", "--conns", "2", "--window", "8",
		"--msgs-per-packet", "4", "--compress", "none", "--json", "-q"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"packets_sent", "packets_acked", "messages_acked", "bytes_sent", "duration_s",
		"packets_per_sec", "messages_per_sec", "mbytes_per_sec", "latency_ms", "errors", "busy", "reconnects"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("JSON has no %q: %s", k, out.String())
		}
	}
	lat := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Fatalf("latency_ms has no %q", k)
		}
	}
	if m["packets_sent"].(float64) != 200 || m["packets_acked"].(float64) != 200 || m["messages_acked"].(float64) != 800 {
		t.Fatalf("sent %v acked %v messages %v, want 200/200/800", m["packets_sent"], m["packets_acked"], m["messages_acked"])
	}
	if errb.Len() != 0 {
		t.Fatalf("-q run wrote to stderr: %s", errb.String())
	}
}
