package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
)

// With --log-format json every line logdist and analyzerd write to stderr
// is one JSON object — the ready line, the drain, a rejected packet's
// line included — and durations are strings ("10s"), not nanoseconds.
func TestJSONLogs(t *testing.T) {
	dir := t.TempDir()
	an := start(t, binary(t, "analyzerd"), "--name", "a1", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--out", filepath.Join(dir, "a1.jsonl"), "--log-format", "json", "--log-level", "debug")
	ld := start(t, binary(t, "logdist"), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--syslog-udp", "127.0.0.1:0",
		"--loops", "2", "--analyzer", "name=a1,addr="+an.fields["listen"], "--inspect", "full",
		"--log-format", "json", "--log-level", "proxy=debug,balancer=debug,info")
	// The ready records were read (start waited for them): their fields.
	if ld.fields["admin"] == "" || ld.fields["version"] != "1" || an.fields["name"] != "a1" {
		t.Fatalf("ready fields: logdist %v, analyzerd %v", ld.fields, an.fields)
	}
	waitFor(t, "a1 healthy", 10*time.Second, func() bool {
		var rows []analyzerRow
		getJSON(t, "http://"+ld.fields["admin"]+"/api/v1/analyzers", &rows)
		return len(rows) == 1 && rows[0].Healthy
	})

	ag := newAgent(t, ld.fields["listen"], "agent-json")
	ag.send(t, 20, "json logs")
	ag.flush(t)

	// A packet that does not decode, to logdist (--inspect full) and
	// straight to the analyzer: each logs it, naming it.
	bad := &frame.Packet{ID: 4242, AgentID: []byte("agent-bad"), Messages: []frame.Message{{Body: bytes.Repeat([]byte("squeeze "), 40)}}}
	for _, addr := range []string{ld.fields["listen"], an.fields["listen"]} {
		c, err := servertest.Dial(addr, "agent-bad")
		if err != nil {
			t.Fatal(err)
		}
		var enc frame.Encoder
		if err := c.Write(enc.AppendCompressed(nil, 1, 2, frame.AppendPacket(nil, bad))); err != nil {
			t.Fatal(err)
		}
		f, err := c.Next()
		if err != nil || f.Type != frame.TypeError || f.Seq != 1 {
			t.Fatalf("%s: %v %v, want ERROR seq=1", addr, f, err)
		}
		c.Close()
	}

	ld.signal(syscall.SIGTERM)
	if code := ld.wait(20 * time.Second); code != 0 {
		t.Fatalf("logdist exit %d\n%s", code, ld.logs())
	}
	an.signal(syscall.SIGTERM)
	if code := an.wait(20 * time.Second); code != 0 {
		t.Fatalf("analyzerd exit %d\n%s", code, an.logs())
	}

	for _, p := range []*proc{ld, an} {
		recs := jsonRecords(t, p)
		want := map[string]bool{p.name + " ready": false, "signal received; draining": false}
		for _, r := range recs {
			if _, ok := want[r["msg"].(string)]; ok {
				want[r["msg"].(string)] = true
			}
			// Durations are strings a reader can parse back.
			for _, k := range []string{"drain_timeout", "waited", "delay", "retry_in", "backoff", "at_most"} {
				if v, ok := r[k]; ok {
					s, isString := v.(string)
					if _, err := time.ParseDuration(s); !isString || err != nil {
						t.Errorf("%s: %s=%v (%T) is not a duration string: %v", p.name, k, v, v, r)
					}
				}
			}
		}
		for msg, seen := range want {
			if !seen {
				t.Errorf("%s: no %q record\n%s", p.name, msg, p.logs())
			}
		}
		rejected := 0
		for _, r := range recs {
			if r["msg"] == "packet rejected" {
				rejected++
				if r["agent_id"] != "agent-bad" || r["packet_id"] != 4242.0 {
					t.Errorf("%s: rejected packet not named: %v", p.name, r)
				}
			}
		}
		if rejected != 1 {
			t.Errorf("%s: %d \"packet rejected\" records, want 1\n%s", p.name, rejected, p.logs())
		}
	}
}

// jsonRecords parses every line p wrote to stderr as one JSON object with
// time, level and msg, failing the test on any other line.
func jsonRecords(t *testing.T, p *proc) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(p.logs(), "\n"), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("%s wrote a line that is not JSON: %q (%v)", p.name, line, err)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := r[k].(string); !ok {
				t.Errorf("%s: record without %s: %q", p.name, k, line)
			}
		}
		recs = append(recs, r)
	}
	if len(recs) < 5 {
		t.Fatalf("%s wrote %d records:\n%s", p.name, len(recs), p.logs())
	}
	return recs
}

