package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ruleFile is a Prometheus rules file, as far as these tests read it.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ruleFiles returns deploy/prometheus's rule files: every .yml there but
// the promtool unit tests (*_test.yml), which are not rule files.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, f := range glob(t, "deploy/prometheus/*.yml") {
		if !strings.HasSuffix(f, "_test.yml") {
			files = append(files, f)
		}
	}
	return files
}

// readRules parses the rule files, in order, with their file names.
func readRules(t *testing.T) map[string]ruleFile {
	t.Helper()
	out := map[string]ruleFile{}
	for _, f := range ruleFiles(t) {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = rf
	}
	return out
}

// promtool check rules: every rule file parses, every expression is valid
// PromQL, every template expands.
func TestPromtoolCheckRules(t *testing.T) {
	bin := promtool(t)
	files := ruleFiles(t)
	if !slices.Contains(files, "deploy/prometheus/alerts.yml") {
		t.Fatalf("deploy/prometheus/alerts.yml is missing (rule files: %v)", files)
	}
	run(t, bin, append([]string{"check", "rules"}, files...)...)
}

// promtool test rules: the alerts' unit tests pass.
func TestPromtoolTestRules(t *testing.T) {
	bin := promtool(t)
	out := run(t, bin, "test", "rules", "deploy/prometheus/alerts_test.yml")
	if !t.Failed() && !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules did not say SUCCESS:\n%s", out)
	}
}

// yamllint, with deploy/.yamllint (relaxed, no line length), warnings
// included.
func TestYamllint(t *testing.T) {
	bin := yamllint(t)
	files := glob(t, "deploy/prometheus/*.yml")
	run(t, bin, append([]string{"--strict", "-f", "parsable", "-c", "deploy/.yamllint"}, files...)...)
}

// Every metric name a rule uses is one logdist (or analyzerd) exports,
// and every recorded series an expression reads is recorded by a rule.
func TestRuleMetricNames(t *testing.T) {
	files := readRules(t)
	recorded := map[string]bool{}
	for _, rf := range files {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
	}
	n := 0
	for f, rf := range files {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				name := r.Alert + r.Record
				if strings.TrimSpace(r.Expr) == "" {
					t.Errorf("%s: %s: no expr", f, name)
				}
				n++
				for _, why := range unknownMetrics(r.Expr) {
					t.Errorf("%s: rule %s: %s", f, name, why)
				}
				for _, id := range identifiers(r.Expr) {
					if strings.Contains(id, ":") && !recorded[id] {
						t.Errorf("%s: rule %s reads %s, which no rule records", f, name, id)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules found")
	}
}

// runbookAnchor is where an alert's runbook_url must point.
var runbookAnchor = regexp.MustCompile(`/docs/OBSERVABILITY\.md#alert-([a-z0-9]+)$`)

// The conventions of the alerts: a for: duration, a severity that is page
// or ticket, a summary, a description and a runbook in
// docs/OBSERVABILITY.md at #alert-<name in lower case>.
func TestAlertConventions(t *testing.T) {
	n := 0
	for f, rf := range readRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				n++
				if r.For == "" {
					t.Errorf("%s: %s has no for: duration", f, r.Alert)
				}
				if s := r.Labels["severity"]; s != "page" && s != "ticket" {
					t.Errorf("%s: %s: severity %q, want page or ticket", f, r.Alert, s)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: %s has no %s annotation", f, r.Alert, a)
					}
				}
				m := runbookAnchor.FindStringSubmatch(r.Annotations["runbook_url"])
				if m == nil || m[1] != strings.ToLower(r.Alert) {
					t.Errorf("%s: %s: runbook_url %q, want one ending in docs/OBSERVABILITY.md#alert-%s", f, r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert))
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts found")
	}
}

// testFile is a promtool unit test file, as far as these tests read it.
type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert (every severity of it) has a unit test where it fires, with
// its annotations, and one where it does not; the unit tests load every
// rule file.
func TestEveryAlertTested(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tf testFile
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	for _, f := range ruleFiles(t) {
		if !slices.Contains(tf.RuleFiles, filepath.Base(f)) {
			t.Errorf("alerts_test.yml does not load %s", f)
		}
	}
	fires := map[string]bool{} // alertname/severity
	quiet := map[string]bool{} // alertname
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) == 0 {
				quiet[at.Alertname] = true
			}
			for _, a := range at.ExpAlerts {
				if len(a.ExpAnnotations) > 0 {
					fires[at.Alertname+"/"+a.ExpLabels["severity"]] = true
				}
			}
		}
	}
	for _, rf := range readRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if !fires[r.Alert+"/"+r.Labels["severity"]] {
					t.Errorf("%s (severity %s) has no unit test where it fires with its annotations", r.Alert, r.Labels["severity"])
				}
				if !quiet[r.Alert] {
					t.Errorf("%s has no unit test where it does not fire (exp_alerts: [])", r.Alert)
				}
			}
		}
	}
}
