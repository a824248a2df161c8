package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/proxy"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "logdist.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noUsage(*pflag.FlagSet) {}

// The file's keys replace the defaults, the flags given win over the file,
// and --analyzer on the command line replaces the file's list.
func TestLoadFileThenFlags(t *testing.T) {
	p := writeFile(t, `
listen: 127.0.0.1:7000
ack-timeout: 3s
queue-max-packets: 77
admin-allow: [127.0.0.1, 10.0.0.0/8]
analyzers:
  - name: a1
    addr: 127.0.0.1:7501
    weight: 0.4
  - addr: 127.0.0.1:7502
  - name=a3,addr=127.0.0.1:7503,weight=0.2,state=drained
`)
	s, cmd, err := Load([]string{"--config", p, "--ack-timeout", "7s"}, noUsage)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.File != p || s.Listen != "127.0.0.1:7000" || s.AckTimeout != Duration(7*time.Second) || s.QueueMaxPackets != 77 {
		t.Fatalf("listen %q ack-timeout %v queue %d file %q", s.Listen, s.AckTimeout, s.QueueMaxPackets, cmd.File)
	}
	if s.HeartbeatInterval != Default().HeartbeatInterval {
		t.Fatalf("a key the file does not have changed: heartbeat-interval %v", s.HeartbeatInterval)
	}
	want := []Analyzer{
		{Name: "a1", Addr: "127.0.0.1:7501", Weight: 0.4},
		{Name: "127.0.0.1:7502", Addr: "127.0.0.1:7502", Weight: 1},
		{Name: "a3", Addr: "127.0.0.1:7503", Weight: 0.2, State: "drained"},
	}
	if !reflect.DeepEqual(s.Analyzers, want) {
		t.Fatalf("analyzers %+v\nwant %+v", s.Analyzers, want)
	}
	if !reflect.DeepEqual(s.AdminAllow, []string{"127.0.0.1", "10.0.0.0/8"}) {
		t.Fatalf("admin-allow %v", s.AdminAllow)
	}
	s, _, err = Load([]string{"--config", p, "--analyzer", "name=x,addr=127.0.0.1:9"}, noUsage)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Analyzers) != 1 || s.Analyzers[0].Name != "x" {
		t.Fatalf("--analyzer did not replace the file's list: %+v", s.Analyzers)
	}
	c, err := s.Proxy(proxy.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7000" || c.AckTimeout != 3*time.Second || c.QueueMaxPackets != 77 || len(c.Analyzers) != 1 {
		t.Fatalf("proxy config: listen %q ack %v queue %d analyzers %d", c.Listen, c.AckTimeout, c.QueueMaxPackets, len(c.Analyzers))
	}
}

// Mistakes in the file are refused with the file, the line and what is
// wrong.
func TestLoadFileErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"lisen: :7000\n", `line 1: field lisen not found`},
		{"ack-timeout: soon\n", `"soon" is not a duration`},
		{"window: many\n", "line 1: cannot unmarshal"},
		{"analyzers:\n  - name: a1\n    adr: x:1\n", `line 3: analyzer: unknown key "adr"`},
		{"analyzers:\n  - name: a1\n", "missing addr"},
		{"analyzers:\n  - addr: x:1\n    weight: -1\n", "not a non-negative number"},
		{"analyzers:\n  - addr=x:1,weight=w\n", `weight "w"`},
		{"listen: :1\n---\nlisten: :2\n", "more than one YAML document"},
	} {
		p := writeFile(t, tc.body)
		_, _, err := Load([]string{"--config", p}, noUsage)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: error %v, want one naming %s and saying %q", tc.body, err, p, tc.want)
		}
	}
	if _, _, err := Load([]string{"--config", "/nonexistent/logdist.yaml"}, noUsage); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// Every flag but --config, --check-config and --version is a key of the
