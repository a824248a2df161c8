package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/internal/control/controltest"
	"github.com/logdist/logdist/proxy"
)

type deadLetters struct {
	DeadLetters []proxy.DeadLetter `json:"dead_letters"`
	More        bool               `json:"more"`
	Error       string             `json:"error"`
}

// Without --data-dir there are no dead letters: every dead-letter request
// answers 409 with one line naming --data-dir; writes still need a token,
// and the refusals are audited.
func TestDeadLettersWithoutDataDir(t *testing.T) {
	a := newAPI(t) // its server is not started: no spool
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/dead-letters", ""},
		{"POST", "/api/v1/dead-letters/replay", ""},
		{"DELETE", "/api/v1/dead-letters", `{"seqs":[1]}`},
	} {
		code, body := a.do(tc.method, tc.path, tc.body, local, token)
		var e map[string]string
		if code != 409 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], "--data-dir") || strings.Contains(e["error"], "\n") {
			t.Errorf("%s %s without a data dir: %d %s; want 409 and one line naming --data-dir", tc.method, tc.path, code, body)
		}
	}
	if code, _ := a.do("DELETE", "/api/v1/dead-letters", "", local, ""); code != 401 {
		t.Fatalf("DELETE without a token: %d, want 401", code)
	}
	if code, _ := a.do("GET", "/api/v1/dead-letters", "", remote, ""); code != 401 {
		t.Fatalf("remote GET without a token: %d, want 401", code)
	}
	b, _ := os.ReadFile(a.audit)
	for _, want := range []string{
		`"action":"replay dead letters all","result":"refused","status":409`,
		`"action":"delete dead letters 1","result":"refused","status":409`,
		`"action":"DELETE /api/v1/dead-letters","result":"refused","status":401`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit lacks %s:\n%s", want, b)
		}
	}
}

// analyzer is a frame server that rejects every packet while reject is
// set, and records the ids of those it accepts.
type analyzer struct {
	reject atomic.Bool
	mu     sync.Mutex
	ids    []uint64
}

func (an *analyzer) HandlePacket(_ context.Context, _ *server.Meta, p *frame.Packet) error {
	if an.reject.Load() {
		return server.Reject("not today")
	}
	an.mu.Lock()
	an.ids = append(an.ids, p.ID)
	an.mu.Unlock()
	return nil
}

