package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

const ctlToken = "e2e-0123456789abcdef"

// ctlCluster is a cluster whose logdist runs from a config file, with an
// admin token, an audit log and a data dir.
type ctlCluster struct {
	*cluster
	file, audit, data string
}

// newCtlCluster starts analyzerd for every weight (a1, a2...) and logdist
// from a config file listing the first listed of them.
func newCtlCluster(t *testing.T, weights []float64, listed int) *ctlCluster {
	c := &ctlCluster{cluster: &cluster{t: t, dir: t.TempDir(), weights: weights}}
	for i := range weights {
		c.analyzers = append(c.analyzers, &analyzerProc{name: fmt.Sprintf("a%d", i+1), listen: "127.0.0.1:0"})
		c.startAnalyzer(i)
	}
	c.file = filepath.Join(c.dir, "logdist.yaml")
	c.audit = filepath.Join(c.dir, "audit.jsonl")
	c.data = filepath.Join(c.dir, "data")
	tokens := filepath.Join(c.dir, "tokens")
	if err := os.WriteFile(tokens, []byte("e2e "+ctlToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.writeConfig(listed, nil, fmt.Sprintf("admin-token-file: %s\naudit-log: %s\ndata-dir: %s\n", tokens, c.audit, c.data))
	c.logdist = start(t, binary(t, "logdist"), "--config", c.file)
	c.listen, c.admin = c.logdist.fields["listen"], c.logdist.fields["admin"]
	c.waitHealthy()
	return c
}

// writeConfig writes the config file with the first n analyzers at the
// cluster's weights (or at weights, when given), and extra lines.
func (c *ctlCluster) writeConfig(n int, weights []float64, extra string) {
	c.t.Helper()
	if weights == nil {
		weights = c.weights
	}
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nsyslog-udp: \"\"\nloops: 2\n" +
		"heartbeat-interval: 100ms\nheartbeat-timeout: 400ms\nbreaker-backoff: 100ms\nbreaker-max-backoff: 300ms\nslow-start: 0s\nlog-level: warn\n")
	b.WriteString(extra)
	b.WriteString("analyzers:\n")
	for i := 0; i < n; i++ {
		a := c.analyzers[i]
		fmt.Fprintf(&b, "  - {name: %s, addr: %q, weight: %g}\n", a.name, a.listen, weights[i])
	}
	if err := os.WriteFile(c.file, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// api sends a request to the admin API with tok ("" for none) and decodes
// the JSON answer into v (if not nil); it returns the status.
func (c *ctlCluster) api(method, path, body, tok string, v any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://"+c.admin+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// write sends an authorized change and fails the test unless it applies.
func (c *ctlCluster) write(method, path, body string) uint64 {
	c.t.Helper()
	var ans struct {
		Version uint64 `json:"version"`
		Changed bool   `json:"changed"`
		Error   string `json:"error"`
	}
	if code := c.api(method, path, body, ctlToken, &ans); code >= 300 || !ans.Changed {
		c.t.Fatalf("%s %s %s: %d %+v", method, path, body, code, ans)
	}
	return ans.Version
}

// packets returns how many packets each analyzer was sent, by name.
func (c *ctlCluster) packets() map[string]uint64 {
	m := map[string]uint64{}
	for _, r := range c.rows() {
		m[r.Name] = r.Packets
	}
	return m
}

// load sends packets from one agent, about 10,000 a second (every packet
// ends up as a line in an analyzer's file), until stop is called, which
// waits for every one to be resolved.
func (c *ctlCluster) load() (*agent, func()) {
	a := newAgent(c.t, c.listen, "ctl-load")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			m := frame.Message{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, Facility: 1,
				Hostname: []byte("e2e-host"), App: []byte("e2e"), Body: []byte(fmt.Sprintf("load %d", i))}
			if err := a.Send(ctx, m); err != nil && ctx.Err() == nil {
				c.t.Errorf("send: %v", err)
				return
			}
			if i%10 == 9 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return a, func() {
		cancel()
		wg.Wait()
		a.flush(c.t)
	}
}

// shareOver waits until at least n more packets were dispatched and
// returns each analyzer's share of them.
func (c *ctlCluster) shareOver(n uint64) map[string]float64 {
	c.t.Helper()
	before := c.packets()
	var after map[string]uint64
	var total uint64
	waitFor(c.t, fmt.Sprintf("%d more packets", n), 30*time.Second, func() bool {
		after, total = c.packets(), 0
		for k, v := range after {
			total += v - before[k]
		}
		return total >= n
	})
	share := map[string]float64{}
	for k, v := range after {
		share[k] = float64(v-before[k]) / float64(total)
	}
	return share
}

// Under load: an analyzer added through the API gets its share; a ramp
// moves the share along it; a drained analyzer gets nothing more and is
// removed with no acknowledged packet lost; a rollback restores the set.
func TestControlUnderLoad(t *testing.T) {
	c := newCtlCluster(t, []float64{1, 1, 2}, 2)
	a, stop := c.load()
	c.shareOver(500)

	// Add a3 (weight 2 of 4): half the packets.
	c.write("POST", "/api/v1/analyzers", fmt.Sprintf(`{"name":"a3","addr":%q,"weight":2}`, c.analyzers[2].listen))
	waitFor(t, "a3 selectable", 10*time.Second, func() bool { return c.row("a3").Selectable })
	if s := c.shareOver(2000); s["a3"] < 0.47 || s["a3"] > 0.53 {
		t.Fatalf("after adding a3 at weight 2 of 4: shares %v, want a3 at 0.50", s)
	}

	// Ramp a3 from 2 to 0 over 3 s: its share falls with the weight in
	// force, window by window.
	c.write("PATCH", "/api/v1/analyzers/a3", `{"weight":0,"ramp":"3s"}`)
	var seen []float64
	for {
		r0 := c.row("a3")
		s := c.shareOver(300)
		r1 := c.row("a3")
		// The share the weights in force called for over the window.
		want := (r0.EffectiveWeight/(r0.EffectiveWeight+2) + r1.EffectiveWeight/(r1.EffectiveWeight+2)) / 2
		if d := s["a3"] - want; d > 0.12 || d < -0.12 {
			t.Fatalf("during the ramp: a3's share %.3f, the weights in force called for %.3f (%.2f → %.2f)", s["a3"], want, r0.EffectiveWeight, r1.EffectiveWeight)
		}
		seen = append(seen, s["a3"])
		if r1.Ramp == nil {
			break
		}
	}
	t.Logf("a3 share in %d windows over the ramp: %.2f", len(seen), seen)
	if len(seen) < 3 || seen[0] < seen[len(seen)-1]+0.2 {
		t.Fatalf("a3's shares over the ramp %v: want at least 3 windows, falling", seen)
	}
	if s := c.shareOver(500); s["a3"] != 0 {
		t.Fatalf("after the ramp to 0: a3 still gets %.3f", s["a3"])
	}

	// Drain a2, then remove it: no packet for it after the drain, none
	// lost.
	c.write("PATCH", "/api/v1/analyzers/a2", `{"state":"drained"}`)
	waitFor(t, "a2 drained of its packets in flight", 10*time.Second, func() bool { return c.row("a2").InFlight == 0 })
	if s := c.shareOver(500); s["a2"] != 0 {
		t.Fatalf("a drained analyzer got %.3f of the packets", s["a2"])
	}
	v := c.write("DELETE", "/api/v1/analyzers/a2", "")
	c.shareOver(500)
	stop()
	c.checkNoLoss(a)
	t.Logf("%d packets acknowledged under load", len(a.ackedIDs()))
	if len(a.ackedIDs()) < 4000 {
		t.Fatalf("only %d packets acknowledged under load", len(a.ackedIDs()))
	}

	// Roll back to the start: a1 and a2 at 1 and 1, no a3.
	if got := c.write("POST", "/api/v1/config/rollback", `{"version":1}`); got != v+1 {
		t.Fatalf("rollback made version %d, want %d", got, v+1)
	}
	waitFor(t, "a1 and a2 back, healthy", 10*time.Second, func() bool {
		rows := c.rows()
		return len(rows) == 2 && rows[0].Name == "a1" && rows[1].Name == "a2" && rows[1].Weight == 1 && rows[1].Selectable
	})
}

// SIGHUP applies an edited config file as a new version and refuses a
// broken one, keeping the running configuration; a write without the
// token is refused with 401 and audited; a restart keeps run-time changes.
func TestReloadAndAudit(t *testing.T) {
	c := newCtlCluster(t, []float64{1, 1}, 2)
	var cfg struct {
		Version uint64 `json:"version"`
	}
	c.api("GET", "/api/v1/config", "", "", &cfg)
	if cfg.Version != 1 {
		t.Fatalf("version at start: %d", cfg.Version)
	}

	extra := fmt.Sprintf("admin-token-file: %s\naudit-log: %s\ndata-dir: %s\n", filepath.Join(c.dir, "tokens"), c.audit, c.data)
	c.writeConfig(2, []float64{3, 1}, extra)
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "the edited file applied", 10*time.Second, func() bool { return c.row("a1").Weight == 3 })
	c.api("GET", "/api/v1/config", "", "", &cfg)
	if cfg.Version != 2 {
		t.Fatalf("version after the reload: %d, want 2", cfg.Version)
	}

	if err := os.WriteFile(c.file, []byte("listen: [not, an, address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.logdist.signal(syscall.SIGHUP)
	waitFor(t, "the broken file refused in the log", 10*time.Second, func() bool {
		return strings.Contains(c.logdist.logs(), "reload refused; the running configuration stays")
	})
	if !strings.Contains(httpGet(t, "http://"+c.admin+"/metrics"), "logdist_config_reload_failures_total 1") {
		t.Fatal("the refused reload is not counted")
	}
	if r := c.row("a1"); r.Weight != 3 || !r.Selectable {
		t.Fatalf("after a broken reload a1 is %+v", r)
	}

	var e struct {
		Error string `json:"error"`
	}
	if code := c.api("PATCH", "/api/v1/analyzers/a1", `{"weight":0}`, "", &e); code != 401 || !strings.Contains(e.Error, "token") {
		t.Fatalf("write without a token: %d %q", code, e.Error)
	}
	if code := c.api("PATCH", "/api/v1/analyzers/a1", `{"weight":0}`, "not-the-token-0123456789", &e); code != 401 {
		t.Fatalf("write with a wrong token: %d %q", code, e.Error)
	}
	if c.row("a1").Weight != 3 {
		t.Fatal("a refused write changed the weight")
	}
	b, err := os.ReadFile(c.audit)
	if err != nil {
		t.Fatal(err)
	}
	var refused, reloads int
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var entry struct {
			Action, Result, Remote string
			Status                 int
		}
		if err := json.Unmarshal(line, &entry); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if entry.Result == "refused" && entry.Status == 401 && entry.Action == "PATCH /api/v1/analyzers/{name} a1" && strings.HasPrefix(entry.Remote, "127.0.0.1:") {
			refused++
		}
		if entry.Action == "reload" && entry.Remote == "signal" {
			reloads++
		}
	}
	if refused != 2 || reloads != 2 {
		t.Fatalf("audit log: %d refused writes (want 2), %d reloads (want 2):\n%s", refused, reloads, b)
	}

	// A run-time change survives a restart with the same file.
	c.writeConfig(2, []float64{3, 1}, extra)
	c.write("PATCH", "/api/v1/analyzers/a2", `{"weight":5}`)
	c.logdist.signal(syscall.SIGTERM)
	if code := c.logdist.wait(15 * time.Second); code != 0 {
		t.Fatalf("logdist exited %d", code)
	}
	c.logdist = start(t, binary(t, "logdist"), "--config", c.file)
	c.admin = c.logdist.fields["admin"]
	if r := c.row("a2"); r.Weight != 5 {
		t.Fatalf("after a restart with the same file a2's weight is %v, want the run-time 5", r.Weight)
	}
}
