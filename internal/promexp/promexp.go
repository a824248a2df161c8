// Package promexp writes the Prometheus text exposition that Prometheus'
// own linter (promtool check metrics) accepts: every family once, its
// samples together, with a HELP text and a TYPE.
//
// The metrics themselves live in VictoriaMetrics/metrics sets and in
// writers that read state at scrape time; those write TYPE lines but empty
// HELP texts, and two writers (or one writer called per analyzer) may each
// open the same family. Write collects everything a scrape produces,
// groups the samples by family in the order families first appear, and
// prints each family's HELP and TYPE from a Catalog: the one place a
// metric's meaning is written down, which docs/OBSERVABILITY.md is checked
// against.
//
// None of this runs on the data path: it costs one buffer per scrape.
package promexp

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Family describes one metric family.
type Family struct {
	// Name is the family's name as exported.
	Name string
	// Type is counter, gauge, histogram or summary.
	Type string
	// Help says what it counts, in which unit, with which labels.
	Help string
	// Source, when set, is the name a library writes the family under,
	// which Write exports as Name instead (for a name that breaks the
	// conventions, such as a counter without _total).
	Source string
}

// Catalog is a set of families by exported name.
type Catalog map[string]Family

// NewCatalog merges family lists into one Catalog; a name given twice
// keeps the later one.
func NewCatalog(lists ...[]Family) Catalog {
	c := Catalog{}
	for _, l := range lists {
		for _, f := range l {
			c[f.Name] = f
		}
	}
	return c
}

// Names returns the catalog's family names, sorted.
func (c Catalog) Names() []string {
	n := make([]string, 0, len(c))
	for k := range c {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func (c Catalog) renames() map[string]string {
	r := map[string]string{}
	for _, f := range c {
		if f.Source != "" {
			r[f.Source] = f.Name
		}
	}
	return r
}

var metadata sync.Once

// Write runs every source into one buffer and writes the result to w,
// grouped by family, with HELP and TYPE from c. A family c does not know
// gets its TYPE but no HELP (promtool reports it: the tests check that
// every exported family is documented).
func Write(w io.Writer, c Catalog, sources ...func(io.Writer)) error {
	// Ask VictoriaMetrics/metrics for TYPE lines: its Write* helpers and
	// sets print them only when this global switch is on.
	metadata.Do(func() { metrics.ExposeMetadata(true) })
	var in bytes.Buffer
	for _, src := range sources {
		src(&in)
	}
	_, err := w.Write(Normalize(in.Bytes(), c))
	return err
}

// family is one family's lines while Normalize gathers them.
type family struct {
	typ     string
	samples []byte
}

// Normalize regroups exposition text by family and writes HELP and TYPE
// once per family (from c where it knows the family). Comments other
// than HELP and TYPE, and blank lines, are dropped.
func Normalize(in []byte, c Catalog) []byte {
	renames := c.renames()
	fams := map[string]*family{}
	var order []string
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{}
			fams[name] = f
			order = append(order, name)
		}
		return f
	}
	for len(in) > 0 {
		var line []byte
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i], in[i+1:]
		} else {
			line, in = in, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if line[0] == '#' {
			fs := strings.Fields(string(line))
			if len(fs) >= 4 && fs[1] == "TYPE" {
				name := fs[2]
				if r, ok := renames[name]; ok {
					name = r
				}
				if f := get(name); f.typ == "" {
					f.typ = fs[3]
				}
			}
			continue
		}
		name := sampleName(line)
		fam := familyOf(name, fams, c, renames)
		f := get(fam.exported)
		if fam.renamed != "" {
			line = append([]byte(fam.renamed+name[len(fam.source):]), line[len(name):]...)
		}
		f.samples = append(f.samples, line...)
		f.samples = append(f.samples, '\n')
	}
	var out bytes.Buffer
	for _, name := range order {
		f := fams[name]
		if len(f.samples) == 0 {
			continue
		}
		typ := f.typ
		d, known := c[name]
		if known && d.Type != "" {
			typ = d.Type
		}
		if known && d.Help != "" {
			out.WriteString("# HELP " + name + " " + escapeHelp(d.Help) + "\n")
		}
		if typ != "" {
			out.WriteString("# TYPE " + name + " " + typ + "\n")
		}
		out.Write(f.samples)
	}
	return out.Bytes()
}

// sampleName returns the metric name a sample line starts with.
func sampleName(line []byte) string {
	for i, b := range line {
		if b == '{' || b == ' ' || b == '\t' {
			return string(line[:i])
		}
	}
	return string(line)
}

type familyName struct {
	exported string // the family the sample belongs to
	source   string // the name it was written under, when renamed
	renamed  string // the name to write instead of source
}

// familyOf finds the family of a sample named name: itself, or for the
// _bucket, _sum and _count series of a histogram or summary, its base.
func familyOf(name string, fams map[string]*family, c Catalog, renames map[string]string) familyName {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		exported := base
		if r, ok := renames[base]; ok {
			exported = r
		}
		typ := ""
		if f := fams[exported]; f != nil {
			typ = f.typ
		}
		if d, ok := c[exported]; ok && d.Type != "" {
			typ = d.Type
		}
		if typ == "histogram" || typ == "summary" {
			fn := familyName{exported: exported}
			if exported != base {
				fn.source, fn.renamed = base, exported
			}
			return fn
		}
	}
	if r, ok := renames[name]; ok {
		return familyName{exported: r, source: name, renamed: r}
	}
	return familyName{exported: name}
}

// escapeHelp escapes a HELP text as the format requires.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// Markdown returns the families of c whose names start with prefix as a
// Markdown table (name, type, help), sorted by name: the metric reference
// in docs/OBSERVABILITY.md.
func Markdown(c Catalog, prefix string) string {
	var b strings.Builder
	b.WriteString("| metric | type | meaning |\n|---|---|---|\n")
	for _, n := range c.Names() {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		f := c[n]
		b.WriteString("| `" + n + "` | " + f.Type + " | " + strings.ReplaceAll(f.Help, "|", `\|`) + " |\n")
	}
	return b.String()
}
