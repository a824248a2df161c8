package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/analyzerd"
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
	f("--pool-size", "-1")
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

// TestAgainstAnalyzerdNoDuplicates runs logbench against analyzerd, as
// whole-system measurements do, for longer than a pool lasts (each
// connection sends its 64 bodies several times over, zstd and plain,
// traced or not): every packet carries a new id, so analyzerd's /stats
// counts every packet acknowledged as new and none as a duplicate, and
// logbench says so.
func TestAgainstAnalyzerdNoDuplicates(t *testing.T) {
	for _, args := range [][]string{
		{"--compress", "zstd"},
		{"--compress", "none", "--trace-sample", "0.5"},
	} {
		t.Run(args[1], func(t *testing.T) {
			cfg := analyzerd.DefaultConfig()
			cfg.Server.Addr = "127.0.0.1:0"
			cfg.Admin = "127.0.0.1:0"
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			cfg.Server.DrainTimeout = time.Second
			a, err := analyzerd.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			defer a.Close()

			var out, errb bytes.Buffer
			// 3 connections × 64 bodies, 1,000 packets: each body goes
			// out 5 or 6 times.
			code := run(append([]string{"--target", a.Addr().String(), "--packets", "1000", "--conns", "3", "--window", "16", "--pool-size", "64", "-q"}, args...), &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if want := "unique packet ids: yes (192 pre-encoded bodies over 3 conns"; !strings.Contains(out.String(), want) {
				t.Fatalf("logbench output lacks %q:\n%s", want, out.String())
			}
			resp, err := http.Get("http://" + a.AdminAddr().String() + "/stats")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st analyzerd.Stats
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				t.Fatal(err)
			}
			if st.Duplicates != 0 || st.Packets != 1000 || st.Messages != 10000 {
				t.Fatalf("analyzerd /stats after 1,000 packets: %+v, want 1000 packets, 10000 messages, 0 duplicates", st)
			}
		})
	}
}