func (an *analyzer) accepted() []uint64 {
	an.mu.Lock()
	defer an.mu.Unlock()
	return slices.Clone(an.ids)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The dead letters through the API, on a running logdist with a data
// dir whose analyzer rejects packets: listed oldest first with their
// reason, analyzer, code and size, in pages; deleted by seq; replayed by
// seq and all at once (the analyzer, accepting now, gets them); each
// write audited; malformed requests refused with 400.
func TestDeadLetters(t *testing.T) {
	an := &analyzer{}
	an.reject.Store(true)
	acfg := server.DefaultConfig()
	acfg.Addr = "127.0.0.1:0"
	acfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	acfg.DrainTimeout = 2 * time.Second
	as, err := server.New(acfg, an)
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })

	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	spec := controltest.Spec()
	spec.DataDir, spec.AuditLog, spec.Loops = t.TempDir(), audit, 1
	spec.Analyzers = []config.Analyzer{{Name: "rejector", Addr: as.Addr().String(), Weight: 1}}
	ctl, srv := controltest.New(t, spec, control.Options{AuditLog: audit})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	a := &api{t: t, srv: srv, ctl: ctl, audit: audit, acc: admin.NewAccess([]config.Token{{Identity: "alice", Secret: token}}, nil)}
	a.h = admin.New(admin.Config{Server: srv, Control: ctl, Access: a.acc})

	list := func(query string) deadLetters {
		t.Helper()
		code, body := a.do("GET", "/api/v1/dead-letters"+query, "", local, "")
		var dl deadLetters
		if err := json.Unmarshal([]byte(body), &dl); err != nil || code != 200 || dl.DeadLetters == nil {
			t.Fatalf("GET /api/v1/dead-letters%s: %d %s (%v)", query, code, body, err)
		}
		return dl
	}
	if dl := list(""); len(dl.DeadLetters) != 0 || dl.More {
		t.Fatalf("dead letters before any packet: %+v", dl)
	}

	agent, err := servertest.Dial(srv.Addr().String(), "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	for id := uint64(1); id <= 3; id++ {
		p := &frame.Packet{ID: id, AgentID: []byte("agent-1")}
		for i := range 2 {
			p.Messages = append(p.Messages, frame.Message{Timestamp: 1_700_000_000_000_000_000, Severity: frame.SevInfo,
				Hostname: []byte("host-a"), App: []byte("app"), Body: []byte(fmt.Sprintf("message %d of packet %d", i, id))})
		}
		if _, err := agent.Send(p, false); err != nil {
			t.Fatal(err)
		}
	}
	var all []proxy.DeadLetter
	waitFor(t, "3 dead letters", func() bool { all = list("").DeadLetters; return len(all) == 3 })
	for i, d := range all {
		if d.Reason != "rejected" || d.Analyzer != "rejector" || d.Code != "rejected" || d.Error != "not today" ||
			d.Messages != 2 || d.Bytes <= frame.HeaderSize || d.Time.IsZero() || (i > 0 && d.Seq <= all[i-1].Seq) {
			t.Fatalf("dead letter %d: %+v", i, d)
		}
	}
	if dl := list("?limit=2"); len(dl.DeadLetters) != 2 || !dl.More {
		t.Fatalf("first page of 2: %+v", dl)
	}
	if dl := list(fmt.Sprintf("?after=%d&limit=2", all[1].Seq)); len(dl.DeadLetters) != 1 || dl.More || dl.DeadLetters[0].Seq != all[2].Seq {
		t.Fatalf("page after %d: %+v", all[1].Seq, dl)
	}

	for _, tc := range []struct {
		method, path, body string
		says               string
	}{
		{"GET", "/api/v1/dead-letters?after=last", "", `"after" "last" is not`},
		{"GET", "/api/v1/dead-letters?limit=0", "", `"limit" "0" is not`},
		{"POST", "/api/v1/dead-letters/replay", `{"seqs":[]}`, `"seqs" is empty`},
		{"POST", "/api/v1/dead-letters/replay", `{"sqs":[1]}`, `unknown field "sqs"`},
		{"POST", "/api/v1/dead-letters/replay?seq=1", "", "seq parameters are for DELETE"},
		{"DELETE", "/api/v1/dead-letters?seq=1", `{"seqs":[1]}`, "not both"},
		{"DELETE", "/api/v1/dead-letters?seq=first", "", `seq "first" is not`},
	} {
		code, body := a.do(tc.method, tc.path, tc.body, local, token)
		var e map[string]string
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], tc.says) {
			t.Errorf("%s %s %s: %d %s, want 400 saying %q", tc.method, tc.path, tc.body, code, body, tc.says)
		}
	}
	if n := len(list("").DeadLetters); n != 3 {
		t.Fatalf("refused requests left %d dead letters, want 3", n)
	}

	if code, body := a.do("DELETE", fmt.Sprintf("/api/v1/dead-letters?seq=%d&seq=999999", all[0].Seq), "", local, token); code != 200 || !strings.Contains(body, `"deleted": 1`) {
		t.Fatalf("delete the first: %d %s", code, body)
	}
	if dl := list(""); len(dl.DeadLetters) != 2 || dl.DeadLetters[0].Seq != all[1].Seq {
		t.Fatalf("after deleting the first: %+v", dl)
	}

	an.reject.Store(false)
	if code, body := a.do("POST", "/api/v1/dead-letters/replay", fmt.Sprintf(`{"seqs":[%d]}`, all[1].Seq), local, token); code != 200 || !strings.Contains(body, `"replayed": 1`) {
		t.Fatalf("replay the second: %d %s", code, body)
	}
	waitFor(t, "packet 2 replayed to the analyzer", func() bool { return slices.Contains(an.accepted(), 2) })
	if dl := list(""); len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Seq != all[2].Seq {
		t.Fatalf("after replaying the second: %+v", dl)
	}
	if code, body := a.do("POST", "/api/v1/dead-letters/replay", "", local, token); code != 200 || !strings.Contains(body, `"replayed": 1`) {
		t.Fatalf("replay all: %d %s", code, body)
	}
	waitFor(t, "packet 3 replayed to the analyzer", func() bool { return slices.Contains(an.accepted(), 3) })
	if got := an.accepted(); slices.Contains(got, 1) {
		t.Fatalf("the analyzer got the deleted packet 1: %v", got)
	}
	if code, body := a.do("GET", "/api/v1/dead-letters", "", local, ""); code != 200 || !strings.Contains(body, `"dead_letters": []`) {
		t.Fatalf("after replaying all: %d %s", code, body)
	}
	if code, body := a.do("DELETE", "/api/v1/dead-letters", "", local, token); code != 200 || !strings.Contains(body, `"deleted": 0`) {
		t.Fatalf("delete all of none: %d %s", code, body)
	}

	b, _ := os.ReadFile(audit)
	for _, want := range []string{
		fmt.Sprintf(`"identity":"alice","action":"delete dead letters %d,999999 (1 deleted)","result":"ok"`, all[0].Seq),
		fmt.Sprintf(`"action":"replay dead letters %d (1 replayed)","result":"ok"`, all[1].Seq),
		`"action":"replay dead letters all (1 replayed)","result":"ok"`,
		`"action":"delete dead letters all (0 deleted)","result":"ok"`,
		`"action":"replay dead letters","result":"refused","status":400,"error":"\"seqs\" is empty`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit lacks %s:\n%s", want, b)
		}
	}
}
