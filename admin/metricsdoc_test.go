package admin_test

import (
	"os"
	"strings"
	"testing"

	"github.com/logdist/logdist/admin"
	"github.com/logdist/logdist/analyzerd"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/internal/promexp"
)

// docsPath is the metric reference this test keeps in step with the
// catalogs (LOGDIST_UPDATE_DOCS=1 rewrites its generated tables).
const docsPath = "../docs/OBSERVABILITY.md"

// The metric reference in docs/OBSERVABILITY.md is the catalogs' HELP
// texts, table by table: a metric added, renamed or described anew
// without the doc fails here.
func TestObservabilityDocListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	analyzerdCatalog := promexp.NewCatalog(analyzerd.MetricFamilies, server.MetricFamilies("analyzerd_server"))
	tables := []struct{ name, body string }{
		{"logdist", promexp.Markdown(admin.MetricCatalog(), "logdist_")},
		{"analyzerd", promexp.Markdown(analyzerdCatalog, "analyzerd_")},
		{"go", promexp.Markdown(promexp.NewCatalog(promexp.Runtime), "go_")},
		{"process", promexp.Markdown(promexp.NewCatalog(promexp.Runtime), "process_")},
	}
	updated := doc
	for _, tb := range tables {
		begin, end := "<!-- BEGIN generated metrics "+tb.name+" -->\n", "<!-- END generated metrics "+tb.name+" -->"
		i, j := strings.Index(updated, begin), strings.Index(updated, end)
		if i < 0 || j < i {
			t.Fatalf("%s lacks the markers %q … %q", docsPath, strings.TrimSpace(begin), end)
		}
		updated = updated[:i+len(begin)] + tb.body + updated[j:]
	}
	if updated == doc {
		return
	}
	if os.Getenv("LOGDIST_UPDATE_DOCS") != "" {
		if err := os.WriteFile(docsPath, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s's metric tables are not the catalogs' (a metric was added, renamed or described anew): run LOGDIST_UPDATE_DOCS=1 go test ./admin/ -run TestObservabilityDocListsEveryMetric", docsPath)
}
