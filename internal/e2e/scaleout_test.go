package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
)

// Scale-out: several logdist instances over the same analyzers keep no
// shared state, so agents that know them all fail over between them and
// nothing acknowledged is lost when one dies or restarts; each instance's
// picks are exact, so the total over them is too.

// startLogdist starts one more logdist with c's flags, agents on listen
// ("127.0.0.1:0" for a new port), and waits until it sees every analyzer
// healthy.
func (c *cluster) startLogdist(listen string) *proc {
	c.t.Helper()
	args := append([]string(nil), c.ldArgs...)
	for i := range args {
		if args[i] == "--listen" {
			args[i+1] = listen
			break
		}
	}
	p := start(c.t, binary(c.t, "logdist"), args...)
	waitFor(c.t, "the new logdist sees every analyzer healthy", 10*time.Second, func() bool {
		var rows []analyzerRow
		if getJSONQuiet("http://"+p.fields["admin"]+"/api/v1/analyzers", &rows) != nil || len(rows) != len(c.analyzers) {
			return false
		}
		for _, r := range rows {
			if !r.Healthy {
				return false
			}
		}
		return true
	})
	return p
}

// fleet is the traffic of a scale-out test: Go client agents sending at a
// steady rate, logsend sending a file, and logbench, all given every
// address (in different orders, so that they spread).
type fleet struct {
	t      *testing.T
	agents []*agent
	cancel context.CancelFunc
	wg     sync.WaitGroup

	logsend      *exec.Cmd
	logsendOut   strings.Builder
	logsendLines int
	logbench     *exec.Cmd
	logbenchOut  strings.Builder
	logbenchErr  strings.Builder
}

// startFleet starts nAgents Go client agents at rate packets/s each, a
// logsend of lines lines (at most batch 10 per packet) and a logbench at
// benchRate packets/s for benchFor, against addrs.
func startFleet(t *testing.T, addrs []string, nAgents, rate, lines int, benchRate int, benchFor time.Duration) *fleet {
	f := &fleet{t: t, logsendLines: lines}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for i := range nAgents {
		order := append(append([]string(nil), addrs[i%len(addrs):]...), addrs[:i%len(addrs)]...)
		a := newAgentWith(t, order[0], fmt.Sprintf("scale-agent-%d", i), func(cfg *clientConfig) {
			cfg.Addrs = order
			cfg.Window = 64
		})
		f.agents = append(f.agents, a)
		f.wg.Add(1)
		go a.sendPaced(ctx, t, &f.wg, rate, fmt.Sprintf("agent-%d", i))
	}
	in := t.TempDir() + "/lines"
	var b strings.Builder
	for i := range lines {
		fmt.Fprintf(&b, "logsend line %d\n", i)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// logsend sends its file at once and waits for every line's ACK:
	// paced by its window, it is still sending when the fault comes.
	f.logsend = exec.Command(binary(t, "logsend"), "--target", strings.Join(addrs, ","), "--agent-id", "scale-logsend",
		"--batch", "1", "--timeout", "60s", in)
	f.logsend.Stdout, f.logsend.Stderr = &f.logsendOut, &f.logsendOut
	f.logbench = exec.Command(binary(t, "logbench"), "--target", strings.Join(addrs, ","), "--agent-id", "scale-logbench",
		"--conns", "4", "--rate", fmt.Sprint(benchRate), "--duration", benchFor.String(), "--json")
	f.logbench.Stdout, f.logbench.Stderr = &f.logbenchOut, &f.logbenchErr
	for _, c := range []*exec.Cmd{f.logsend, f.logbench} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range []*exec.Cmd{f.logsend, f.logbench} {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	})
	return f
}

// acked is how many packets the Go client agents have had acknowledged.
func (f *fleet) acked() int {
	n := 0
	for _, a := range f.agents {
		n += int(a.Stats().PacketsAcked)
	}
	return n
}

// flowing waits until the agents have had n more packets acknowledged:
// traffic flows (through whatever instances are up) before the next step.
func (f *fleet) flowing(what string, n int) {
	f.t.Helper()
	base := f.acked()
	waitFor(f.t, what, 30*time.Second, func() bool { return f.acked() >= base+n })
}

