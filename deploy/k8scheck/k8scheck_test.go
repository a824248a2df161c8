package k8scheck

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The chart and the plain manifests, from the repository's root.
const (
	chartDir = "deploy/helm/logdist"
	plainDir = "deploy/kubernetes"
)

// renders are the values the chart is linted and rendered with.
var renders = []struct{ name, values string }{
	{"default", ""},
	{"all-on", "deploy/k8scheck/testdata/all-on.yaml"},
	{"tls-only", "deploy/k8scheck/testdata/tls-only.yaml"},
}

func valuesArgs(values string) []string {
	if values == "" {
		return nil
	}
	return []string{"-f", values}
}

// render runs helm template with values and returns its output.
func render(t *testing.T, values string) []byte {
	t.Helper()
	return run(t, helm(t), append([]string{"template", "logdist", chartDir}, valuesArgs(values)...)...)
}

// renderObjects renders the chart and decodes every object.
func renderObjects(t *testing.T, name, values string) []Object {
	t.Helper()
	objs, err := DecodeAll("helm template ("+name+")", render(t, values))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// plainFiles lists the plain manifests' object files: deploy/kubernetes
// and its examples, not kustomization.yaml.
func plainFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{plainDir + "/*.yaml", plainDir + "/examples/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if filepath.Base(f) != "kustomization.yaml" {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", plainDir)
	}
	return files
}

