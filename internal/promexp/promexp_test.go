package promexp

import (
	"strings"
	"testing"
)

// Samples of one family written by several writers come out together,
// under one HELP and TYPE; histogram series join their base family;
// a renamed family is exported under its new name.
func TestNormalize(t *testing.T) {
	c := NewCatalog([]Family{
		{Name: "x_total", Type: "counter", Help: "Xs.\nMore."},
		{Name: "lat_seconds", Type: "histogram", Help: "Latency."},
		{Name: "new_total", Type: "counter", Help: "Renamed.", Source: "old_count"},
	})
	in := `# HELP x_total
# TYPE x_total counter
x_total{a="1"} 1
# HELP lat_seconds
# TYPE lat_seconds histogram
lat_seconds_bucket{le="1"} 2
lat_seconds_bucket{le="+Inf"} 3
lat_seconds_sum 4
lat_seconds_count 3
# HELP x_total
# TYPE x_total counter
x_total{a="2"} 2
# TYPE old_count counter
old_count 7
undocumented 1
`
	want := `# HELP x_total Xs.\nMore.
# TYPE x_total counter
x_total{a="1"} 1
x_total{a="2"} 2
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="1"} 2
lat_seconds_bucket{le="+Inf"} 3
lat_seconds_sum 4
lat_seconds_count 3
# HELP new_total Renamed.
# TYPE new_total counter
new_total 7
undocumented 1
`
	if got := string(Normalize([]byte(in), c)); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

// A family with no sample is not announced.
func TestNormalizeSkipsEmptyFamilies(t *testing.T) {
	got := string(Normalize([]byte("# HELP a\n# TYPE a gauge\n"), nil))
	if got != "" {
		t.Fatalf("got %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	c := NewCatalog([]Family{{Name: "a_total", Type: "counter", Help: "A | B."}, {Name: "b", Type: "gauge", Help: "B."}})
	got := Markdown(c, "a_")
	if !strings.Contains(got, "| `a_total` | counter | A \\| B. |") || strings.Contains(got, "`b`") {
		t.Fatalf("got:\n%s", got)
	}
}
