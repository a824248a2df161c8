package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The zstd pools must not start goroutines (see codec.go).
	goleak.VerifyTestMain(m)
}

// samplePacket is a small packet that uses every field: trace id, several
// messages, attributes on some of them, empty fields on others.
func samplePacket() *Packet {
	return &Packet{
		ID:      0x1879A2B3C4D5E6F7,
		AgentID: []byte("agent-7"),
		TraceID: []byte("4bf92f3577b34da6a3ce929d0e0e4736"),
		Messages: []Message{
			{
				Timestamp: 1_795_000_000_123_456_789,
				Severity:  SevInfo,
				Facility:  16,
				Hostname:  []byte("web-01.eu-west.example.net"),
				App:       []byte("nginx"),
				Body:      []byte(`GET /api/v2/orders/8812 200 512B 3.2ms req_id=01JD3K7V9QX`),
				Attrs: []Attr{
					{Key: []byte("req_id"), Value: []byte("01JD3K7V9QX")},
					{Key: []byte("status"), Value: []byte("200")},
				},
			},
			{
				Timestamp: 1_795_000_000_223_456_789,
				Severity:  SevError,
				Facility:  3,
				Hostname:  []byte("db-02"),
				App:       []byte("postgres"),
				Body:      []byte("connection reset by peer"),
			},
			{
				Timestamp: -1, // before 1970: any int64 is legal
				Severity:  SevDebug,
				Facility:  MaxFacility,
				Body:      []byte("x"),
				Attrs:     []Attr{{Key: []byte("k")}},
			},
		},
	}
}

// onePacket is a packet with one message and one attribute, the smallest
// packet that still uses every kind of field.
func onePacket() *Packet {
	return &Packet{
		ID:      1,
		AgentID: []byte("a1"),
		TraceID: []byte("t1"),
		Messages: []Message{{
			Timestamp: 1_700_000_000_000_000_000,
			Severity:  SevWarning,
			Facility:  1,
			Hostname:  []byte("h"),
			App:       []byte("app"),
			Body:      []byte("hello"),
			Attrs:     []Attr{{Key: []byte("k"), Value: []byte("v")}},
		}},
	}
}

// equalPacket compares two packets field by field; nil and empty byte
// slices are equal (the encoding cannot tell them apart).
func equalPacket(a, b *Packet) error {
	if a.ID != b.ID {
		return fmt.Errorf("id %d != %d", a.ID, b.ID)
	}
	if !bytes.Equal(a.AgentID, b.AgentID) || !bytes.Equal(a.TraceID, b.TraceID) {
		return fmt.Errorf("agent/trace %q/%q != %q/%q", a.AgentID, a.TraceID, b.AgentID, b.TraceID)
	}
	if len(a.Messages) != len(b.Messages) {
		return fmt.Errorf("%d messages != %d", len(a.Messages), len(b.Messages))
	}
	for i := range a.Messages {
		x, y := &a.Messages[i], &b.Messages[i]
		if x.Timestamp != y.Timestamp || x.Severity != y.Severity || x.Facility != y.Facility ||
			!bytes.Equal(x.Hostname, y.Hostname) || !bytes.Equal(x.App, y.App) || !bytes.Equal(x.Body, y.Body) {
			return fmt.Errorf("message %d: %+v != %+v", i, x, y)
		}
		if len(x.Attrs) != len(y.Attrs) {
			return fmt.Errorf("message %d: %d attrs != %d", i, len(x.Attrs), len(y.Attrs))
		}
		for j := range x.Attrs {
			if !bytes.Equal(x.Attrs[j].Key, y.Attrs[j].Key) || !bytes.Equal(x.Attrs[j].Value, y.Attrs[j].Value) {
				return fmt.Errorf("message %d attr %d: %q=%q != %q=%q", i, j,
					x.Attrs[j].Key, x.Attrs[j].Value, y.Attrs[j].Key, y.Attrs[j].Value)
			}
		}
	}
	return nil
}

