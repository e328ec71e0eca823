package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// moduleRoot is the images module, two levels up from this package.
const moduleRoot = "../.."

// Shared by the tests that need the static pause binary: it is built once.
var (
	pauseOnce sync.Once
	pausePath string
	pauseErr  error
	pauseDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pauseDir != "" {
		os.RemoveAll(pauseDir)
	}
	os.Exit(code)
}

// parseDockerfileFile reads and parses the Dockerfile at path (no build
// args), failing the test on any error; it returns the text and the final
// stage.
func parseDockerfileFile(t *testing.T, path string) ([]byte, *Stage) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stage, err := ParseDockerfile(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data, stage
}

// pauseBinary builds cmd/pause with CGO_ENABLED=0, as the cluster does,
// and returns its path: a real static binary for the archive tests.
func pauseBinary(t *testing.T) string {
	t.Helper()
	pauseOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			pauseErr = err
			return
		}
		pauseDir, pauseErr = os.MkdirTemp("", "ociimage-pause-")
		if pauseErr != nil {
			return
		}
		pausePath = filepath.Join(pauseDir, "pause")
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s", "-o", pausePath, "./cmd/pause")
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pauseErr = errors.New(err.Error() + ": " + string(out))
		}
	})
	if pauseErr != nil {
		t.Skipf("cannot build cmd/pause: %v", pauseErr)
	}
	return pausePath
}

// standIn copies a host program under another name, so that a real
// Dockerfile (whose COPY names wsring-router) can be built around it.
func standIn(t *testing.T, src, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// archive is an OCI layout tar read back with archive/tar, independently
// of Inspect, with every digest checked.
type archive struct {
	files    map[string][]byte
	index    Index
	manifest Manifest
	config   ImageConfig
	layer    []layerFile // in tar order
	diffID   string
}

// layerFile is one entry of the layer, with its content for files.
type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// readArchive parses data and fails the test on any mismatch between a
// blob, its name and its descriptor.
func readArchive(t *testing.T, data []byte) *archive {
	t.Helper()
	a := &archive{files: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			a.files[h.Name] = b
		}
	}
	if got := string(a.files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", got)
	}
	if err := json.Unmarshal(a.files["index.json"], &a.index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(a.index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(a.index.Manifests))
	}
	mdesc := a.index.Manifests[0]
	if mdesc.MediaType != MediaTypeManifest {
		t.Fatalf("manifest media type %q", mdesc.MediaType)
	}
	jsonBlob(t, a.files, mdesc, &a.manifest)
	if a.manifest.SchemaVersion != 2 || a.manifest.MediaType != MediaTypeManifest {
		t.Fatalf("manifest header %+v", a.manifest)
	}
	if a.manifest.Config.MediaType != MediaTypeConfig {
		t.Fatalf("config media type %q", a.manifest.Config.MediaType)
	}
	jsonBlob(t, a.files, a.manifest.Config, &a.config)
	if len(a.manifest.Layers) != 1 || a.manifest.Layers[0].MediaType != MediaTypeLayer {
		t.Fatalf("layers %+v", a.manifest.Layers)
	}
	gzData := checkedBlob(t, a.files, a.manifest.Layers[0])
	zr, err := gzip.NewReader(bytes.NewReader(gzData))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	a.diffID = digestOf(raw)
	if a.config.RootFS.Type != "layers" || len(a.config.RootFS.DiffIDs) != 1 || a.config.RootFS.DiffIDs[0] != a.diffID {
		t.Fatalf("rootfs %+v, uncompressed layer is %s", a.config.RootFS, a.diffID)
	}
	lr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(lr)
		if err != nil {
			t.Fatal(err)
		}
		a.layer = append(a.layer, layerFile{hdr: h, data: b})
	}
	return a
}

// checkedBlob returns the blob of d after checking its name and size.
func checkedBlob(t *testing.T, files map[string][]byte, d Descriptor) []byte {
	t.Helper()
	data, ok := files[blobPath(d.Digest)]
	if !ok {
		t.Fatalf("blob %s missing", d.Digest)
	}
	if got := digestOf(data); got != d.Digest {
		t.Fatalf("blob %s hashes to %s", d.Digest, got)
	}
	if int64(len(data)) != d.Size {
		t.Fatalf("blob %s has %d bytes, descriptor says %d", d.Digest, len(data), d.Size)
	}
	return data
}

// jsonBlob decodes a checked JSON blob.
func jsonBlob(t *testing.T, files map[string][]byte, d Descriptor, v any) {
	t.Helper()
	if err := json.Unmarshal(checkedBlob(t, files, d), v); err != nil {
		t.Fatalf("blob %s: %v", d.Digest, err)
	}
}

// entry returns the layer entry at absolute path p, or nil.
func (a *archive) entry(p string) *layerFile {
	name := strings.TrimPrefix(p, "/")
	for i := range a.layer {
		if strings.TrimSuffix(a.layer[i].hdr.Name, "/") == name {
			return &a.layer[i]
		}
	}
	return nil
}

// resolve follows symlinks inside the layer, as the kernel would inside
// the container, and returns the regular file that p names.
func (a *archive) resolve(t *testing.T, p string) *layerFile {
	t.Helper()
	for hops := 0; hops < maxSymlinks; hops++ {
		parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
		cur := "/"
		restarted := false
		for i, part := range parts {
			next := path.Join(cur, part)
			e := a.entry(next)
			if e == nil {
				t.Fatalf("%s: %s is not in the image", p, next)
			}
			if e.hdr.Typeflag == tar.TypeSymlink {
				target := e.hdr.Linkname
				if !path.IsAbs(target) {
					target = path.Join(cur, target)
				}
				p = path.Join(append([]string{target}, parts[i+1:]...)...)
				restarted = true
				break
			}
			if i == len(parts)-1 {
				return e
			}
			cur = next
		}
		if !restarted {
			break
		}
	}
	t.Fatalf("%s: does not resolve to a file", p)
	return nil
}

// epochZero is the timestamp used when SOURCE_DATE_EPOCH is unset.
var epochZero = time.Unix(0, 0).UTC()