// A reload (SIGHUP) takes a new --log-level, per component, without a
// restart: the loggers already made follow it.
func TestLogLevelReload(t *testing.T) {
	dir := t.TempDir()
	an := start(t, binary(t, "analyzerd"), "--name", "a1", "--listen", "127.0.0.1:0", "--log-level", "warn")
	conf := filepath.Join(dir, "logdist.yaml")
	write := func(level string) {
		y := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: \"\"\nsyslog-udp: \"\"\nloops: 1\nlog-level: %q\nanalyzers:\n  - name=a1,addr=%s\n", level, an.fields["listen"])
		if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("warn")
	ld := start(t, binary(t, "logdist"), "--config", conf)
	// garbage sends a frame with a bad magic: proxy logs it at debug, and
	// closes the connection. It returns the local address it came from.
	garbage := func() string {
		c, err := net.Dial("tcp", ld.fields["listen"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(bytes.Repeat([]byte{0xEE}, frame.HeaderSize))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until logdist closes it: the line, if any, is written
		return c.LocalAddr().String()
	}
	const msg = `msg="closing agent connection on protocol error"`
	before := garbage()
	write("proxy=debug,warn")
	ld.signal(syscall.SIGHUP)
	var after string
	waitFor(t, "a proxy debug line after the reload", 10*time.Second, func() bool {
		after = garbage()
		return strings.Contains(ld.logs(), msg+" component=proxy remote="+after)
	})
	// The protocol error of the first connection was logged (or not)
	// before logdist closed it, so before the reload; its "connection
	// closed" line may come after the reload, at debug, rightly.
	if strings.Contains(ld.logs(), msg+" component=proxy remote="+before) {
		t.Fatalf("a debug line before the reload, at --log-level warn:\n%s", ld.logs())
	}
	ld.signal(syscall.SIGTERM)
	if code := ld.wait(20 * time.Second); code != 0 {
		t.Fatalf("logdist exit %d", code)
	}
	an.signal(syscall.SIGTERM)
	an.wait(20 * time.Second)
}

// --watch-config reloads when the config file's content changes, with no
// SIGHUP (a Kubernetes ConfigMap update swaps a symlink under the file).
func TestWatchConfigReloads(t *testing.T) {
	dir := t.TempDir()
	an := start(t, binary(t, "analyzerd"), "--name", "a1", "--listen", "127.0.0.1:0", "--log-level", "warn")
	data := filepath.Join(dir, "v1.yaml")
	link := filepath.Join(dir, "logdist.yaml")
	write := func(name string, weight float64) {
		y := fmt.Sprintf("listen: 127.0.0.1:0\nsyslog-udp: \"\"\nadmin: 127.0.0.1:0\nanalyzers:\n  - name=a1,addr=%s,weight=%g\n", an.fields["listen"], weight)
		if err := os.WriteFile(name, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(data, 1)
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	ld := start(t, binary(t, "logdist"), "--config", link, "--watch-config")
	weight := func() float64 {
		var rows []analyzerRow
		if getJSONQuiet("http://"+ld.fields["admin"]+"/api/v1/analyzers", &rows) != nil || len(rows) != 1 {
			return -1
		}
		return rows[0].Weight
	}
	waitFor(t, "weight 1", 10*time.Second, func() bool { return weight() == 1 })
	// As the kubelet does: the new content in a new file, the link swapped.
	next := filepath.Join(dir, "v2.yaml")
	write(next, 3)
	tmp := link + ".tmp"
	if err := os.Symlink(next, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new weight, reloaded without a signal", 20*time.Second, func() bool { return weight() == 3 })
	if !strings.Contains(ld.logs(), "a watched file changed") {
		t.Errorf("no log line for the reload:\n%s", ld.logs())
	}
	ld.signal(syscall.SIGTERM)
	if code := ld.wait(20 * time.Second); code != 0 {
		t.Fatalf("logdist exit %d", code)
	}
	an.signal(syscall.SIGTERM)
	an.wait(20 * time.Second)
}