// realisticPacket builds a packet of n varied, log-like messages of about
// 200 bytes each: timestamps, levels, hostnames, request ids, paths,
// latencies. Deterministic for a given seed.
func realisticPacket(n int, seed uint64) *Packet {
	r := rand.New(rand.NewPCG(seed, 0x9E3779B97F4A7C15))
	hosts := []string{"web-01.eu-west.example.net", "web-02.eu-west.example.net", "api-17.us-east.example.net",
		"worker-3.ap-south.example.net", "db-02.eu-west.example.net", "cache-11.us-east.example.net"}
	apps := []string{"nginx", "api", "billing", "postgres", "redis", "scheduler", "auth"}
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v2/orders", "/api/v2/users", "/healthz", "/api/v1/invoices", "/static/app.js",
		"/api/v2/search", "/login", "/api/v2/carts"}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	levels := []string{"INFO", "WARN", "ERROR", "DEBUG"}
	const alnum = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	id := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alnum[r.IntN(len(alnum))]
		}
		return string(b)
	}
	p := &Packet{
		ID:      1_795_000_000_000_000_000 + seed,
		AgentID: []byte("agent-" + id(6)),
		TraceID: []byte(id(32)),
	}
	ts := int64(1_795_000_000_000_000_000)
	for i := 0; i < n; i++ {
		ts += int64(r.IntN(5_000_000))
		lvl := r.IntN(len(levels))
		req := id(26)
		status := []int{200, 200, 200, 201, 204, 301, 400, 404, 500, 503}[r.IntN(10)]
		body := fmt.Sprintf("%s level=%s req_id=%s method=%s path=%s/%d user=%s status=%d bytes=%d latency=%.3fms upstream=10.%d.%d.%d:%d msg=%q",
			"2026-11-26T21:"+fmt.Sprintf("%02d:%02d.%06d", r.IntN(60), r.IntN(60), r.IntN(1_000_000))+"Z",
			levels[lvl], req, methods[r.IntN(len(methods))], paths[r.IntN(len(paths))], r.IntN(100000),
			users[r.IntN(len(users))], status, r.IntN(65536), r.Float64()*250,
			r.IntN(256), r.IntN(256), r.IntN(256), 1024+r.IntN(60000),
			[]string{"request served", "cache miss", "retrying upstream", "slow query", "token refreshed"}[r.IntN(5)])
		m := Message{
			Timestamp: ts,
			Severity:  []Severity{SevInfo, SevWarning, SevError, SevDebug}[lvl],
			Facility:  16 + uint8(r.IntN(8)),
			Hostname:  []byte(hosts[r.IntN(len(hosts))]),
			App:       []byte(apps[r.IntN(len(apps))]),
			Body:      []byte(body),
		}
		if r.IntN(3) == 0 {
			m.Attrs = []Attr{{Key: []byte("req_id"), Value: []byte(req)}, {Key: []byte("region"), Value: []byte("eu-west-1")}}
		}
		p.Messages = append(p.Messages, m)
	}
	return p
}

// zstdBomb returns one zstd frame that decompresses to n zero bytes. With
// fcs the frame header declares the content size (EncodeAll does);
// without, it is a streaming frame that declares nothing.
func zstdBomb(tb testing.TB, n int, fcs bool) []byte {
	tb.Helper()
	key := fmt.Sprint(n, fcs)
	bombMu.Lock()
	defer bombMu.Unlock()
	if b, ok := bombs[key]; ok {
		return b
	}
	b := makeBomb(tb, n, fcs)
	bombs[key] = b
	return b
}

var (
	bombMu sync.Mutex
	bombs  = map[string][]byte{}
)

func makeBomb(tb testing.TB, n int, fcs bool) []byte {
	zeros := make([]byte, n)
	if fcs {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			tb.Fatal(err)
		}
		defer e.Close()
		return e.EncodeAll(zeros, nil)
	}
	var buf bytes.Buffer
	e, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < n; i += 1 << 20 {
		if _, err := e.Write(zeros[i:min(n, i+1<<20)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// dataFrame builds a DATA frame with an arbitrary (possibly lying) header
// around payload.
func dataFrame(f Flags, seq uint64, count uint32, payload []byte, raw uint32) []byte {
	return AppendHeader(nil, TypeData, f, seq, count, uint32(len(payload)), raw, Checksum(payload))
}

// allocBytes returns the bytes fn allocates on the heap (TotalAlloc delta).
// Tests that use it do not run in parallel, so the delta is fn's own,
// give or take the runtime's small background allocations.
func allocBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func readSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
