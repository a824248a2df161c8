// Package redact takes personal data and secrets out of log messages
// before logdist forwards them: rules of RE2 regular expressions with
// replacements, per field, and built-in detectors (e-mail addresses, IPv4
// and IPv6 addresses, card numbers that pass the Luhn check, bearer
// tokens, JWTs, AWS access keys and secret keys).
//
// A Redactor is immutable and safe for concurrent use; a reload builds a
// new one. Each rule has a cheap prefilter (a byte or a substring the
// text must hold) so that a message with nothing to redact costs a few
// scans, not a regular expression per rule, and allocates nothing.
package redact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"go.yaml.in/yaml/v3"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/promexp"
)

// Field is a set of message fields.
type Field uint8

const (
	Body Field = 1 << iota
	Hostname
	App
	// Attributes are the values of a message's attributes (RFC 5424
	// structured data); keys are never changed.
	Attributes
)

var fieldNames = map[string]Field{"body": Body, "hostname": Hostname, "app": App, "attributes": Attributes}

func parseFields(names []string, def Field) (Field, error) {
	if len(names) == 0 {
		return def, nil
	}
	var f Field
	for _, n := range names {
		x, ok := fieldNames[n]
		if !ok {
			return 0, fmt.Errorf("field %q: want body, hostname, app or attributes", n)
		}
		f |= x
	}
	return f, nil
}

// File is the --redact file: YAML.
//
//	builtins: [email, ipv4, ipv6, credit-card, bearer, jwt, aws-key, aws-secret]  # or [all]
//	builtin-fields: [body, attributes]     # the default
//	rules:
//	  - name: password                       # the metric's rule label
//	    pattern: '(password|passwd)=\S+'     # RE2 (https://github.com/google/re2/wiki/Syntax)
//	    replace: '$1=[REDACTED]'             # $1, ${name}: the match's groups
//	    fields: [body, attributes]           # default: body
type File struct {
	Builtins      []string `yaml:"builtins"`
	BuiltinFields []string `yaml:"builtin-fields"`
	Rules         []Rule   `yaml:"rules"`
}

// Rule is one user rule.
type Rule struct {
	Name    string   `yaml:"name"`
	Pattern string   `yaml:"pattern"`
	Replace string   `yaml:"replace"`
	Fields  []string `yaml:"fields"`
}

// rule is a compiled rule or detector.
type rule struct {
	name    string
	fields  Field
	re      *regexp.Regexp
	replace []byte
	literal bool // replace has no $ to expand
	// pre, if set, is a cheap test the text must pass for re to run.
	pre func([]byte) bool
	// find, for a built-in without re, returns the next match at or
	// after from (-1 when none).
	find func(src []byte, from int) (start, end int)
	// valid, for a built-in with re, confirms a match (what RE2 cannot
	// say: a length, a count).
	valid func(match []byte) bool
	count *metrics.Counter
}

// Redactor applies a File's rules, built-ins first, then the file's rules
// in their order. Reload swaps in the file's new rules while it is used.
type Redactor struct {
	path  string
	set   *metrics.Set
	rules atomic.Pointer[[]rule]
}

// maxFileBytes bounds the rules file.
const maxFileBytes = 1 << 20

// maxRules bounds the rules: each costs a scan of every message.
const maxRules = 256

// Load reads and compiles a rules file; set receives the per-rule
// counters (nil: a new set).
func Load(path string, set *metrics.Set) (*Redactor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("redact %s: %w", path, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("redact %s: larger than %d KiB", path, maxFileBytes>>10)
	}
	r, err := Parse(b, set)
	if err != nil {
		return nil, fmt.Errorf("redact %s: %w", path, err)
	}
	r.path = path
	return r, nil
}

// Path is the file the rules came from ("" if compiled from a File).
func (r *Redactor) Path() string { return r.path }

// Reload reads the rules file again and applies its rules from the next
// message on; on an error the rules in force stay.
func (r *Redactor) Reload() error {
	if r.path == "" {
		return nil
	}
	n, err := Load(r.path, r.set)
	if err != nil {
		return err
	}
	r.rules.Store(n.rules.Load())
	return nil
}

// Parse compiles a rules file's text.
func Parse(b []byte, set *metrics.Set) (*Redactor, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return Compile(f, set)
}

