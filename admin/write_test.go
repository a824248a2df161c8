package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/internal/control/controltest"
	"github.com/logdist/logdist/proxy"
	"github.com/logdist/logdist/proxy/status"
)

const token = "0123456789abcdef0123"

type api struct {
	t     *testing.T
	h     http.Handler
	srv   *proxy.Server
	ctl   *control.Controller
	acc   *admin.Access
	audit string
}

// newAPI serves the admin API over a controller and a server that is
// built but not started: changes apply to its configuration, no socket
// opens.
func newAPI(t *testing.T) *api {
	a := &api{t: t, audit: filepath.Join(t.TempDir(), "audit.jsonl")}
	spec := controltest.Spec()
	spec.AuditLog = a.audit
	a.ctl, a.srv = controltest.New(t, spec, control.Options{AuditLog: a.audit})
	a.acc = admin.NewAccess([]config.Token{{Identity: "alice", Secret: token}}, nil)
	a.h = admin.New(admin.Config{Server: a.srv, Control: a.ctl, Access: a.acc})
	return a
}

// do sends a request from remote (host:port) with tok ("" for none) and
// returns the status and body.
func (a *api) do(method, path, body, remote, tok string) (int, string) {
	a.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr, req.Host = remote, "127.0.0.1:7480"
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

const (
	local  = "127.0.0.1:40000"
	remote = "192.0.2.7:40000"
)

// Who may do what: health and metrics are open; reads are open from this
// host and need a token from elsewhere; writes always need a token; an
// address outside --admin-allow gets nothing. Refused writes are audited.
func TestAccess(t *testing.T) {
	a := newAPI(t)
	for _, tc := range []struct {
		method, path, body, from, tok string
		want                          int
	}{
		{"GET", "/healthz", "", remote, "", 200},
		{"GET", "/metrics", "", remote, "", 200},
		{"GET", "/api/v1/status", "", local, "", 200},
		{"GET", "/", "", local, "", 200},
		{"GET", "/api/v1/status", "", remote, "", 401},
		{"GET", "/api/v1/status", "", remote, token, 200},
		{"GET", "/api/v1/status", "", local, "wrong-token-0123456789", 401},
		{"POST", "/api/v1/queue/flush", "", local, "", 401},
		{"POST", "/api/v1/queue/flush", "", local, "wrong-token-0123456789", 401},
		{"POST", "/api/v1/queue/flush", "", remote, token, 200},
		{"DELETE", "/api/v1/analyzers/a1", "", local, "", 401},
	} {
		if code, body := a.do(tc.method, tc.path, tc.body, tc.from, tc.tok); code != tc.want {
			t.Errorf("%s %s from %s with token %q: %d %s, want %d", tc.method, tc.path, tc.from, tc.tok, code, body, tc.want)
		}
	}
	if len(a.srv.Config().Analyzers) != 2 {
		t.Fatal("an unauthenticated DELETE removed an analyzer")
	}
	_, body := a.do("DELETE", "/api/v1/analyzers/a1", "", local, "")
	var e map[string]string
	if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e["error"], "token is needed") || strings.Contains(body, "\n  ") {
		t.Fatalf("401 body %q: want one line of JSON with the reason", body)
	}
	b, _ := os.ReadFile(a.audit)
	if n := strings.Count(string(b), `"result":"refused","status":401`); n != 4 {
		t.Fatalf("audit has %d refused writes, want 4:\n%s", n, b)
	}

	// Without a token file writes are disabled, and remote reads too.
	a.acc.Set(nil, nil)
	if code, body := a.do("POST", "/api/v1/queue/flush", "", local, token); code != 403 || !strings.Contains(body, "--admin-token-file") {
		t.Fatalf("write without a token file: %d %s", code, body)
	}
	if code, _ := a.do("GET", "/api/v1/status", "", remote, ""); code != 403 {
		t.Fatalf("remote read without a token file: %d", code)
	}
	// An allow list shuts out everyone else, from everything.
	a.acc.Set([]config.Token{{Identity: "alice", Secret: token}}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if code, body := a.do("GET", "/healthz", "", local, token); code != 403 || !strings.Contains(body, "not in --admin-allow") {
		t.Fatalf("address outside the allow list: %d %s", code, body)
	}
	if code, _ := a.do("GET", "/healthz", "", "10.1.2.3:5", ""); code != 200 {
		t.Fatalf("address inside the allow list: %d", code)
	}
}

// The write API: each change answers its version; bad requests get a 4xx
// with one line and change nothing; rollback restores a set.
func TestWriteAPI(t *testing.T) {
	a := newAPI(t)
	type answer struct {
		Version  uint64           `json:"version"`
		Changed  bool             `json:"changed"`
		Changes  []string         `json:"changes"`
		Analyzer *config.Analyzer `json:"analyzer"`
		Error    string           `json:"error"`
	}
	call := func(method, path, body string, want int) answer {
		t.Helper()
		code, b := a.do(method, path, body, local, token)
		var ans answer
		if err := json.Unmarshal([]byte(b), &ans); err != nil || code != want {
			t.Fatalf("%s %s %s: %d %s (%v), want %d", method, path, body, code, b, err, want)
		}
		return ans
	}
	ans := call("POST", "/api/v1/analyzers", `{"name":"a3","addr":"127.0.0.1:3","weight":0.5}`, 201)
	if ans.Version != 2 || !ans.Changed || ans.Analyzer == nil || ans.Analyzer.Weight != 0.5 {
		t.Fatalf("add: %+v", ans)
	}
	ans = call("PATCH", "/api/v1/analyzers/a3", `{"weight":2,"ramp":"10m"}`, 200)
	if ans.Version != 3 || ans.Analyzer.Ramp == nil || ans.Analyzer.Ramp.From != 0.5 {
		t.Fatalf("ramp: %+v", ans)
	}
	var rows []status.Analyzer
	_, b := a.do("GET", "/api/v1/analyzers", "", local, "")
	if err := json.Unmarshal([]byte(b), &rows); err != nil || len(rows) != 3 || rows[2].Ramp == nil {
		t.Fatalf("analyzers after the ramp: %s", b)
	}
	call("PATCH", "/api/v1/analyzers/a1", `{"state":"drained"}`, 200)
	for _, tc := range []struct {
		method, path, body string
		want               int
		says               string
	}{
		{"POST", "/api/v1/analyzers", `{"name":"a4","addr":"127.0.0.1:4","wieght":1}`, 400, `unknown field "wieght"`},
		{"POST", "/api/v1/analyzers", `{"name":"a4"}`, 400, `"addr" are required`},
		{"POST", "/api/v1/analyzers", `{"name":"a4","addr":"127.0.0.1:4"} {}`, 400, "data after the JSON"},
		{"POST", "/api/v1/analyzers", `{"name":"a1","addr":"127.0.0.1:9"}`, 409, "exists"},
		{"POST", "/api/v1/analyzers", `{"name":"a4","addr":"127.0.0.1:1"}`, 400, "same address"},
		{"PATCH", "/api/v1/analyzers/a9", `{"weight":1}`, 404, `no analyzer "a9"`},
		{"PATCH", "/api/v1/analyzers/a1", `{"weight":-1}`, 400, "non-negative"},
		{"PATCH", "/api/v1/analyzers/a1", `{"weight":1,"ramp":"soon"}`, 400, "positive duration"},
		{"PATCH", "/api/v1/analyzers/a1", `{"state":"asleep"}`, 400, "unknown analyzer state"},
		{"POST", "/api/v1/config/rollback", `{"version":77}`, 404, "not in the history"},
		{"POST", "/api/v1/config/rollback", `{}`, 400, `"version" is required`},
	} {
		ans := call(tc.method, tc.path, tc.body, tc.want)
		if !strings.Contains(ans.Error, tc.says) || strings.Contains(ans.Error, "\n") {
			t.Errorf("%s %s %s: error %q, want one line saying %q", tc.method, tc.path, tc.body, ans.Error, tc.says)
		}
	}
	if v := a.srv.ConfigVersion(); v != 4 {
		t.Fatalf("refused requests changed the version to %d", v)
	}
	ans = call("DELETE", "/api/v1/analyzers/a2", "", 200)
	if ans.Version != 5 || len(a.srv.Config().Analyzers) != 2 {
		t.Fatalf("delete: %+v", ans)
	}
	ans = call("POST", "/api/v1/config/rollback", `{"version":1}`, 200)
	if ans.Version != 6 || len(a.srv.Config().Analyzers) != 2 || a.srv.Config().Analyzers[1].Name != "a2" {
		t.Fatalf("rollback: %+v, analyzers %+v", ans, a.srv.Config().Analyzers)
	}
	var versions []struct {
		Version uint64 `json:"version"`
		Action  string `json:"action"`
		Actor   control.Actor
		Running bool `json:"running"`
	}
	_, b = a.do("GET", "/api/v1/config/versions", "", local, "")
	if err := json.Unmarshal([]byte(b), &versions); err != nil || len(versions) != 6 || !versions[5].Running || versions[5].Action != "rollback to 1" || versions[5].Actor.Identity != "alice" {
		t.Fatalf("versions: %s", b)
	}
	if code, b := a.do("GET", "/api/v1/config/versions/3", "", local, ""); code != 200 || !strings.Contains(b, `"a3"`) {
		t.Fatalf("version 3: %d %s", code, b)
	}
	if code, b := a.do("GET", "/api/v1/config", "", local, ""); code != 200 || !strings.Contains(b, `"version": 6`) {
		t.Fatalf("config: %d %s", code, b)
	}
}

// Token-less reads need the request addressed to this host (an address or
// localhost): a web page on this host reaching it through a name it
// controls (DNS rebinding) gets 401. Refused writes are audited under
// their route, whatever the path's length, and not at all from outside
// the allow list; bodies with anything after the JSON are refused.
func TestAccessHardening(t *testing.T) {
	a := newAPI(t)
	read := func(host string) int {
		req := httptest.NewRequest("GET", "/api/v1/config", nil)
		req.RemoteAddr, req.Host = local, host
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		return rec.Code
	}
	for host, want := range map[string]int{"127.0.0.1:7480": 200, "localhost:7480": 200, "[::1]:7480": 200, "attacker.example:7480": 401, "attacker.example": 401} {
		if got := read(host); got != want {
			t.Errorf("GET with Host %s from loopback: %d, want %d", host, got, want)
		}
	}
	long := "/api/v1/analyzers/" + strings.Repeat("%3C", 3000)
	a.do("PATCH", long, "{}", local, "")
	a.acc.Set([]config.Token{{Identity: "alice", Secret: token}}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for range 5 {
		a.do("PATCH", "/api/v1/analyzers/a1", "{}", remote, "")
	}
	a.acc.Set([]config.Token{{Identity: "alice", Secret: token}}, nil)
	if code, body := a.do("POST", "/api/v1/config/rollback", `{"version":1}}}]]`, local, token); code != 400 || !strings.Contains(body, "data after the JSON") {
		t.Fatalf("trailing brackets: %d %s", code, body)
	}
	b, _ := os.ReadFile(a.audit)
	if len(b) > 4096 || !strings.Contains(string(b), `"action":"PATCH /api/v1/analyzers/{name}"`) || strings.Contains(string(b), "192.0.2.7") {
		t.Fatalf("audit log (%d bytes):\n%s", len(b), b)
	}
}