// plainObjects decodes every plain manifest.
func plainObjects(t *testing.T) []Object {
	t.Helper()
	var objs []Object
	for _, f := range plainFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		o, err := DecodeAll(rel, b)
		if err != nil {
			t.Error(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

func reportAll(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

func TestHelmLint(t *testing.T) {
	for _, r := range renders {
		t.Run(r.name, func(t *testing.T) {
			out, stderr, err := runErr(helm(t), append([]string{"lint", "--strict", chartDir}, valuesArgs(r.values)...)...)
			if err != nil {
				t.Fatal(err)
			}
			// In lint mode a template's fail only logs ("funcMap fail"):
			// values the chart refuses would pass.
			if bytes.Contains(stderr, []byte("funcMap fail")) {
				t.Errorf("helm lint: the chart refuses these values:\n%s", stderr)
			}
			t.Logf("%s", out)
			// NOTES.txt renders only on install; no cluster is asked.
			out = run(t, helm(t), append([]string{"install", "logdist", chartDir, "--dry-run=client", "-n", "logs"}, valuesArgs(r.values)...)...)
			if _, notes, ok := bytes.Cut(out, []byte("\nNOTES:\n")); !ok || !bytes.Contains(notes, []byte("logdist.logs.svc")) {
				t.Errorf("helm install --dry-run=client printed no NOTES naming the agents' Service:\n%s", out)
			}
		})
	}
}

// Every rendered object decodes strictly and the set holds Check's
// invariants.
func TestHelmTemplate(t *testing.T) {
	for _, r := range renders {
		t.Run(r.name, func(t *testing.T) {
			objs := renderObjects(t, r.name, r.values)
			t.Logf("%d objects: %v", len(objs), Kinds(objs))
			reportAll(t, Check(objs))
		})
	}
}

// Values the chart refuses, each with a message saying what to do.
func TestHelmTemplateRefuses(t *testing.T) {
	f := func(want string, set ...string) {
		t.Helper()
		args := []string{"template", "logdist", chartDir}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		_, _, err := runErr(helm(t), args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("helm template --set %v: error %v, want one containing %q", set, err, want)
		}
	}
	f("config.listen: the chart sets listen itself", "config.listen=:9000")
	f("config.drain-timeout: the chart sets", "config.drain-timeout=1m")
	f("analyzers: at least one analyzer", "analyzers=null")
	f("analyzers[0]: an analyzer is a map with at least addr", "analyzers[0].name=x", "analyzers[0].addr=")
	f("tls.enabled: set tls.existingSecret, or tls.cert and tls.key", "tls.enabled=true")
	f("auth.enabled: set auth.existingSecret", "auth.enabled=true")
	f("auth.mode: required, optional or off", "auth.enabled=true", "auth.existingSecret=x", "auth.mode=sometimes")
	f("drain.extraGraceSeconds: at least 2", "drain.extraGraceSeconds=1")
	f("tls.plaintext: false needs tls.enabled", "tls.plaintext=false")
	f("upstreamTLS.enabled: set upstreamTLS.existingSecret", "upstreamTLS.enabled=true")
	f("configReload: watch or rollout", "configReload=restart")
}

// Every plain manifest decodes strictly and together they hold Check's
// invariants.
func TestPlainManifests(t *testing.T) {
	objs := plainObjects(t)
	t.Logf("%d objects: %v", len(objs), Kinds(objs))
	if t.Failed() {
		t.FailNow() // a set missing what did not decode would report more, falsely
	}
	reportAll(t, Check(objs))
}

// kustomization.yaml lists every object file of deploy/kubernetes, and
// only those; examples/ stays out of it.
func TestKustomization(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, plainDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	var files []string
	for _, f := range plainFiles(t) {
		if filepath.Dir(f) == filepath.Join(root, plainDir) {
			files = append(files, filepath.Base(f))
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, files) {
		t.Errorf("kustomization.yaml resources %v, want the files %v", got, files)
	}
}

// kubectl kustomize (what kubectl apply -k applies) builds the objects of
// the listed files. kubectl is used when it is installed, never installed
// here: Debian's kubernetes-client is 1.20, too old to judge by.
func TestKustomize(t *testing.T) {
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: kubectl kustomize deploy/kubernetes not checked (TestKustomization checks the resource list)")
	}
	objs, err := DecodeAll("kubectl kustomize", run(t, bin, "kustomize", plainDir))
	if err != nil {
		t.Fatal(err)
	}
	name := func(o Object) string { return o.Kind + " " + o.Name }
	var got, want []string
	for _, o := range objs {
		got = append(got, name(o))
	}
	for _, o := range plainObjects(t) {
		if !strings.Contains(o.Source, "/examples/") {
			want = append(want, name(o))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kubectl kustomize %s: %v, want %v", plainDir, got, want)
	}
}

// The chart, with everything on, renders the kinds the plain manifests
// have, and its default render no kind they lack.
func TestSameKinds(t *testing.T) {
	plain := Kinds(plainObjects(t))
	for _, r := range renders {
		got := Kinds(renderObjects(t, r.name, r.values))
		if r.name == "all-on" && !slices.Equal(got, plain) {
			t.Errorf("helm template (%s) has kinds %v, the plain manifests %v", r.name, got, plain)
		}
		for _, k := range got {
			if !slices.Contains(plain, k) {
				t.Errorf("helm template (%s) has a %s, the plain manifests none", r.name, k)
			}
		}
	}
}

// yamllint with deploy/.yamllint (relaxed, no line length, warnings
// fail) on every YAML file written by hand; Helm's output with the same
// rules, less the indentation of sequences: toYaml writes them unindented
// inside templates that indent theirs.
func TestYamllint(t *testing.T) {
	bin := need(t, "yamllint", "yamllint")
	files := plainFiles(t)
	files = append(files, filepath.Join(root, plainDir, "kustomization.yaml"),
		filepath.Join(root, chartDir, "Chart.yaml"), filepath.Join(root, chartDir, "values.yaml"))
	m, _ := filepath.Glob(filepath.Join(root, "deploy/k8scheck/testdata/*.yaml"))
	files = append(files, m...)
	run(t, bin, append([]string{"--strict", "-f", "parsable", "-c", "deploy/.yamllint"}, files...)...)

	var rendered []string
	for _, r := range renders {
		f := filepath.Join(t.TempDir(), "helm-template-"+r.name+".yaml")
		if err := os.WriteFile(f, render(t, r.values), 0o644); err != nil {
			t.Fatal(err)
		}
		rendered = append(rendered, f)
	}
	const renderedRules = "{extends: relaxed, rules: {line-length: disable, indentation: {spaces: consistent, indent-sequences: whatever}}}"
	run(t, bin, append([]string{"--strict", "-f", "parsable", "-d", renderedRules}, rendered...)...)
}

// logdist --check-config accepts each installation's config file with
// the Deployment's flags: the flags exist, their values parse, and the
// file's keys and analyzers are what logdist reads. Files the flags name
// are given: certificates made here, the auth file from its Secret when
// the installation has it.
func TestCheckConfig(t *testing.T) {
	bin := logdist(t)
	certPEM, keyPEM := selfSigned(t)
	sets := map[string][]Object{"plain": plainObjects(t)}
	for _, r := range renders {
		sets[r.name] = renderObjects(t, r.name, r.values)
	}
	for name, objs := range sets {
		t.Run(name, func(t *testing.T) {
			args, file, err := command(objs)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var cfg string
			var checkArgs []string
			for _, a := range args {
				flag, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				kind, isFile := FileFlags[flag]
				if !isFile || value == "" {
					checkArgs = append(checkArgs, a)
					continue
				}
				content, found := file(value)
				switch kind {
				case "cert":
					content = certPEM
				case "key":
					content = keyPEM
				case "config", "auth":
					if !found {
						t.Fatalf("--%s=%s: its content is not among the objects", flag, value)
					}
				default:
					t.Fatalf("--%s: the test does not know what to give it", flag)
				}
				f := filepath.Join(dir, strings.ReplaceAll(flag, "-", "_")+"_"+filepath.Base(value))
				if err := os.WriteFile(f, content, 0o600); err != nil {
					t.Fatal(err)
				}
				if flag == "config" {
					cfg = f
					continue
				}
				checkArgs = append(checkArgs, "--"+flag+"="+f)
			}
			if cfg == "" {
				t.Fatal("no --config")
			}
			out := run(t, bin, append([]string{"--check-config", cfg}, checkArgs...)...)
			first, _, _ := strings.Cut(string(out), "\n")
			t.Logf("logdist --check-config %s: %s", strings.Join(checkArgs, " "), first)
		})
	}
}

// selfSigned makes a certificate that serves as server, client and CA
// certificate, and its key, as PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "logdist"},
		DNSNames:              []string{"logdist"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