// Compile builds a Redactor from f.
func Compile(f File, set *metrics.Set) (*Redactor, error) {
	if set == nil {
		set = metrics.NewSet()
	}
	bf, err := parseFields(f.BuiltinFields, Body|Attributes)
	if err != nil {
		return nil, fmt.Errorf("builtin-fields: %v", err)
	}
	want := map[string]bool{}
	for _, n := range f.Builtins {
		if n == "all" {
			for _, d := range detectors {
				want[d.name] = true
			}
			continue
		}
		if !slices.ContainsFunc(detectors, func(d rule) bool { return d.name == n }) {
			return nil, fmt.Errorf("builtins: %q is not one (want %s or all)", n, builtinNames())
		}
		want[n] = true
	}
	if len(f.Rules)+len(want) > maxRules {
		return nil, fmt.Errorf("more than %d rules", maxRules)
	}
	r := &Redactor{set: set}
	var rules []rule
	seen := map[string]bool{}
	for _, d := range detectors {
		if want[d.name] {
			d.fields = bf
			rules = append(rules, d)
			seen[d.name] = true
		}
	}
	for i, u := range f.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if u.Name == "" || strings.ContainsAny(u.Name, "\"\\\n{}") {
			return nil, fmt.Errorf("%s: name must be set, without quotes, braces or backslashes (it is a metric label)", where)
		}
		where += " (" + u.Name + ")"
		if seen[u.Name] {
			return nil, fmt.Errorf("%s: name used twice (built-ins use their own names)", where)
		}
		seen[u.Name] = true
		re, err := regexp.Compile(u.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		if u.Pattern == "" || re.Match(nil) || matchesEmpty(re) {
			return nil, fmt.Errorf("%s: pattern %q matches empty text; it would insert its replacement everywhere", where, u.Pattern)
		}
		fields, err := parseFields(u.Fields, Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		rules = append(rules, rule{name: u.Name, fields: fields, re: re, replace: []byte(u.Replace),
			literal: !strings.Contains(u.Replace, "$")})
	}
	for i := range rules {
		rules[i].count = set.GetOrCreateCounter(`logdist_redactions_total{rule="` + rules[i].name + `"}`)
	}
	r.rules.Store(&rules)
	return r, nil
}

// Rules returns the rules' names in the order they apply.
func (r *Redactor) Rules() []string {
	rules := *r.rules.Load()
	out := make([]string, len(rules))
	for i := range rules {
		out[i] = rules[i].name
	}
	return out
}

// Message redacts m's fields in place and returns how many replacements
// it made. A field that changed points into *buf afterwards (appended
// to; keep buf until m is encoded, then reuse it). Fields are clipped to
// lim afterwards, a replacement being possibly longer than what it
// replaced. A message with nothing to redact is left as it was, and
// nothing is allocated.
func (r *Redactor) Message(m *frame.Message, buf *[]byte, lim *frame.Limits) int {
	return message(*r.rules.Load(), m, buf, lim)
}

func message(rules []rule, m *frame.Message, buf *[]byte, lim *frame.Limits) int {
	n, maxBody, maxField := 0, 0, 0
	if lim != nil {
		maxBody, maxField = int(lim.MaxBody), int(lim.MaxField)
	}
	for i := range rules {
		ru := &rules[i]
		k := 0
		if ru.fields&Body != 0 {
			m.Body, k = ru.apply(m.Body, buf, k, maxBody)
		}
		if ru.fields&Hostname != 0 {
			m.Hostname, k = ru.apply(m.Hostname, buf, k, maxField)
		}
		if ru.fields&App != 0 {
			m.App, k = ru.apply(m.App, buf, k, maxField)
		}
		if ru.fields&Attributes != 0 {
			for j := range m.Attrs {
				m.Attrs[j].Value, k = ru.apply(m.Attrs[j].Value, buf, k, maxBody)
			}
		}
		if k > 0 {
			ru.count.Add(k)
			n += k
		}
	}
	return n
}

// Packet redacts every message of p; see Message.
func (r *Redactor) Packet(p *frame.Packet, buf *[]byte, lim *frame.Limits) int {
	rules := *r.rules.Load()
	n := 0
	for i := range p.Messages {
		n += message(rules, &p.Messages[i], buf, lim)
	}
	return n
}

func clip(b []byte, n int) []byte {
	if n > 0 && len(b) > n {
		return b[:n]
	}
	return b
}

// apply replaces ru's matches in src, returning the new text (in *buf,
// clipped to limit bytes unless 0) or src itself, and n plus the
// replacements made.
func (ru *rule) apply(src []byte, buf *[]byte, n, limit int) ([]byte, int) {
	if len(src) == 0 || (ru.pre != nil && !ru.pre(src)) {
		return src, n
	}
	start, last, made := len(*buf), 0, 0
	if ru.find != nil {
		for from := 0; from < len(src); {
			s, e := ru.find(src, from)
			if s < 0 {
				break
			}
			if s < last || e <= s { // a finder's bug must not panic a loop
				from = max(e, from+1)
				continue
			}
			*buf = append(*buf, src[last:s]...)
			*buf = append(*buf, ru.replace...)
			last, from = e, e
			made++
		}
		if made == 0 {
			return src, n
		}
		*buf = append(*buf, src[last:]...)
		return clip((*buf)[start:len(*buf):len(*buf)], limit), n + made
	}
	locs := ru.re.FindAllSubmatchIndex(src, -1)
	if locs == nil {
		return src, n
	}
	for _, loc := range locs {
		if loc[1] == loc[0] || ru.valid != nil && !ru.valid(src[loc[0]:loc[1]]) {
			continue // an empty match (\b) inserts nothing
		}
		*buf = append(*buf, src[last:loc[0]]...)
		if ru.literal {
			*buf = append(*buf, ru.replace...)
		} else {
			*buf = ru.re.Expand(*buf, ru.replace, src, loc)
		}
		last = loc[1]
		made++
	}
	if made == 0 {
		*buf = (*buf)[:start]
		return src, n
	}
	*buf = append(*buf, src[last:]...)
	return clip((*buf)[start:len(*buf):len(*buf)], limit), n + made
}

// matchesEmpty reports whether re matches empty text somewhere in a few
// samples (\b, ^, a*): such a match would insert the replacement between
// characters.
func matchesEmpty(re *regexp.Regexp) bool {
	for _, s := range []string{"ab cd", "a", " ", "a1-b2.c3"} {
		for _, loc := range re.FindAllStringIndex(s, -1) {
			if loc[0] == loc[1] {
				return true
			}
		}
	}
	return false
}

// MetricFamilies documents redaction's metrics, for promexp.
var MetricFamilies = []promexp.Family{
	{Name: "logdist_redactions_total", Type: "counter", Help: "Replacements made by redaction, by rule (label rule: the rule's name or a built-in detector's)."},
}
