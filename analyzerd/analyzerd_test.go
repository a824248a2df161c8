package analyzerd_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, edit func(*analyzerd.Config)) *analyzerd.Analyzer {
	t.Helper()
	cfg := analyzerd.DefaultConfig()
	cfg.Name = "a1"
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Server.DrainTimeout = 2 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	a, err := analyzerd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return a
}

func dial(t *testing.T, a *analyzerd.Analyzer) *servertest.Client {
	t.Helper()
	c, err := servertest.Dial(a.Addr().String(), "logdist-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *servertest.Client, p *frame.Packet) {
	t.Helper()
	seq, err := c.Send(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAck(seq); err != nil {
		t.Fatal(err)
	}
}

func packet(agent string, id uint64, bodies ...string) *frame.Packet {
	p := &frame.Packet{ID: id, AgentID: []byte(agent)}
	for i, b := range bodies {
		p.Messages = append(p.Messages, frame.Message{
			Timestamp: 1_764_000_000_123_456_789 + int64(i),
			Severity:  frame.SevWarning,
			Facility:  3,
			Hostname:  []byte("web-1"),
			App:       []byte("nginx"),
			Body:      []byte(b),
		})
	}
	return p
}

func TestDuplicatesCounted(t *testing.T) {
	a := start(t, nil)
	c := dial(t, a)
	p := packet("agent-1", 42, "hello", "world")
	send(t, c, p)
	send(t, c, p) // the same packet again, as after a resend
	send(t, c, packet("agent-2", 42, "other agent, same id"))
	c2 := dial(t, a) // a resend may come on another connection
	send(t, c2, p)

	got := a.Stats()
	want := analyzerd.Stats{Name: "a1", Packets: 2, Messages: 3, Duplicates: 2}
	want.DecodedBytes = got.DecodedBytes
	if got != want || got.DecodedBytes == 0 {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestOutJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	a := start(t, func(c *analyzerd.Config) { c.Out = path })
	c := dial(t, a)
	p := packet("agent-1", 1764000000000000001, "first line", `a "quoted" <b>`)
	p.TraceID = []byte("trace-9")
	p.Messages[1].Attrs = []frame.Attr{{Key: []byte("status"), Value: []byte("502")}}
	p.Messages[1].Severity = frame.SevError
	send(t, c, p)
	send(t, c, p) // a duplicate is not written again

	// The ACK means the lines are in the file.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), b)
	}
	want := []map[string]any{
		{"agent": "agent-1", "packet_id": json.Number("1764000000000000001"), "trace_id": "trace-9",
			"ts": "2025-11-24T16:00:00.123456789Z", "severity": "warning", "facility": json.Number("3"),
			"host": "web-1", "app": "nginx", "msg": "first line", "attrs": map[string]any{}},
		{"agent": "agent-1", "packet_id": json.Number("1764000000000000001"), "trace_id": "trace-9",
			"ts": "2025-11-24T16:00:00.12345679Z", "severity": "err", "facility": json.Number("3"),
			"host": "web-1", "app": "nginx", "msg": `a "quoted" <b>`, "attrs": map[string]any{"status": "502"}},
	}
	for i, line := range lines {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var got map[string]any
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("line %d:\n got %v\nwant %v", i, got, want[i])
		}
	}
}

// lockedBuffer is an io.Writer the test can read while the analyzer
// writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestOutStdout(t *testing.T) {
	var out lockedBuffer
	a := start(t, func(c *analyzerd.Config) { c.Out = "-"; c.Stdout = &out })
	send(t, dial(t, a), packet("agent-1", 1, "to stdout"))
	if s := out.String(); !strings.Contains(s, `"msg":"to stdout"`) || strings.Count(s, "\n") != 1 {
		t.Fatalf("stdout %q", s)
	}
}

type failingWriter struct{ fail bool }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestOutFailureIsNotAcked(t *testing.T) {
	w := &failingWriter{fail: true}
	a := start(t, func(c *analyzerd.Config) { c.Out = "-"; c.Stdout = w })
	c := dial(t, a)
	seq, err := c.Send(packet("agent-1", 1, "x"), false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Next()
	if err != nil || f.Type != frame.TypeBusy || f.Seq != seq {
		t.Fatalf("got %v %v, want BUSY", f, err)
	}
	if s := a.Stats(); s.Packets != 0 {
		t.Fatalf("a packet that was not written is counted: %+v", s)
	}
}

func TestAdminEndpoints(t *testing.T) {
	a := start(t, nil)
	send(t, dial(t, a), packet("agent-1", 1, "m1", "m2", "m3"))
	base := "http://" + a.AdminAddr().String()
	get := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}

	ct, body := get("/stats")
	var stats map[string]any
	if err := json.Unmarshal([]byte(body), &stats); err != nil || ct != "application/json" {
		t.Fatalf("/stats %s %q: %v", ct, body, err)
	}
	keys := []string{}
	for k := range stats {
		keys = append(keys, k)
	}
	if len(stats) != 5 || stats["name"] != "a1" || stats["packets"] != 1.0 || stats["messages"] != 3.0 ||
		stats["duplicates"] != 0.0 || stats["decoded_bytes"].(float64) <= 0 {
		t.Fatalf("/stats = %s (keys %v)", body, keys)
	}

	_, body = get("/metrics")
	for _, want := range []string{"analyzerd_packets_total 1", "analyzerd_server_packets_acked_total 1", "analyzerd_dedup_agents 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if _, body = get("/healthz"); body != "ok\n" {
		t.Fatalf("/healthz %q", body)
	}
	resp, err := http.Post(base+"/stats", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /stats: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/cmdline without Pprof: %d, want 404", resp.StatusCode)
	}
}

func TestPprof(t *testing.T) {
	a := start(t, func(c *analyzerd.Config) { c.Pprof = true })
	resp, err := http.Get("http://" + a.AdminAddr().String() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/pprof/cmdline with Pprof: %d", resp.StatusCode)
	}
}

func TestDelay(t *testing.T) {
	const delay = 150 * time.Millisecond
	a := start(t, func(c *analyzerd.Config) { c.Delay = delay })
	c := dial(t, a)
	began := time.Now()
	send(t, c, packet("agent-1", 1, "slow"))
	// The ACK cannot come before the processing delay has passed.
	if took := time.Since(began); took < delay {
		t.Fatalf("acked after %s, before the %s delay", took, delay)
	}
	if a.Stats().Packets != 1 {
		t.Fatal("packet not counted")
	}
}

func TestListenLine(t *testing.T) {
	var logs lockedBuffer
	a := start(t, func(c *analyzerd.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	want := "analyzerd a1 listening on " + a.Addr().String()
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) && strings.Contains(sc.Text(), "admin="+a.AdminAddr().String()) {
			return
		}
	}
	t.Fatalf("no line with %q in\n%s", want, logs.String())
}

func TestConfigValidate(t *testing.T) {
	f := func(name string, edit func(*analyzerd.Config), ok bool) {
		t.Helper()
		cfg := analyzerd.DefaultConfig()
		edit(&cfg)
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", name, err, ok)
		}
	}
	f("default", func(*analyzerd.Config) {}, true)
	f("no name", func(c *analyzerd.Config) { c.Name = "" }, false)
	f("negative delay", func(c *analyzerd.Config) { c.Delay = -time.Second }, false)
	f("dedup window 0", func(c *analyzerd.Config) { c.DedupWindow = 0 }, false)
	f("dedup agents 0", func(c *analyzerd.Config) { c.DedupAgents = 0 }, false)
	f("window 0", func(c *analyzerd.Config) { c.Server.Window = 0 }, false)
}
