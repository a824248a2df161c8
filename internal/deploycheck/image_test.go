package deploycheck

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logdist/logdist/internal/testtool"
)

// podman runs podman on a storage of its own under dir (the vfs driver:
// plain directories, no overlay mounts to undo, and it works inside
// containers where overlay does not), so that the test neither needs nor
// touches the machine's images.
type podman struct {
	t    *testing.T
	bin  string
	root string
}

func (p podman) run(args ...string) ([]byte, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	global := []string{"--root", filepath.Join(p.root, "storage"), "--runroot", filepath.Join(p.root, "run"), "--storage-driver", "vfs"}
	cmd := exec.CommandContext(ctx, p.bin, append(global, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), err
}

// imageContext lays out what make image gives podman build: the four
// static binaries, the CA bundle and the empty data directory, in one
// directory (the Dockerfile's BIN=.).
func imageContext(t *testing.T) string {
	t.Helper()
	bin := staticBinaries(t)
	dir := t.TempDir()
	for _, c := range commands {
		if err := os.Link(filepath.Join(bin, c), filepath.Join(dir, c)); err != nil {
			copyFile(t, filepath.Join(bin, c), filepath.Join(dir, c), 0o755)
		}
	}
	ca := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(ca); err != nil {
		t.Skipf("no CA bundle at %s to put in the image (Debian: ca-certificates)", ca)
	}
	copyFile(t, ca, filepath.Join(dir, "ca-certificates.crt"), 0o644)
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// The Dockerfile builds, with podman, into an image that holds the four
// static binaries (the very ones built here), the CA bundle and the data
// directory, and runs as 65532:65532 with a HEALTHCHECK of logdist ctl
// health. The image is inspected, not run: this sandbox's rlimits make
// crun refuse to start any container (setrlimit RLIMIT_NOFILE: Operation
// not permitted), so podman run is no test here.
//
// Where podman cannot build at all (a probe image of one file fails: no
// user namespaces for rootless podman, no storage), the test is skipped
// with podman's reason; once the probe builds, a failure is the
// Dockerfile's.
func TestImageBuild(t *testing.T) {
	pm := podman{t: t, bin: testtool.Need(t, "podman", "podman"), root: t.TempDir()}
	ctx := imageContext(t)
	// The storage goes with the temporary directory. (Not podman system
	// reset: as root it also removes the machine's networks.) A rootless
	// podman's files belong to subordinate ids the test cannot remove but
	// inside its user namespace.
	defer func() {
		pm.run("rmi", "--all", "--force")
		if os.Geteuid() != 0 {
			exec.Command(pm.bin, "unshare", "rm", "-rf", filepath.Join(pm.root, "storage")).Run()
		}
	}()

	probe := t.TempDir()
	if err := os.WriteFile(filepath.Join(probe, "Dockerfile"), []byte("FROM scratch\nCOPY Dockerfile /probe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pm.run("build", "--format", "docker", "-t", "localhost/probe:1", probe); err != nil {
		t.Skipf("podman cannot build even a one-file image here, so the Dockerfile is not built: %v", err)
	}

	const image = "localhost/logdist:deploycheck"
	start := time.Now()
	if _, err := pm.run("build", "--format", "docker", "-f", filepath.Join(repoRoot(t), "Dockerfile"),
		"--build-arg", "BIN=.", "-t", image, ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("podman build of the Dockerfile: %v", time.Since(start).Round(time.Millisecond))

	out, err := pm.run("image", "inspect", image)
	if err != nil {
		t.Fatal(err)
	}
	var inspect []struct {
		Architecture string
		Os           string
		Config       struct {
			User         string
			ExposedPorts map[string]struct{}
			Entrypoint   []string
			StopSignal   string
		}
		Healthcheck struct{ Test []string } // podman puts it here, not in Config
	}
	if err := json.Unmarshal(out, &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	img := inspect[0]
	if img.Config.User != "65532:65532" {
		t.Errorf("the image runs as %q; want 65532:65532", img.Config.User)
	}
	var ports []string
	for p := range img.Config.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if want := []string{"514/udp", "7400/tcp", "7480/tcp"}; !slices.Equal(ports, want) {
		t.Errorf("the image exposes %q; want %q", ports, want)
	}
	if hc := strings.Join(img.Healthcheck.Test, " "); !strings.HasPrefix(hc, "CMD /usr/local/bin/logdist ctl --admin 127.0.0.1:7480 ") || !strings.HasSuffix(hc, " health") {
		t.Errorf("the image's HEALTHCHECK is %q; want logdist ctl health on 127.0.0.1:7480 (podman build --format docker keeps it; OCI drops it)", hc)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/usr/local/bin/logdist"}) || img.Config.StopSignal != "SIGTERM" {
		t.Errorf("the image's entrypoint is %q and stop signal %q; want /usr/local/bin/logdist and SIGTERM", img.Config.Entrypoint, img.Config.StopSignal)
	}

	// What the image holds, read from its layers (podman save), without
	// running it.
	files := imageFiles(t, pm, image)
	for _, c := range commands {
		f, ok := files["usr/local/bin/"+c]
		if !ok {
			t.Errorf("the image has no /usr/local/bin/%s", c)
			continue
		}
		if f.mode&0o111 == 0 {
			t.Errorf("/usr/local/bin/%s in the image is not executable (%v)", c, f.mode)
		}
		b, err := os.ReadFile(filepath.Join(ctx, c))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(b) != f.sum {
			t.Errorf("/usr/local/bin/%s in the image is not the static binary built here", c)
		}
	}
	if hc := img.Healthcheck.Test; len(hc) > 1 {
		if _, ok := files[strings.TrimPrefix(hc[1], "/")]; !ok {
			t.Errorf("the HEALTHCHECK runs %s, which the image does not have", hc[1])
		}
	}
	if f, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok || f.size == 0 {
		t.Error("the image has no CA bundle at /etc/ssl/certs/ca-certificates.crt")
	}
	if f, ok := files["var/lib/logdist"]; !ok || !f.dir || f.uid != 65532 || f.gid != 65532 {
		t.Errorf("/var/lib/logdist in the image: %+v; want a directory owned by 65532:65532", f)
	}
	if f := files["var/lib"]; f.uid != 0 {
		t.Errorf("/var/lib in the image belongs to %d; want root", f.uid)
	}
	var all []string
	for name := range files {
		all = append(all, name)
	}
	slices.Sort(all)
	t.Logf("the image (%s/%s) holds: %s", img.Os, img.Architecture, strings.Join(all, " "))
}

type imageFile struct {
	dir      bool
	mode     os.FileMode
	uid, gid int
	size     int64
	sum      [sha256.Size]byte
}

// imageFiles reads an image's files (the last layer's version of each)
// from podman save's docker-archive: manifest.json names the layers, in
// order, each a tar.
func imageFiles(t *testing.T, pm podman, image string) map[string]imageFile {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	if _, err := pm.run("save", "--format", "docker-archive", "-o", archive, image); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var manifest []struct{ Layers []string }
	readTar(t, archive, func(h *tar.Header, r io.Reader) {
		switch {
		case h.Name == "manifest.json":
			if err := json.NewDecoder(r).Decode(&manifest); err != nil {
				t.Fatalf("podman save: manifest.json: %v", err)
			}
		case h.Typeflag == tar.TypeReg && strings.HasSuffix(h.Name, ".tar") && !strings.Contains(h.Name, "/"):
			f, err := os.Create(filepath.Join(dir, h.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := io.Copy(f, r); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("podman save: manifest.json names %d images; want one, with layers", len(manifest))
	}
	files := map[string]imageFile{}
	for _, layer := range manifest[0].Layers {
		tf := filepath.Join(dir, filepath.Base(layer))
		if _, err := os.Stat(tf); err != nil {
			t.Fatalf("podman save: layer %s is not in the archive", layer)
		}
		readTar(t, tf, func(h *tar.Header, r io.Reader) {
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			f := imageFile{dir: h.Typeflag == tar.TypeDir, mode: h.FileInfo().Mode(), uid: h.Uid, gid: h.Gid, size: h.Size}
			sum := sha256.New()
			if _, err := io.Copy(sum, r); err != nil {
				t.Fatal(err)
			}
			copy(f.sum[:], sum.Sum(nil))
			files[name] = f
		})
	}
	return files
}

// readTar calls fn for each entry of a tar file, gzipped or not.
func readTar(t *testing.T, path string, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn(h, tr)
	}
}