// file, and every key a flag: the file can say everything the command
// line can.
func TestEveryFlagIsAKey(t *testing.T) {
	keys := map[string]bool{}
	st := reflect.TypeOf(Spec{})
	for i := range st.NumField() {
		k, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		keys[k] = true
		if y, _, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ","); y != k {
			t.Errorf("field %s: yaml key %q, json key %q", st.Field(i).Name, y, k)
		}
	}
	var s Spec
	var cmd Command
	flags := map[string]bool{}
	FlagSet(&s, &cmd).VisitAll(func(f *pflag.Flag) {
		switch f.Name {
		case "config", "check-config", "version", "watch-config": // about the file itself: command line only
			return
		case "analyzer":
			flags["analyzers"] = true
			return
		}
		flags[f.Name] = true
		if !keys[f.Name] {
			t.Errorf("flag --%s has no key in the file", f.Name)
		}
	})
	for k := range keys {
		if !flags[k] {
			t.Errorf("key %q has no flag", k)
		}
	}
}

// Diff names each change; Hash tells configurations apart and ignores
// ramps.
func TestDiffAndHash(t *testing.T) {
	a := Default()
	a.Analyzers = []Analyzer{{Name: "a1", Addr: "h:1", Weight: 1}, {Name: "a2", Addr: "h:2", Weight: 1}}
	b := a.Clone()
	b.AckTimeout = Duration(3 * time.Second)
	b.Analyzers[0].Weight = 0.5
	b.Analyzers[0].Ramp = &Ramp{From: 1, Start: time.Now(), Over: Duration(time.Minute)}
	b.Analyzers = append(b.Analyzers[:1], Analyzer{Name: "a3", Addr: "h:3", Weight: 2, State: "drained"})
	got := strings.Join(Diff(a, b), "\n")
	want := "ack-timeout: 10s → 3s\nanalyzer a1: weight 1 → 0.5 over 1m0s\nanalyzer a2: removed (addr h:2, weight 1)\nanalyzer a3: added (addr h:3, weight 2, drained)"
	if got != want {
		t.Fatalf("Diff:\n%s\nwant:\n%s", got, want)
	}
	if len(Diff(a, a.Clone())) != 0 || a.Hash() != a.Clone().Hash() {
		t.Fatal("a copy differs from the original")
	}
	c := b.Clone()
	c.Analyzers[0].Ramp = nil
	if b.Hash() != c.Hash() || a.Hash() == b.Hash() {
		t.Fatal("Hash: ramps count, or a change does not")
	}
}

// The admin token file: TOKEN or IDENTITY TOKEN lines; short tokens and
// empty files are refused.
func TestReadTokens(t *testing.T) {
	p := writeFile(t, "# ops\nalice 0123456789abcdef0123\n\nfedcba9876543210fedc\n")
	got, err := ReadTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Token{{"alice", "0123456789abcdef0123"}, {"admin", "fedcba9876543210fedc"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v", got)
	}
	for body, msg := range map[string]string{"short\n": "shorter than 16", "# nothing\n": "no token", "a b c\n": "want TOKEN or IDENTITY TOKEN"} {
		if _, err := ReadTokens(writeFile(t, body)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", body, err, msg)
		}
	}
}

// The YAML a Spec prints reads back as the same Spec.
func TestYAMLRoundTrip(t *testing.T) {
	a := Default()
	a.Analyzers = []Analyzer{{Name: "a1", Addr: "h:1", Weight: 0.25, State: "forced-up"}}
	a.AdminAllow = []string{"10.0.0.0/8"}
	p := writeFile(t, string(a.YAML()))
	var b Spec
	if err := LoadFile(p, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("read back:\n%+v\nwant\n%+v\nfile:\n%s", b, a, a.YAML())
	}
}

// Two identities with one token are refused (the audit could not tell
// them apart), and so is a line too long to read (it used to end the list
// silently).
func TestReadTokensRefusesAmbiguity(t *testing.T) {
	if _, err := ReadTokens(writeFile(t, "alice 0123456789abcdef0123\nbob 0123456789abcdef0123\n")); err == nil || !strings.Contains(err.Error(), `"alice" and "bob" have the same token`) {
		t.Fatalf("shared token: %v", err)
	}
	body := "alice 0123456789abcdef0123\n# " + strings.Repeat("x", 70<<10) + "\nbob fedcba9876543210fedc\n"
	if toks, err := ReadTokens(writeFile(t, body)); err == nil {
		t.Fatalf("a 70 KiB line: %d tokens, no error", len(toks))
	}
}
