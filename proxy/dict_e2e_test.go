package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/proxy"
)

// startDictAnalyzer is startAnalyzer holding dicts.
func startDictAnalyzer(t *testing.T, name string, dicts frame.Dicts) *analyzer {
	t.Helper()
	a := &analyzer{name: name, seen: map[string]int{}}
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ServerID = name
	cfg.DrainTimeout = time.Second
	cfg.Logger = testLogger(t)
	cfg.Dicts = dicts
	srv, err := server.New(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	a.srv = srv
	return a
}

func rejectedUnknownDict(a *analyzer) string {
	var out bytes.Buffer
	a.srv.Metrics().WritePrometheus(&out)
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, `frame_server_packets_rejected_total{code="unknown_dictionary"}`) {
			return l
		}
	}
	return "(none)"
}

// agent → logdist → analyzers over real sockets: an agent holding the
// dictionary compresses with it (logdist listed it), logdist forwards
// those packets without decompressing only to the analyzer that holds it,
// never to the one that does not; an agent without dictionaries is served
// by both as before.
func TestDictEndToEnd(t *testing.T) {
	d, err := frame.LoadDict("../frame/testdata/golden/testdict.zdict")
	if err != nil {
		t.Fatal(err)
	}
	with := startDictAnalyzer(t, "a1", frame.Dicts{d})
	without := startDictAnalyzer(t, "a2", nil)
	as := []*analyzer{with, without}
	s := startProxy(t, as, []float64{1, 1}, func(c *proxy.Config) { c.Dicts = frame.Dicts{d} })
	t.Cleanup(func() { stopAll(t, s, as) })
	waitFor(t, "both analyzers up", 5*time.Second, allHealthy(s, 2))

	newAgent := func(id string, dicts frame.Dicts) *client.Client {
		cfg := client.DefaultConfig()
		cfg.Addrs = []string{s.Addr().String()}
		cfg.AgentID = id
		cfg.Linger = 0 // a packet per message
		cfg.Dicts = dicts
		cfg.CloseTimeout = 0
		c, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		waitFor(t, id+" connected", 5*time.Second, func() bool { return c.Stats().Addr != "" })
		return c
	}
	sendLines := func(c *client.Client, n int) {
		for i := 0; i < n; i++ {
			m := frame.Message{Severity: frame.SevInfo, Facility: 16, Hostname: []byte("web-01.eu-west.example.net"), App: []byte("api"),
				Body: fmt.Appendf(nil, "2026-11-26T21:%02d:07.123456Z level=INFO req_id=01JD3K7V9QX%04d method=GET path=/api/v2/orders/%d user=alice status=200 latency=3.2ms msg=%q", i%60, i, i, "request served")}
			if err := c.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	dictAgent := newAgent("agent-dict", frame.Dicts{d})
	sendLines(dictAgent, 300)
	if st := dictAgent.Stats(); st.MessagesAcked != 300 || st.PacketsRejected != 0 {
		t.Fatalf("agent with the dictionary: %+v", st)
	}
	if got := with.unique(); got != 300 {
		t.Fatalf("the analyzer holding the dictionary got %d of the 300 packets", got)
	}
	if got := without.unique(); got != 0 {
		t.Fatalf("the analyzer without the dictionary got %d packets compressed with it", got)
	}

	plainAgent := newAgent("agent-plain", nil)
	sendLines(plainAgent, 200)
	if got := without.unique(); got == 0 || with.unique()+got != 500 {
		t.Fatalf("without a dictionary: a1 %d, a2 %d of 500", with.unique(), got)
	}
	for _, a := range as {
		if l := rejectedUnknownDict(a); !strings.HasSuffix(l, " 0") {
			t.Fatalf("%s: %s", a.name, l)
		}
	}
}