// connected waits until the instances hold every connection of the fleet
// (its agents and logbench's four): a step taken before would
// find some of them still dialing.
func (f *fleet) connected(instances ...*proc) {
	f.t.Helper()
	want := len(f.agents) + 4 // logsend may have finished already
	waitFor(f.t, "every agent connected", 30*time.Second, func() bool {
		n := 0
		for _, p := range instances {
			var st struct {
				AgentConnections int `json:"agent_connections"`
			}
			if getJSONQuiet("http://"+p.fields["admin"]+"/api/v1/status", &st) == nil {
				n += st.AgentConnections
			}
		}
		return n >= want
	})
}

// stop ends the agents' sending, waits for every packet they sent to be
// resolved and for logsend and logbench to finish, and fails the test on
// any agent error; cleanLogbench also wants logbench to have seen no
// error at all (no connection failure: every instance that went away
// sent GOAWAY first).
func (f *fleet) stop(cleanLogbench bool) {
	t := f.t
	f.cancel()
	f.wg.Wait()
	for _, a := range f.agents {
		a.flush(t)
		if st := a.Stats(); st.PacketsRejected != 0 {
			t.Errorf("agent rejected packets: %+v", st)
		}
	}
	if err := f.logsend.Wait(); err != nil {
		t.Errorf("logsend: %v\n%s", err, f.logsendOut.String())
	}
	if err := f.logbench.Wait(); err != nil {
		t.Errorf("logbench: %v\n%s", err, f.logbenchOut.String())
	}
	var res struct {
		PacketsSent  uint64 `json:"packets_sent"`
		PacketsAcked uint64 `json:"packets_acked"`
		Errors       uint64 `json:"errors"`
		Reconnects   uint64 `json:"reconnects"`
		Unresolved   uint64 `json:"unresolved"`
		LastError    string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(f.logbenchOut.String()), &res); err != nil {
		t.Errorf("logbench output: %v\n%s", err, f.logbenchOut.String())
	} else {
		if res.PacketsAcked == 0 || res.Unresolved != 0 || (cleanLogbench && res.Errors != 0) {
			t.Errorf("logbench: %+v: want every packet acknowledged (and no error: %v)\n%s", res, cleanLogbench, f.logbenchErr.String())
		}
		t.Logf("logbench: %d packets acknowledged, %d reconnects, %d connection errors", res.PacketsAcked, res.Reconnects, res.Errors)
	}
}

// delivery is what the analyzers wrote: (agent, packet id) → copies, and
// logsend's lines → copies.
type delivery struct {
	packets map[string]int
	lines   map[string]int
}

func (c *cluster) delivered() delivery {
	d := delivery{packets: map[string]int{}, lines: map[string]int{}}
	c.eachOut(func(l outLine) {
		switch {
		case l.Agent == "scale-logsend":
			d.lines[l.Msg]++
		case strings.HasPrefix(l.Agent, "scale-agent-"):
			d.packets[fmt.Sprintf("%s/%d", l.Agent, l.PacketID)]++
		}
	})
	return d
}

// checkDelivery reports acknowledged packets at no analyzer (must be 0)
// and the copies beyond the first (duplicates: at-least-once delivery
// across a failure).
func (c *cluster) checkDelivery(f *fleet) {
	t := c.t
	t.Helper()
	d := c.delivered()
	acked, lost, dups := 0, 0, 0
	for i, a := range f.agents {
		for _, id := range a.ackedIDs() {
			acked++
			if d.packets[fmt.Sprintf("scale-agent-%d/%d", i, id)] == 0 {
				lost++
			}
		}
	}
	for _, n := range d.packets {
		dups += max(n-1, 0)
	}
	lineLost := 0
	for i := range f.logsendLines {
		n := d.lines[fmt.Sprintf("logsend line %d", i)]
		if n == 0 {
			lineLost++
		}
		dups += max(n-1, 0)
	}
	// An analyzer writes a packet once: a copy it gets again (a resend
	// through the other instance after a failure) is counted in its
	// duplicates; a copy that reached another analyzer is in dups.
	var caught uint64
	for _, a := range c.analyzers {
		caught += a.stats(t).Duplicates
	}
	t.Logf("acknowledged %d agent packets and %d logsend lines: lost %d and %d; duplicates: %d at two analyzers, %d dropped by an analyzer that had it",
		acked, f.logsendLines, lost, lineLost, dups, caught)
	if acked == 0 || lost != 0 || lineLost != 0 {
		t.Errorf("acknowledged but lost: %d of %d agent packets, %d of %d logsend lines", lost, acked, lineLost, f.logsendLines)
	}
}

