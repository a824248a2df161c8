package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logdist/logdist/proxy"
)

// --spool-key-file (or spool-key-file: in the file) reaches the proxy's
// spool settings, needs a data directory, and only a restart changes it.
func TestSpoolKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "logdist.yaml")
	if err := os.WriteFile(p, []byte("data-dir: "+dir+"\nspool-key-file: /etc/logdist/spool.keys\nanalyzers:\n  - {name: a1, addr: 127.0.0.1:9, weight: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err := Load([]string{"--config", p}, noUsage)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Proxy(proxy.DefaultConfig())
	if err != nil || c.Spool.KeyFile != "/etc/logdist/spool.keys" {
		t.Fatalf("key file %q: %v", c.Spool.KeyFile, err)
	}
	s2, _, err := Load([]string{"--config", p, "--spool-key-file", "/k2"}, noUsage)
	if err != nil || s2.SpoolKeyFile != "/k2" {
		t.Fatalf("flag: %q %v", s2.SpoolKeyFile, err)
	}
	if keys := Restart(s, s2); !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "spool-key-file") }) {
		t.Fatalf("restart keys %v", keys)
	}
	s2.DataDir = ""
	if _, err := s2.Proxy(proxy.DefaultConfig()); err == nil || !strings.Contains(err.Error(), "key file needs a data directory") {
		t.Fatalf("a key file without a data directory: %v", err)
	}
}
