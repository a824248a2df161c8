package deploycheck

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
)

// units are deploy/systemd's service units, each with the binary it runs.
var units = map[string]string{"logdist.service": "logdist", "analyzerd.service": "analyzerd"}

// installedUnits copies the units into a new directory, their
// /usr/local/bin/ paths pointing at the binaries in bin (systemd-analyze
// verify checks that every command it would run exists and is
// executable), and returns the copies' paths.
func installedUnits(t *testing.T, bin string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for name := range units {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// verify runs systemd-analyze verify on the unit files and returns the
// lines of its output that name one of them. The others are about the
// host's own units (systemd-analyze loads their dependencies too) and
// are not ours to fix. Unknown or misspelled directives are such lines,
// with an exit status of 0: the output, not the status, is the check.
func verify(t *testing.T, sa string, paths ...string) (problems []string, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, append([]string{"verify"}, paths...)...)
	cmd.Dir = filepath.Dir(paths[0])
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	b, err := cmd.CombinedOutput()
	out = string(b)
	for _, line := range strings.Split(out, "\n") {
		for _, p := range paths {
			if strings.Contains(line, filepath.Base(p)) {
				problems = append(problems, line)
				break
			}
		}
	}
	if err != nil && len(problems) == 0 {
		problems = append(problems, "systemd-analyze verify: "+err.Error())
	}
	return problems, out
}

// systemd-analyze verify finds nothing to say about deploy/systemd's
// units (run with the real binaries in place), and does find a broken
// directive in a copy, so that a change of its output format cannot make
// the check pass blindly.
func TestSystemdVerify(t *testing.T) {
	sa := testtool.Need(t, "systemd-analyze", "systemd")
	paths := installedUnits(t, staticBinaries(t))
	problems, out := verify(t, sa, paths...)
	for _, p := range problems {
		t.Errorf("systemd-analyze verify: %s", p)
	}
	t.Logf("systemd-analyze verify %s: %d lines about them (of %d)", strings.Join(unitNames(), " "), len(problems), strings.Count(out, "\n"))

	broken := filepath.Join(t.TempDir(), "logdist.service")
	b, err := os.ReadFile(filepath.Join(filepath.Dir(paths[0]), "logdist.service"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\nProtectSystem=strict\n", "\nProtectSystem=strictest\n", 1)
	s = strings.Replace(s, "\nNoNewPrivileges=yes\n", "\nNoNewPrivilege=yes\n", 1)
	if err := os.WriteFile(broken, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if problems, out := verify(t, sa, broken); len(problems) < 2 {
		t.Errorf("systemd-analyze verify of a unit with two broken directives: %d lines found (%q), want 2; its output:\n%s", len(problems), problems, out)
	}
}

func unitNames() []string {
	var names []string
	for n := range units {
		names = append(names, n)
	}
	return names
}

// systemd-analyze security (offline, on the files) rates each unit's
// exposure: 1.6 of 10 when written, "OK". Above 2.0 a hardening line was
// dropped or weakened.
func TestSystemdSecurity(t *testing.T) {
	sa := testtool.Need(t, "systemd-analyze", "systemd")
	for _, p := range installedUnits(t, staticBinaries(t)) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, sa, "security", "--offline=yes", "--threshold=20", "--no-pager", p).CombinedOutput()
		cancel()
		overall := regexp.MustCompile(`Overall exposure level for \S+: [0-9.]+ \S+`).Find(out)
		if err != nil || overall == nil {
			var weak []string // the settings that add exposure, and the total
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "✗") || strings.Contains(line, "Overall") {
					weak = append(weak, strings.TrimSpace(line))
				}
			}
			t.Errorf("systemd-analyze security --threshold=20 %s: %v\n%s", filepath.Base(p), err, strings.Join(weak, "\n"))
			continue
		}
		t.Log(string(overall))
	}
}

// sysusers: the user the units run as is the one logdist.sysusers makes,
// and systemd-sysusers reads the file (into a scratch root: nothing on
// this machine changes).
func TestSysusers(t *testing.T) {
	root := repoRoot(t)
	sysusers := filepath.Join(root, "deploy", "systemd", "logdist.sysusers")
	b, err := os.ReadFile(sysusers)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "u" {
			users = append(users, f[1])
		}
	}
	if len(users) != 1 {
		t.Fatalf("logdist.sysusers makes users %q; want one", users)
	}
	for name := range units {
		d := directives(t, filepath.Join(root, "deploy", "systemd", name))
		if d["User"] != users[0] || d["Group"] != users[0] {
			t.Errorf("%s runs as User=%s Group=%s; logdist.sysusers makes %s", name, d["User"], d["Group"], users[0])
		}
	}

	tool := testtool.Need(t, "systemd-sysusers", "systemd")
	scratch := t.TempDir()
	if err := os.Mkdir(filepath.Join(scratch, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "--root="+scratch, "--dry-run", sysusers).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Creating user 'logdist'") || strings.Contains(string(out), "logdist.sysusers:") {
		t.Errorf("systemd-sysusers --dry-run %s: %v\n%s", sysusers, err, out)
	}
}