// checkShares checks each instance's picks against the weights (from its
// admin API, when it still runs) and the total over both (the analyzers'
// own counts).
func (c *cluster) checkShares(instances ...*proc) {
	t := c.t
	t.Helper()
	var total uint64
	counts := make([]uint64, len(c.analyzers))
	for i, a := range c.analyzers {
		counts[i] = a.stats(t).Packets
		total += counts[i]
	}
	sum := 0.0
	for _, w := range c.weights {
		sum += w
	}
	for i := range c.analyzers {
		got, want := float64(counts[i])/float64(total), c.weights[i]/sum
		t.Logf("total over the instances: %s %d packets, share %.4f (weight share %.4f)", c.analyzers[i].name, counts[i], got, want)
		// Unique packets per analyzer: a packet resent through the other
		// instance after a failure may land on another analyzer, where
		// it is new. That moves a few hundred of many thousands.
		if math.Abs(got-want) > 0.01 {
			t.Errorf("total share of %s %.4f, want %.4f ± 0.01", c.analyzers[i].name, got, want)
		}
	}
	for _, p := range instances {
		var rows []analyzerRow
		if getJSONQuiet("http://"+p.fields["admin"]+"/api/v1/analyzers", &rows) != nil {
			continue
		}
		var n uint64
		for _, r := range rows {
			n += r.Packets
		}
		for i, r := range rows {
			got, want := float64(r.Packets)/float64(n), c.weights[i]/sum
			// Exact but for the loops' cursors being mid-cycle: each
			// is at most one pick per analyzer away.
			if math.Abs(got-want)*float64(n) > 2*float64(len(rows)) {
				t.Errorf("logdist %s: %s share %.4f of %d packets, want %.4f", p.fields["listen"], r.Name, got, n, want)
			}
		}
	}
}

var scaleWeights = []float64{0.4, 0.3, 0.2, 0.1}

// (a) Two instances under load, one killed (-9): agents move to the
// other; nothing acknowledged is lost.
func TestScaleOutKill(t *testing.T) {
	c := newCluster(t, scaleWeights)
	ld2 := c.startLogdist("127.0.0.1:0")
	f := startFleet(t, []string{c.listen, ld2.fields["listen"]}, 4, 400, 20000, 1000, 5*time.Second)
	f.connected(c.logdist, ld2)
	f.flowing("traffic before the fault", 1000)
	c.logdist.signal(syscall.SIGKILL)
	c.logdist.wait(10 * time.Second)
	waitFor(t, "every agent on the surviving instance", 10*time.Second, func() bool {
		for _, a := range f.agents {
			if a.Stats().Addr != ld2.fields["listen"] {
				return false
			}
		}
		return true
	})
	f.flowing("traffic after the fault", 1000)
	f.stop(false)
	c.checkDelivery(f)
	c.checkShares(ld2)
}

// (b) A rolling restart under load: SIGTERM (GOAWAY, drain), start on the
// same port, then the other instance; no agent error, nothing lost.
func TestScaleOutRollingRestart(t *testing.T) {
	c := newCluster(t, scaleWeights)
	ld2 := c.startLogdist("127.0.0.1:0")
	addrs := []string{c.listen, ld2.fields["listen"]}
	t.Logf("instances: %v", addrs)
	f := startFleet(t, addrs, 4, 400, 20000, 1000, 6*time.Second)
	f.connected(c.logdist, ld2)
	f.flowing("traffic before the restarts", 1000)
	instances := []*proc{c.logdist, ld2}
	for i, p := range instances {
		p.signal(syscall.SIGTERM)
		if code := p.wait(20 * time.Second); code != 0 {
			t.Fatalf("logdist %s exited %d after SIGTERM\n%s", addrs[i], code, p.logs())
		}
		instances[i] = c.startLogdist(addrs[i])
		f.flowing("traffic after a restart", 500)
	}
	f.stop(true)
	c.checkDelivery(f)
	c.checkShares(instances...)
}

