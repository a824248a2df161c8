package deploycheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const dashboardFile = "deploy/grafana/logdist.json"

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *datasourceRef     `json:"datasource"`
	Panels     []panel            `json:"panels"` // a collapsed row's
	GridPos    struct{ X, W int } `json:"gridPos"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels returns the dashboard's panels, those inside collapsed rows
// included, rows first.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// query is one PromQL expression of the dashboard, Grafana's variables
// replaced, and where it is.
type query struct {
	where string // panel 12 "Packets/s" target A
	expr  string
}

// queries returns every target expression, and the selectors of the
// variables' label_values() queries.
func (d dashboard) queries() []query {
	var qs []query
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				continue
			}
			qs = append(qs, query{fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), substitute(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			qs = append(qs, query{fmt.Sprintf("variable %q", v.Name), substitute(m[1])})
		}
	}
	return qs
}

// labelValues matches label_values(selector, label), whose selector is
// PromQL.
var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// grafanaVar matches a Grafana variable: $name, ${name}, ${name:format},
// [[name]].
var grafanaVar = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[^}]*)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)

// builtins are the values given to Grafana's own variables; every other
// variable (the template's: $instance, $analyzer, ...) becomes .*, as
// "All" does in a regular expression matcher.
var builtins = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__interval_ms":   "60000",
	"__range":         "1h",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
}

func substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVar.FindStringSubmatch(v)
		name := m[1] + m[2] + m[3]
		if b, ok := builtins[name]; ok {
			return b
		}
		return ".*"
	})
}

func TestSubstitute(t *testing.T) {
	in := `rate(x{instance=~"$instance", analyzer=~"${analyzer}", a=~"${b:regex}", c=~"[[c]]"}[$__rate_interval]) / ${__interval}`
	want := `rate(x{instance=~".*", analyzer=~".*", a=~".*", c=~".*"}[5m]) / 1m`
	if got := substitute(in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// Every expression of the dashboard is valid PromQL: written as recording
// rules into a temporary file, one group per panel (promtool names the
// group of an expression that does not parse), and checked by promtool.
func TestDashboardQueriesParse(t *testing.T) {
	bin := promtool(t)
	qs := readDashboard(t).queries()
	if len(qs) < 20 {
		t.Fatalf("only %d queries in %s", len(qs), dashboardFile)
	}
	type yrule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type ygroup struct {
		Name  string  `yaml:"name"`
		Rules []yrule `yaml:"rules"`
	}
	var groups []ygroup
	for i, q := range qs {
		groups = append(groups, ygroup{
			Name:  fmt.Sprintf("%d: %s", i, q.where), // unique
			Rules: []yrule{{Record: "dashboard:query", Expr: q.expr}},
		})
	}
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, bin, "check", "rules", f)
}

// Every metric name in the dashboard is one logdist or analyzerd exports.
func TestDashboardMetricNames(t *testing.T) {
	for _, q := range readDashboard(t).queries() {
		for _, why := range unknownMetrics(q.expr) {
			t.Errorf("%s %s: %s", dashboardFile, q.where, why)
		}
	}
}

// The dashboard's shape: a prometheus datasource variable every query
// uses, instance and analyzer variables from label_values, rows, unique
// panel ids, and panels that fit the 24-column grid.
func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want 39 or later", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("variable datasource: type %s, query %s; want a prometheus datasource variable", v.Type, v.Query)
			}
		case "instance", "analyzer":
			if v.Type != "query" || !labelValues.MatchString(v.Definition) {
				t.Errorf("variable %s: type %s, definition %q; want a label_values query", v.Name, v.Type, v.Definition)
			}
		}
	}
	for _, v := range []string{"datasource", "instance", "analyzer"} {
		if _, ok := vars[v]; !ok {
			t.Errorf("no %s variable", v)
		}
	}
	ids := map[int]string{}
	rows := 0
	for _, p := range d.allPanels() {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d %q: x %d, width %d do not fit the grid", p.ID, p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			rows++
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no query", p.ID, p.Title)
		}
		for _, ds := range []*datasourceRef{p.Datasource} {
			if ds == nil || ds.UID != "${datasource}" {
				t.Errorf("panel %d %q: datasource %+v, want uid ${datasource}", p.ID, p.Title, ds)
			}
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d %q target %s: datasource %+v, want uid ${datasource}", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	if rows < 3 {
		t.Errorf("%d rows: want the panels grouped in rows", rows)
	}
}
