package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/proxy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rig is a Controller over a proxy.Server that is built but not started
// (changes apply to its configuration and balancer; no socket is opened),
// reading its configuration from a file.
type rig struct {
	t     *testing.T
	dir   string
	file  string
	ctl   *Controller
	srv   *proxy.Server
	audit string
}

const baseYAML = `listen: 127.0.0.1:0
admin: ""
syslog-udp: ""
analyzers:
  - {name: a1, addr: "127.0.0.1:1", weight: 0.5}
  - {name: a2, addr: "127.0.0.1:2", weight: 0.5}
`

func newRig(t *testing.T, dataDir string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, file: filepath.Join(dir, "logdist.yaml"), audit: filepath.Join(dir, "audit.jsonl")}
	r.writeFile(baseYAML + "audit-log: " + r.audit + "\n")
	r.open(dataDir)
	return r
}

func (r *rig) writeFile(body string) {
	r.t.Helper()
	if err := os.WriteFile(r.file, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// open starts (or restarts) the controller and the server.
func (r *rig) open(dataDir string) Version {
	t := r.t
	t.Helper()
	args := []string{"--config", r.file}
	spec, _, err := config.Load(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ctl, err = Open(Options{DataDir: dataDir, AuditLog: r.audit, Args: args, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.ctl.Close)
	v, err := r.ctl.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	base := proxy.DefaultConfig()
	base.Logger, base.Balancer.Logger = quiet, quiet
	cfg, err := v.Spec.Proxy(base)
	if err != nil {
		t.Fatal(err)
	}
	if r.srv, err = proxy.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.ReconfigureAs(cfg, v.Version, "start"); err != nil {
		t.Fatal(err)
	}
	r.ctl.Attach(r.srv, base, nil)
	return v
}

// weights returns the running server's analyzers as name → weight.
func (r *rig) weights() map[string]float64 {
	m := map[string]float64{}
	for _, a := range r.srv.Config().Analyzers {
		m[a.Name] = a.Weight
	}
	return m
}

func (r *rig) auditEntries() []Entry {
	r.t.Helper()
	f, err := os.Open(r.audit)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			r.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

var alice = Actor{Remote: "127.0.0.1:5000", Identity: "alice"}

func ptr[T any](v T) *T { return &v }

// Changes through the controller reach the server as numbered versions;
// refusals change nothing; the audit log has every one, with who.
func TestChangesAreVersionedAndAudited(t *testing.T) {
	r := newRig(t, "")
	res, err := r.ctl.AddAnalyzer(alice, config.Analyzer{Name: "a3", Addr: "127.0.0.1:3", Weight: 2})
	if err != nil || !res.Changed || res.Version.Version != 2 || r.srv.ConfigVersion() != 2 || r.weights()["a3"] != 2 {
		t.Fatalf("add: %+v %v; server version %d weights %v", res, err, r.srv.ConfigVersion(), r.weights())
	}
	if _, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(0.1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.PatchAnalyzer(alice, "a2", Patch{State: ptr("drained")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		do   func() (Result, error)
	}{
		{"duplicate name", ErrConflict, func() (Result, error) {
			return r.ctl.AddAnalyzer(alice, config.Analyzer{Name: "a3", Addr: "127.0.0.1:9", Weight: 1})
		}},
		{"duplicate address", ErrInvalid, func() (Result, error) {
			return r.ctl.AddAnalyzer(alice, config.Analyzer{Name: "a9", Addr: "127.0.0.1:3", Weight: 1})
		}},
		{"bad name", ErrInvalid, func() (Result, error) {
			return r.ctl.AddAnalyzer(alice, config.Analyzer{Name: `a"b`, Addr: "127.0.0.1:9", Weight: 1})
		}},
		{"unknown analyzer", ErrNotFound, func() (Result, error) { return r.ctl.PatchAnalyzer(alice, "zz", Patch{Weight: ptr(1.0)}) }},
		{"negative weight", ErrInvalid, func() (Result, error) { return r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(-1.0)}) }},
		{"bad state", ErrInvalid, func() (Result, error) { return r.ctl.PatchAnalyzer(alice, "a1", Patch{State: ptr("sleeping")}) }},
		{"empty patch", ErrInvalid, func() (Result, error) { return r.ctl.PatchAnalyzer(alice, "a1", Patch{}) }},
		{"unknown version", ErrNotFound, func() (Result, error) { return r.ctl.Rollback(alice, 99) }},
	} {
		res, err := tc.do()
		if !errors.Is(err, tc.err) || res.Changed || r.srv.ConfigVersion() != 4 {
			t.Errorf("%s: %v (changed %v, server at version %d); want %v and nothing applied", tc.name, err, res.Changed, r.srv.ConfigVersion(), tc.err)
		}
		if strings.HasPrefix(err.Error(), tc.err.Error()+":") {
			t.Errorf("%s: the reason repeats its kind: %q", tc.name, err)
		}
	}
	if res, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(0.1)}); err != nil || res.Changed {
		t.Fatalf("the same weight again: %+v %v, want nothing changed", res, err)
	}
	res, err = r.ctl.Rollback(alice, 1)
	if err != nil || res.Version.Version != 5 {
		t.Fatalf("rollback: %+v %v", res, err)
	}
	if w := r.weights(); len(w) != 2 || w["a1"] != 0.5 || w["a2"] != 0.5 || r.srv.Config().Analyzers[1].Admin != 0 {
		t.Fatalf("after rollback to 1: %v", r.srv.Config().Analyzers)
	}
	if want := []string{"analyzer a1: weight 0.1 → 0.5", "analyzer a2: state drained → enabled", "analyzer a3: removed (addr 127.0.0.1:3, weight 2)"}; strings.Join(res.Version.Changes, "|") != strings.Join(want, "|") {
		t.Fatalf("rollback changes %q, want %q", res.Version.Changes, want)
	}
	entries := r.auditEntries()
	var ok, refused int
	for _, e := range entries {
		switch e.Result {
		case "ok":
			ok++
		case "refused":
			refused++
			if e.Error == "" || e.Identity != "alice" {
				t.Errorf("refusal without a reason or an identity: %+v", e)
			}
		}
	}
	if ok != 5 || refused != 8 { // start, add, 2 patches, rollback; 8 refusals
		t.Fatalf("audit: %d ok, %d refused entries; want 5 and 8:\n%+v", ok, refused, entries)
	}
	last := entries[len(entries)-1]
	if last.Action != "rollback to 1" || last.Version != 5 || last.Previous != 4 || len(last.Changes) != 3 {
		t.Fatalf("last audit entry %+v", last)
	}
}

// A reload with the same file keeps run-time changes; an edited file wins
// as a new version; a broken file, or one that changes a setting only a
// restart changes, leaves everything as it is.
func TestReload(t *testing.T) {
	r := newRig(t, "")
	if _, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(0.9)}); err != nil {
		t.Fatal(err)
	}
	signal := Actor{Remote: "signal"}
	res, err := r.ctl.Reload(signal)
	if err != nil || res.Changed || r.weights()["a1"] != 0.9 {
		t.Fatalf("reload of the same file: %+v %v, weights %v; want the run-time change kept", res, err, r.weights())
	}
	r.writeFile(strings.Replace(baseYAML, "weight: 0.5}", "weight: 0.7}", 1) + "audit-log: " + r.audit + "\n")
	res, err = r.ctl.Reload(signal)
	if err != nil || !res.Changed || res.Version.Version != 3 || r.weights()["a1"] != 0.7 {
		t.Fatalf("reload of an edited file: %+v %v, weights %v", res, err, r.weights())
	}
	r.writeFile(baseYAML + "bogus: 1\n")
	if res, err := r.ctl.Reload(signal); !errors.Is(err, ErrInvalid) || res.Changed || !strings.Contains(err.Error(), "line 7: field bogus") {
		t.Fatalf("broken file: %+v %v", res, err)
	}
	r.writeFile(strings.Replace(baseYAML, "listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1))
	if res, err := r.ctl.Reload(signal); !errors.Is(err, ErrConflict) || res.Changed || !strings.Contains(err.Error(), "only a restart changes listen") {
		t.Fatalf("restart-only change: %+v %v", res, err)
	}
	if r.srv.ConfigVersion() != 3 || r.weights()["a1"] != 0.7 {
		t.Fatalf("after refused reloads: version %d weights %v", r.srv.ConfigVersion(), r.weights())
	}
}

// With a data dir, a restart with the same file brings back the run-time
// configuration (a removed analyzer stays removed, a ramp carries on); a
// restart with an edited file applies it as a new version.
func TestRestartKeepsRunTimeChanges(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	if _, err := r.ctl.RemoveAnalyzer(alice, "a2"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(2.0), Ramp: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ramp := r.srv.Config().Analyzers[0].Ramp
	if ramp.Start.IsZero() || ramp.From != 0.5 {
		t.Fatalf("ramp %+v", ramp)
	}
	if _, err := Open(Options{DataDir: data, Log: quiet}); err == nil || !strings.Contains(err.Error(), "in use by another logdist") {
		t.Fatalf("a second controller on the same data dir: %v", err)
	}
	r.ctl.Close()

	v := r.open(data)
	if v.Version != 3 || len(r.srv.Config().Analyzers) != 1 {
		t.Fatalf("restart with the same file: version %d, analyzers %+v; want version 3 with a2 still removed", v.Version, r.srv.Config().Analyzers)
	}
	if got := r.srv.Config().Analyzers[0].Ramp; !got.Start.Equal(ramp.Start) || got.From != ramp.From || got.Over != ramp.Over {
		t.Fatalf("ramp after restart %+v, want %+v", got, ramp)
	}
	r.ctl.Close()

	r.writeFile(strings.Replace(baseYAML, "127.0.0.1:2", "127.0.0.1:22", 1))
	v = r.open(data)
	if v.Version != 4 || len(r.srv.Config().Analyzers) != 2 || !strings.Contains(strings.Join(v.Changes, "|"), "analyzer a2: added (addr 127.0.0.1:22") {
		t.Fatalf("restart with an edited file: version %d changes %q analyzers %d", v.Version, v.Changes, len(r.srv.Config().Analyzers))
	}
	if vs := r.ctl.Versions(); len(vs) != 4 || vs[0].Version != 1 {
		t.Fatalf("history after restarts: %d versions from %d", len(vs), vs[0].Version)
	}
}

// A change that cannot be saved is not made: the server goes back to the
// version before.
func TestUnsavedChangeIsReverted(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.ctl.store.f.Close() // every append fails from now on
	_, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(3.0)})
	if err == nil || !strings.Contains(err.Error(), "cannot save version 2") {
		t.Fatalf("change with a broken data dir: %v", err)
	}
	if r.srv.ConfigVersion() != 1 || r.weights()["a1"] != 0.5 || r.ctl.Current().Version != 1 {
		t.Fatalf("after the failed save: server version %d weights %v controller at %d", r.srv.ConfigVersion(), r.weights(), r.ctl.Current().Version)
	}
}

// A ramp that has ended is the weight: the next change lists only itself.
func TestEndedRampIsNotAChange(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	r.ctl.Close()
	// The saved version gets a ramp that ended an hour ago.
	path := filepath.Join(data, versionsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v Version
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	v.Spec.Analyzers[0].Ramp = &config.Ramp{From: 0.1, Start: time.Now().Add(-time.Hour), Over: config.Duration(time.Minute)}
	line, _ := json.Marshal(v)
	if err := os.WriteFile(path, append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r.open(data)
	res, err := r.ctl.PatchAnalyzer(alice, "a2", Patch{Weight: ptr(3.0)})
	if err != nil || strings.Join(res.Version.Changes, "|") != "analyzer a2: weight 0.5 → 3" || res.Version.Spec.Analyzers[0].Ramp != nil {
		t.Fatalf("%q %v: want only a2's change, and a1's ended ramp gone", res.Version.Changes, err)
	}
}

// A rollback restores analyzers and proxy settings, not the admin API's
// access settings, the audit log or the log level: those come from the
// file, and a token holder cannot reopen the admin port by rolling back.
func TestRollbackKeepsAccessSettings(t *testing.T) {
	r := newRig(t, "")
	r.writeFile(baseYAML + "audit-log: " + r.audit + "\nadmin-allow: [10.1.2.3]\nlog-level: warn\n")
	if _, err := r.ctl.Reload(Actor{Remote: "signal"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.PatchAnalyzer(alice, "a1", Patch{Weight: ptr(4.0)}); err != nil {
		t.Fatal(err)
	}
	res, err := r.ctl.Rollback(alice, 1)
	if err != nil || !res.Changed || r.weights()["a1"] != 0.5 {
		t.Fatalf("rollback: %+v %v, weights %v", res.Changed, err, r.weights())
	}
	if s := res.Version.Spec; len(s.AdminAllow) != 1 || s.LogLevel != "warn" || s.AuditLog != r.audit {
		t.Fatalf("after rolling back to version 1: admin-allow %v, log-level %q, audit-log %q", s.AdminAllow, s.LogLevel, s.AuditLog)
	}
}