// (c) The same behind HAProxy (TCP mode, health checks): agents know only
// HAProxy's address; one instance killed, restarted, then a rolling
// restart of the other.
func TestScaleOutBehindHAProxy(t *testing.T) {
	haproxy := testtool.Need(t, "haproxy", "haproxy")
	c := newCluster(t, scaleWeights)
	ld2 := c.startLogdist("127.0.0.1:0")
	addrs := []string{c.listen, ld2.fields["listen"]}
	front := freeTCPPort(t)
	conf := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend agents
  bind 127.0.0.1:%d
  default_backend logdist
backend logdist
  balance leastconn
  option tcp-check
  default-server inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions
  server ld1 %s check
  server ld2 %s check
`, front, addrs[0], addrs[1])
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	hp := startNoReady(t, haproxy, "-db", "-f", cfgPath)
	frontAddr := fmt.Sprintf("127.0.0.1:%d", front)
	waitFor(t, "haproxy listening", 10*time.Second, func() bool {
		nc, err := net.DialTimeout("tcp", frontAddr, time.Second)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})

	f := startFleet(t, []string{frontAddr}, 4, 400, 20000, 1000, 7*time.Second)
	f.connected(c.logdist, ld2)
	f.flowing("traffic before the fault", 1000)
	c.logdist.signal(syscall.SIGKILL) // (a) through HAProxy
	c.logdist.wait(10 * time.Second)
	f.flowing("traffic after the kill", 500)
	ld1 := c.startLogdist(addrs[0])
	f.flowing("traffic after the restart", 500)
	ld2.signal(syscall.SIGTERM) // (b) through HAProxy
	if code := ld2.wait(20 * time.Second); code != 0 {
		t.Fatalf("logdist exited %d after SIGTERM\n%s", code, ld2.logs())
	}
	ld2 = c.startLogdist(addrs[1])
	f.flowing("traffic after the rolling restart", 500)
	f.stop(false)
	hp.signal(syscall.SIGTERM)
	hp.wait(10 * time.Second)
	c.checkDelivery(f)
	c.checkShares(ld1, ld2)
}

// --max-conn-age spreads agents over an instance added after they
// connected: agents that know both addresses are all on the first (the
// second did not run yet); once it does, their aged connections get GOAWAY
// and reconnect to it, without a packet lost.
func TestMaxConnAgeSpreadsAgents(t *testing.T) {
	c := newCluster(t, []float64{1, 1}, "--max-conn-age", "1s")
	second := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	addrs := []string{c.listen, second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var agents []*agent
	for i := range 4 {
		a := newAgentWith(t, c.listen, fmt.Sprintf("aged-%d", i), func(cfg *clientConfig) { cfg.Addrs = addrs })
		agents = append(agents, a)
		wg.Add(1)
		go a.sendPaced(ctx, t, &wg, 200, "aged")
	}
	waitFor(t, "the agents on the first instance", 10*time.Second, func() bool {
		for _, a := range agents {
			if a.Stats().Addr != c.listen {
				return false
			}
		}
		return true
	})
	ld2 := c.startLogdist(second)
	waitFor(t, "agents on the new instance", 20*time.Second, func() bool {
		var st struct {
			AgentConnections int `json:"agent_connections"`
		}
		return getJSONQuiet("http://"+ld2.fields["admin"]+"/api/v1/status", &st) == nil && st.AgentConnections > 0
	})
	cancel()
	wg.Wait()
	for _, a := range agents {
		a.flush(t)
		c.checkNoLoss(a)
	}
	if n := sumMetric(metricsText(t, c.admin), "logdist_agent_aged_out_total"); n == 0 {
		t.Error("no connection aged out on the first instance")
	}
}
