package redact

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/logdist/logdist/frame"
)

func all(t testing.TB) *Redactor {
	t.Helper()
	r, err := Compile(File{Builtins: []string{"all"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func redactBody(r *Redactor, body string) (string, int) {
	m := frame.Message{Body: []byte(body)}
	var buf []byte
	n := r.Message(&m, &buf, nil)
	return string(m.Body), n
}

func TestBuiltins(t *testing.T) {
	r := all(t)
	for _, c := range []struct{ in, want string }{
		// e-mail
		{"login by jane.doe+logs@example.co.uk ok", "login by [REDACTED:email] ok"},
		{"no at sign here", "no at sign here"},
		{"user@localhost", "user@localhost"}, // no dot-TLD: not an address we redact
		// IPv4
		{"from 192.168.1.20, to 10.0.0.1.", "from [REDACTED:ipv4], to [REDACTED:ipv4]."},
		{"version 1.2.3.4.5 and 999.1.1.1", "version 1.2.3.4.5 and 999.1.1.1"},
		// IPv6
		{"peer 2001:db8::1 port", "peer [REDACTED:ipv6] port"},
		{"peer [fe80::1%eth0]:80", "peer [[REDACTED:ipv6]]:80"},
		{"mapped ::ffff:10.1.2.3 here", "mapped [REDACTED:ipv6] here"},
		{"at 12:30:45 std::vector fe80::", "at 12:30:45 std::vector [REDACTED:ipv6]"},
		// card numbers, with the Luhn check
		{"card 4111 1111 1111 1111 paid", "card [REDACTED:credit-card] paid"},
		{"card 4111-1111-1111-1111", "card [REDACTED:credit-card]"},
		{"order 4111111111111112", "order 4111111111111112"}, // fails Luhn
		{"ts 1733472000000000000", "ts 1733472000000000000"}, // 19 digits, fails Luhn
		// tokens
		{"Authorization: Bearer abc.DEF-123_~+/==", "Authorization: [REDACTED:bearer]"},
		{"token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end", "token=[REDACTED:jwt] end"},
		{"key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED:aws-key] used"},
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[REDACTED:aws-secret]"},
		{"AKIA alone", "AKIA alone"},
		// found in review: each once wrong
		{"a@b.co@c.de x@y.org", "[REDACTED:email]@c.de [REDACTED:email]"}, // no panic reaching back into a match
		{"conn 10.1.2.3:8080 client:10.9.8.7 ok", "conn [REDACTED:ipv4]:8080 client:[REDACTED:ipv4] ok"},
		{"paid 4111111111111111 100 USD", "paid [REDACTED:credit-card] 100 USD"},
		{"card 4111 1111 1111 1111 12 26", "card [REDACTED:credit-card] 12 26"},
		{"ts=1764190800128 id=1234567890123", "ts=1764190800128 id=1234567890123"}, // start with 1: no network
		{"the bearer of bad news", "the bearer of bad news"},
		{"Bearer abcdefg", "Bearer abcdefg"}, // no digit or symbol, too short
		{"aws task: 0123456789012345678901234567890123456789", "aws task: 0123456789012345678901234567890123456789"},
		{`"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, `"[REDACTED:aws-secret]"`},
		{"Cafe::Bad and dead::beef", "Cafe::Bad and dead::beef"},
	} {
		got, _ := redactBody(r, c.in)
		if got != c.want {
			t.Errorf("%q\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestRulesFieldsAndCounts(t *testing.T) {
	set := metrics.NewSet()
	r, err := Parse([]byte(`
builtins: [email]
builtin-fields: [body]
rules:
  - name: password
    pattern: '(password|passwd)=\S+'
    replace: '$1=[REDACTED]'
    fields: [body, attributes]
  - name: internal-host
    pattern: '\.corp\.example$'
    replace: '.corp'
    fields: [hostname]
`), set)
	if err != nil {
		t.Fatal(err)
	}
	m := frame.Message{
		Hostname: []byte("db1.corp.example"),
		App:      []byte("a@b.cd"), // app is not a builtin field here
		Body:     []byte("password=hunter2 passwd=x by a@b.cd"),
		Attrs:    []frame.Attr{{Key: []byte("password=k"), Value: []byte("password=v")}},
	}
	var buf []byte
	if n := r.Message(&m, &buf, nil); n != 5 {
		t.Fatalf("%d replacements, want 5", n)
	}
	for _, c := range []struct{ got, want string }{
		{string(m.Body), "password=[REDACTED] passwd=[REDACTED] by [REDACTED:email]"},
		{string(m.Hostname), "db1.corp"},
		{string(m.App), "a@b.cd"},
		{string(m.Attrs[0].Key), "password=k"},
		{string(m.Attrs[0].Value), "password=[REDACTED]"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, want := range []string{`logdist_redactions_total{rule="password"} 3`, `logdist_redactions_total{rule="email"} 1`, `logdist_redactions_total{rule="internal-host"} 1`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, sb.String())
		}
	}
}

func TestClipAfterRedaction(t *testing.T) {
	r := all(t)
	lim := frame.DefaultLimits()
	lim.MaxBody = 20
	m := frame.Message{Body: []byte("a@b.cd a@b.cd")} // 13 bytes, 2 × 16 after
	var buf []byte
	r.Message(&m, &buf, &lim)
	if len(m.Body) != 20 {
		t.Fatalf("body %q (%d bytes) not clipped to 20", m.Body, len(m.Body))
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"builtins: [emails]", `"emails" is not one`},
		{"rules: [{name: x, pattern: '('}]", "missing closing )"},
		{"rules: [{name: x, pattern: 'a*'}]", "matches empty text"},
		{"rules: [{name: x, pattern: '\\b'}]", "matches empty text"},
		{"rules: [{name: x, pattern: 'a', fields: [bdy]}]", `field "bdy"`},
		{"rules: [{name: email, pattern: 'a'}]", "used twice"},
		{"rules: [{pattern: 'a'}]", "name must be set"},
		{"rules: [{name: 'a\"b', pattern: 'a'}]", "name must be set"},
		{"rulez: []", "rulez"},
	} {
		text := c.text
		if strings.Contains(text, "name: email") {
			text = "builtins: [email]\n" + text
		}
		if _, err := Parse([]byte(text), nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to say %q", c.text, err, c.want)
		}
	}
}

// A message with nothing to redact costs no allocation, and neither does
// one whose redactions fit the buffer kept from earlier messages: this
// runs per message on the event loops.
func TestAllocs(t *testing.T) {
	r := all(t)
	clean := frame.Message{Hostname: []byte("web-1"), App: []byte("nginx"),
		Body: []byte(`GET /api/v1/items?id=42 200 1534 "Mozilla/5.0 (X11; Linux x86_64)" 0.004s upstream=backend-3`)}
	var buf []byte
	if n := testing.AllocsPerRun(1000, func() {
		m := clean
		buf = buf[:0]
		r.Message(&m, &buf, nil)
	}); n != 0 {
		t.Fatalf("a clean message costs %v allocations", n)
	}
	dirty := frame.Message{Body: []byte("login jane@example.com token Bearer abcdef")}
	if n := testing.AllocsPerRun(1000, func() {
		m := dirty
		buf = buf[:0]
		r.Message(&m, &buf, nil)
	}); n > 4 {
		t.Fatalf("a message with two redactions costs %v allocations, want at most 4 (the regexp's match indexes, 2 per rule that matches)", n)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte("jane@example.com 10.0.0.1 2001:db8::1 4111 1111 1111 1111 Bearer x AKIAIOSFODNN7EXAMPLE"))
	f.Add([]byte("::::::::.....@@@@ 1:2:3:4:5:6:7:8:9 eyJ.eyJ."))
	f.Add([]byte("a@b.co@c.de"))
	r := all(f)
	lim := frame.DefaultLimits()
	lim.MaxBody = 256
	f.Fuzz(func(t *testing.T, b []byte) {
		m := frame.Message{Body: bytes.Clone(b), Hostname: bytes.Clone(b), Attrs: []frame.Attr{{Key: []byte("k"), Value: bytes.Clone(b)}}}
		var buf []byte
		n := r.Message(&m, &buf, &lim)
		if n == 0 && (!bytes.Equal(m.Body, b) || !bytes.Equal(m.Attrs[0].Value, b)) {
			t.Fatal("no replacement reported, yet the text changed")
		}
		if n > 0 && len(m.Body) > int(lim.MaxBody) {
			t.Fatalf("body of %d bytes after redaction, limit %d", len(m.Body), lim.MaxBody)
		}
		if !bytes.Equal(m.Hostname, b) {
			t.Fatal("hostname changed; builtins apply to body and attributes")
		}
	})
}

func BenchmarkMessage(b *testing.B) {
	r := all(b)
	for _, c := range []struct{ name, body string }{
		{"clean", `GET /api/v1/items?id=42 200 1534 "Mozilla/5.0 (X11; Linux x86_64)" 0.004s upstream=backend-3`},
		{"ip-and-time", `2026-12-06T10:00:00Z conn from 10.1.2.3:5123 closed after 12:30:45.120 idle`},
		{"email", `password reset sent to jane.doe@example.com for account 7731`},
	} {
		b.Run(c.name, func(b *testing.B) {
			var buf []byte
			msg := frame.Message{Body: []byte(c.body)}
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				m := msg
				buf = buf[:0]
				r.Message(&m, &buf, nil)
			}
		})
	}
}

// Reload swaps the file's new rules in; a broken file leaves the old.
func TestReload(t *testing.T) {
	path := t.TempDir() + "/redact.yaml"
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("builtins: [email]")
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	write("builtins: [ipv4]")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := redactBody(r, "a@b.cd 10.0.0.1"); got != "a@b.cd [REDACTED:ipv4]" {
		t.Fatalf("after reload: %q", got)
	}
	write("builtins: [nope]")
	if err := r.Reload(); err == nil || r.Rules()[0] != "ipv4" {
		t.Fatalf("a broken file: err %v, rules %v", err, r.Rules())
	}
}