// directives reads a unit file's settings as name → value (the last
// one when repeated; "" for a reset such as CapabilityBoundingSet=).
func directives(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			d[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// systemdSeconds reads a systemd time span as these units write it
// ("30s", "1min 30s", "90"): a bare number is seconds.
func systemdSeconds(v string) (time.Duration, error) {
	v = strings.ReplaceAll(strings.TrimSpace(v), " ", "")
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(strings.ReplaceAll(v, "min", "m"))
}

// drainDefault reads a binary's default --drain-timeout from its --help.
func drainDefault(t *testing.T, bin string) time.Duration {
	t.Helper()
	out, _ := exec.Command(bin, "--help").CombinedOutput() // usage may exit non-zero
	m := regexp.MustCompile(`--drain-timeout duration .*\(default ([^)]+)\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s --help names no --drain-timeout default:\n%s", filepath.Base(bin), out)
	}
	d, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatalf("%s --help: --drain-timeout default %q: %v", filepath.Base(bin), m[1], err)
	}
	return d
}

// What the units must say, checked in the files themselves: systemd
// stops a service with SIGKILL after TimeoutStopSec, so it must exceed
// the drain a SIGTERM starts (or acknowledged packets in flight would be
// cut off); and the hardening, restart and reload settings are there.
func TestSystemdDirectives(t *testing.T) {
	bin := staticBinaries(t)
	want := map[string]string{
		"Type": "exec", "User": "logdist", "KillSignal": "SIGTERM", "Restart": "on-failure", "RestartSec": "1",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"CapabilityBoundingSet": "", "AmbientCapabilities": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter": "@system-service", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
	}
	for name, cmd := range units {
		d := directives(t, filepath.Join(repoRoot(t), "deploy", "systemd", name))
		for k, v := range want {
			if got, ok := d[k]; !ok || got != v {
				t.Errorf("%s: %s=%s; want %s=%s", name, k, got, k, v)
			}
		}
		stop, err := systemdSeconds(d["TimeoutStopSec"])
		if err != nil {
			t.Errorf("%s: TimeoutStopSec=%s: %v", name, d["TimeoutStopSec"], err)
		}
		drain := drainDefault(t, filepath.Join(bin, cmd))
		if m := regexp.MustCompile(`--drain-timeout[ =](\S+)`).FindStringSubmatch(d["ExecStart"]); m != nil {
			if drain, err = time.ParseDuration(m[1]); err != nil {
				t.Errorf("%s: ExecStart's --drain-timeout %s: %v", name, m[1], err)
			}
		}
		if stop <= drain {
			t.Errorf("%s: TimeoutStopSec=%v is not above %s's drain timeout (%v): systemd would SIGKILL it while packets are still being acknowledged", name, stop, cmd, drain)
		} else {
			t.Logf("%s: TimeoutStopSec=%v > %s --drain-timeout %v", name, stop, cmd, drain)
		}
		if !strings.HasPrefix(d["ExecStart"], "/usr/local/bin/"+cmd+" ") {
			t.Errorf("%s: ExecStart=%s; want /usr/local/bin/%s", name, d["ExecStart"], cmd)
		}
	}

	d := directives(t, filepath.Join(repoRoot(t), "deploy", "systemd", "logdist.service"))
	for k, v := range map[string]string{"ExecReload": "/bin/kill -HUP $MAINPID", "StateDirectory": "logdist"} {
		if d[k] != v {
			t.Errorf("logdist.service: %s=%s (the last one); want %s", k, d[k], v)
		}
	}
	for _, arg := range []string{"--config /etc/logdist/logdist.yaml", "--data-dir /var/lib/logdist"} {
		if !strings.Contains(d["ExecStart"], arg) {
			t.Errorf("logdist.service: ExecStart=%s; want %s in it", d["ExecStart"], arg)
		}
	}
	if n, err := strconv.Atoi(d["LimitNOFILE"]); err != nil || n < 200000 {
		t.Errorf("logdist.service: LimitNOFILE=%s; want at least 200000 (100,000 agents, twice over while they reconnect)", d["LimitNOFILE"])
	}
}
