package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/internal/promexp"
)

// families are the metric families logdist and analyzerd export: what a
// rule or a panel may name.
var families = sync.OnceValue(func() promexp.Catalog {
	c := admin.MetricCatalog()
	for _, f := range analyzerd.MetricFamilies {
		c[f.Name] = f
	}
	for _, f := range server.MetricFamilies("analyzerd_server") {
		c[f.Name] = f
	}
	return c
})

// ourPrefixes start the metric names that must be in families; other
// names (up, recording rules' level:metric:operations) are not ours.
var ourPrefixes = []string{"logdist_", "analyzerd_", "go_", "process_"}

var (
	// quoted matches PromQL's string literals, whose contents (label
	// values, regular expressions) are not names.
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	// brackets matches range and subquery selectors ([5m], [1h:1m]).
	brackets = regexp.MustCompile(`\[[^\]]*\]`)
	// comment matches a PromQL comment, to the end of its line.
	comment = regexp.MustCompile(`#[^\n]*`)
	// ident matches a metric name, a label name or a keyword.
	ident = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// identifiers returns the identifiers of a PromQL expression outside its
// strings, comments and range brackets.
func identifiers(expr string) []string {
	s := quoted.ReplaceAllString(expr, `""`)
	s = comment.ReplaceAllString(s, "")
	s = brackets.ReplaceAllString(s, "[]")
	return ident.FindAllString(s, -1)
}

// unknownMetrics returns what is wrong with the metric names expr uses:
// each of ours (by prefix) must be an exported family, or the _bucket,
// _sum or _count series of one that is a histogram (or the _sum and
// _count of a summary); a histogram's own name has no series.
func unknownMetrics(expr string) []string {
	c := families()
	var bad []string
	seen := map[string]bool{}
	for _, name := range identifiers(expr) {
		if seen[name] || !hasOurPrefix(name) {
			continue
		}
		seen[name] = true
		if why := checkName(c, name); why != "" {
			bad = append(bad, why)
		}
	}
	return bad
}

func hasOurPrefix(name string) bool {
	for _, p := range ourPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// checkName says what is wrong with the series name name, or "".
func checkName(c promexp.Catalog, name string) string {
	if f, ok := c[name]; ok {
		if f.Type == "histogram" {
			return fmt.Sprintf("%s is a histogram: its series are %[1]s_bucket, %[1]s_sum and %[1]s_count", name)
		}
		return ""
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := c[base]
		switch {
		case !ok:
		case f.Type == "histogram", f.Type == "summary" && suffix != "_bucket":
			return ""
		default:
			return fmt.Sprintf("%s: %s is a %s, which has no %s series", name, base, f.Type, suffix)
		}
	}
	return fmt.Sprintf("%s is not a metric logdist or analyzerd exports%s", name, closest(c, name))
}

// closest suggests the family name nearest to name, for the error message.
func closest(c promexp.Catalog, name string) string {
	best, bestD := "", 4 // suggest only close names
	for _, n := range c.Names() {
		if d := distance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// The check itself: names logdist exports pass, histogram series pass
// under their suffixes only, and strings, label names and keywords are
// not taken for metrics.
func TestUnknownMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr string
		bad  int
	}{
		{`sum by (le) (rate(logdist_agent_ack_latency_seconds_bucket{instance=~"logdist_x"}[5m]))`, 0},
		{`rate(logdist_agent_ack_latency_seconds_count[5m]) + rate(analyzerd_server_frames_total{type="data"}[1m:10s])`, 0},
		{`go_gc_duration_seconds_sum + go_gc_duration_seconds + process_resident_memory_bytes`, 0},
		{`up{job="logdist"} == 0 and on (instance) instance:logdist_ingest_packets:rate5m > 0 # logdist_nothing`, 0},
		{`rate(logdist_ingest_packet_total[5m])`, 1},                      // misspelled
		{`logdist_agent_ack_latency_seconds`, 1},                          // a histogram's bare name
		{`logdist_queue_packets_bucket + logdist_queue_packets_count`, 2}, // a gauge's
		{`analyzerd_packets_total + analyzerd_packet_total`, 1},
	} {
		if got := unknownMetrics(tc.expr); len(got) != tc.bad {
			t.Errorf("%s: got %d problems %q, want %d", tc.expr, len(got), got, tc.bad)
		}
	}
	if got := unknownMetrics(`logdist_ingest_packet_total`); len(got) != 1 || !strings.Contains(got[0], "did you mean logdist_ingest_packets_total") {
		t.Errorf("no suggestion: %q", got)
	}
}

// repoRoot returns the repository's root directory (where go.mod is).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// glob returns the repository's files matching pattern (relative to its
// root), sorted, and fails the test when there is none.
func glob(t *testing.T, pattern string) []string {
	t.Helper()
	root := repoRoot(t)
	m, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no file matches %s (%v)", pattern, err)
	}
	for i := range m {
		m[i], _ = filepath.Rel(root, m[i])
	}
	sort.Strings(m)
	return m
}
