package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/VictoriaMetrics/metrics"
	"github.com/logdist/logdist/internal/agentauth"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/internal/redact"
	"github.com/logdist/logdist/internal/tlsconf"
	"github.com/logdist/logdist/proxy"
)

// maxFileSize bounds what LoadFile and ReadTokens read.
const maxFileSize = 16 << 20

// LoadFile reads the YAML file at path over s: the keys it has replace
// s's values, the others stay. An unknown key, a value of the wrong type
// or a second YAML document is an error naming the file and the line.
func LoadFile(path string, s *Spec) error {
	b, err := readSmall(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n ", ""))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: more than one YAML document", path)
	}
	return nil
}

// UnmarshalYAML reads an analyzer from a mapping (name, addr, weight,
// state) or from the --analyzer flag's text (name=…,addr=…,weight=…).
func (a *Analyzer) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		v, err := ParseAnalyzer(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: analyzer %q: %v", n.Line, n.Value, err)
		}
		*a = v
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an analyzer is a mapping (name, addr, weight, state) or name=…,addr=…,weight=…", n.Line)
	}
	v := Analyzer{Weight: 1}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			err = val.Decode(&v.Name)
		case "addr":
			err = val.Decode(&v.Addr)
		case "weight":
			err = val.Decode(&v.Weight)
			if err == nil && (v.Weight < 0 || v.Weight != v.Weight) {
				err = fmt.Errorf("weight %v is not a non-negative number", v.Weight)
			}
		case "state":
			err = val.Decode(&v.State)
		case "tls":
			err = val.Decode(&v.TLS)
		case "server-name":
			err = val.Decode(&v.ServerName)
		default:
			err = fmt.Errorf("unknown key %q (want name, addr, weight, state, tls, server-name)", k.Value)
		}
		if err != nil {
			return fmt.Errorf("line %d: analyzer: %v", k.Line, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	v, err := v.complete()
	if err != nil {
		return fmt.Errorf("line %d: analyzer: %v", n.Line, err)
	}
	*a = v
	return nil
}

// YAML returns s as a config file would say it.
func (s Spec) YAML() []byte {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		panic("BUG: config: a Spec does not marshal to YAML: " + err.Error())
	}
	return buf.Bytes()
}

// Check reports the first setting s cannot run with: everything
// proxy.Config checks, and the admin, log and file settings.
func (s Spec) Check() error {
	base := proxy.DefaultConfig()
	base.AgentTransport, base.UpstreamTransport = proxy.TLSTransport{}, proxy.TLSTransport{} // the files are checked below
	if _, err := s.Proxy(base); err != nil {
		return err
	}
	if _, _, err := s.TLS(nil); err != nil {
		return err
	}
	if err := cli.CheckFormat(s.LogFormat); err != nil {
		return err
	}
	if _, err := ParseLogLevel(s.LogLevel); err != nil {
		return err
	}
	if s.Admin != "" {
		if err := checkAddr(s.Admin); err != nil {
			return fmt.Errorf("admin address %q: %v", s.Admin, err)
		}
	}
	if _, err := ParseAllow(s.AdminAllow); err != nil {
		return err
	}
	if _, err := s.Guard(nil, nil, nil); err != nil {
		return err
	}
	if s.Redact != "" {
		if _, err := redact.Load(s.Redact, nil); err != nil {
			return err
		}
	}
	if _, err := s.Dicts(); err != nil {
		return err
	}
	if s.AdminTokenFile != "" {
		if _, err := ReadTokens(s.AdminTokenFile); err != nil {
			return err
		}
	}
	if s.AuditLog != "" {
		if fi, err := os.Stat(filepath.Dir(s.AuditLog)); err != nil || !fi.IsDir() {
			return fmt.Errorf("audit-log %s: its directory does not exist", s.AuditLog)
		}
	}
	return nil
}

// TLS builds the TLS configurations s asks for: the TLS listeners'
// (agents' and syslog's; nil without tls-listen and syslog-tls) and the analyzers' client's (always: an
// analyzer added at run time may have tls=true; without upstream-tls-ca it
// verifies against the system's roots). Their files are read now.
func (s Spec) TLS(log *slog.Logger) (agents, upstream *tlsconf.Config, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if s.TLSListen != "" || s.SyslogTLS != "" {
		if agents, err = tlsconf.NewServer(tlsconf.Files{Cert: s.TLSCert, Key: s.TLSKey, CA: s.TLSClientCA}, log); err != nil {
			return nil, nil, fmt.Errorf("tls-listen, syslog-tls: %v", err)
		}
	}
	upstream, err = tlsconf.NewClient(tlsconf.Files{Cert: s.UpstreamTLSCert, Key: s.UpstreamTLSKey, CA: s.UpstreamTLSCA}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream TLS: %v", err)
	}
	return agents, upstream, nil
}

// checkAddr checks a host:port to listen on.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// ParseAllow reads --admin-allow: CIDR prefixes or single addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			// Peers are compared unmapped: ::ffff:10.0.0.0/104 is 10.0.0.0/8.
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR prefix (10.0.0.0/8) or an address", s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Token is one admin API bearer token and who holds it.
type Token struct {
	Identity string
	Secret   string
}

// ReadTokens reads an --admin-token-file: one token per line, as TOKEN
// (identity "admin") or IDENTITY TOKEN; blank lines and lines starting
// with # are skipped. Tokens are at least 16 characters.
func ReadTokens(path string) ([]Token, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("admin token file: %w", err)
	}
	var out []Token
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		t := Token{Identity: "admin"}
		switch len(f) {
		case 1:
			t.Secret = f[0]
		case 2:
			t.Identity, t.Secret = f[0], f[1]
		default:
			return nil, fmt.Errorf("admin token file %s line %d: want TOKEN or IDENTITY TOKEN", path, n)
		}
		if len(t.Secret) < 16 {
			return nil, fmt.Errorf("admin token file %s line %d: token shorter than 16 characters", path, n)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("admin token file %s: %v", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("admin token file %s: no token in it", path)
	}
	for i, t := range out {
		for _, u := range out[:i] {
			if t.Secret == u.Secret {
				return nil, fmt.Errorf("admin token file %s: identities %q and %q have the same token; the audit log could not tell them apart", path, u.Identity, t.Identity)
			}
		}
	}
	return out, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxFileSize>>20)
	}
	return b, nil
}

// Guard builds the agents' authentication and rate limits from auth and
// auth-file (the file is read now). Without either it returns nil.
func (s Spec) Guard(log *slog.Logger, set *metrics.Set, audit func(agentauth.Refusal)) (*agentauth.Guard, error) {
	mode := agentauth.Off
	if s.AuthFile != "" {
		mode = agentauth.Required
	}
	if s.Auth != "" {
		var err error
		if mode, err = agentauth.ParseMode(s.Auth); err != nil {
			return nil, err
		}
	}
	if s.AuthFile == "" {
		if mode != agentauth.Off {
			return nil, fmt.Errorf("--auth %s needs --auth-file", mode)
		}
		return nil, nil
	}
	pol, err := agentauth.Load(s.AuthFile)
	if err != nil {
		return nil, err
	}
	return agentauth.New(agentauth.Options{Mode: mode, Policy: pol, Log: log, Audit: audit, Metrics: set})
}
