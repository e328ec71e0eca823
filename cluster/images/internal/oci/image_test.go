package oci

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// buildArchive writes img to memory.
func buildArchive(t *testing.T, img *Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// interpreter returns a binary's PT_INTERP, "" for a static one.
func interpreter(t *testing.T, binary string) string {
	t.Helper()
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

func TestDynamicBinaryArchive(t *testing.T) {
	const binary = "/bin/true"
	img, err := BinaryImage(BinaryOptions{
		Binary: binary, Dest: "/usr/local/bin/true", Ref: "example.com/test/true:1",
		Ports: []string{"6379"}, Labels: map[string]string{"k": "v"}, Cmd: []string{"--flag"},
		Env: []string{"A=b"},
	}, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	a := readArchive(t, buildArchive(t, img))

	want := map[string]string{AnnotationImageName: "example.com/test/true:1", AnnotationRefName: "1"}
	if !reflect.DeepEqual(a.index.Manifests[0].Annotations, want) {
		t.Errorf("index annotations %v, want %v", a.index.Manifests[0].Annotations, want)
	}
	c := a.config
	if c.Architecture != "amd64" || c.OS != "linux" || c.Created != "1970-01-01T00:00:00Z" || len(c.History) != 1 {
		t.Errorf("config header: %+v", c)
	}
	wantConfig := Config{
		User:         "65532:65532",
		ExposedPorts: map[string]struct{}{"6379/tcp": {}},
		Env:          []string{DefaultPath, "SSL_CERT_FILE=" + CertFile, "A=b"},
		Entrypoint:   []string{"/usr/local/bin/true"},
		Cmd:          []string{"--flag"},
		WorkingDir:   "/",
		Labels:       map[string]string{"k": "v"},
	}
	if !reflect.DeepEqual(c.Config, wantConfig) {
		t.Errorf("config\n got %+v\nwant %+v", c.Config, wantConfig)
	}

	host, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := a.entry("/usr/local/bin/true")
	if bin == nil || bin.hdr.Typeflag != tar.TypeReg || bin.hdr.Mode != 0o755 || !bytes.Equal(bin.data, host) {
		t.Fatalf("binary entry %+v", bin)
	}
	// The loader the kernel will look for, and libc at the path ldd gave,
	// must both resolve to real files inside the image.
	loader := interpreter(t, binary)
	if loader == "" {
		t.Fatal("/bin/true is static on this host; the test needs a dynamic binary")
	}
	if e := a.resolve(t, loader); len(e.data) == 0 {
		t.Errorf("loader %s is empty", loader)
	}
	libs, err := SharedLibraries(binary)
	if err != nil {
		t.Fatal(err)
	}
	var sawLibc bool
	for _, lib := range libs {
		e := a.resolve(t, lib)
		hostLib, err := os.ReadFile(lib)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.data, hostLib) {
			t.Errorf("%s differs from the host's", lib)
		}
		sawLibc = sawLibc || filepath.Base(lib) == "libc.so.6"
	}
	if !sawLibc {
		t.Errorf("ldd listed no libc.so.6: %v", libs)
	}
	checkBase(t, a)
}

func TestStaticBinaryArchive(t *testing.T) {
	pause := pauseBinary(t)
	img, err := BinaryImage(BinaryOptions{Binary: pause, Ref: "registry.k8s.io/pause:3.10", User: "65535:65535"}, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	a := readArchive(t, buildArchive(t, img))
	if e := a.entry("/pause"); e == nil || e.hdr.Mode != 0o755 {
		t.Fatalf("/pause missing or not 0755: %+v", e)
	}
	if !reflect.DeepEqual(a.config.Config.Entrypoint, []string{"/pause"}) || a.config.Config.User != "65535:65535" {
		t.Errorf("config %+v", a.config.Config)
	}
	for _, f := range a.layer {
		if strings.Contains(f.hdr.Name, ".so") || strings.HasPrefix(f.hdr.Name, "lib") {
			t.Errorf("static binary image has %s", f.hdr.Name)
		}
	}
	checkBase(t, a)
}

// checkBase checks the distroless-like base files and the layer's
// determinism rules in any archive.
func checkBase(t *testing.T, a *archive) {
	t.Helper()
	type meta struct {
		typ      byte
		mode     int64
		uid, gid int
	}
	want := map[string]meta{
		"/etc":               {tar.TypeDir, 0o755, 0, 0},
		"/tmp":               {tar.TypeDir, 0o1777, 0, 0},
		"/home/nonroot":      {tar.TypeDir, 0o700, 65532, 65532},
		"/usr/local/bin":     {tar.TypeDir, 0o755, 0, 0},
		"/etc/passwd":        {tar.TypeReg, 0o644, 0, 0},
		"/etc/group":         {tar.TypeReg, 0o644, 0, 0},
		"/etc/nsswitch.conf": {tar.TypeReg, 0o644, 0, 0},
	}
	for p, w := range want {
		e := a.entry(p)
		if e == nil {
			t.Errorf("%s missing", p)
			continue
		}
		got := meta{e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid}
		if got != w {
			t.Errorf("%s: %+v, want %+v", p, got, w)
		}
	}
	for _, line := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "nonroot:x:65532:65532:nonroot:/home/nonroot:"} {
		if e := a.entry("/etc/passwd"); e != nil && !strings.Contains(string(e.data), "\n"+line) && !strings.HasPrefix(string(e.data), line) {
			t.Errorf("/etc/passwd has no %q line", line)
		}
	}
	if e := a.entry("/etc/group"); e != nil && !strings.Contains(string(e.data), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no nonroot")
	}
	if e := a.entry("/etc/nsswitch.conf"); e != nil && !strings.Contains(string(e.data), "hosts: files dns\n") {
		t.Errorf("nsswitch.conf: %q", e.data)
	}
	if host, err := os.ReadFile(CertFile); err == nil {
		if e := a.resolve(t, CertFile); !bytes.Equal(e.data, host) {
			t.Errorf("%s differs from the host's", CertFile)
		}
	}
	var names []string
	for _, f := range a.layer {
		names = append(names, f.hdr.Name)
		if !f.hdr.ModTime.Equal(epochZero) || f.hdr.Uname != "" || f.hdr.Gname != "" {
			t.Errorf("%s: mtime %v uname %q gname %q, want fixed metadata", f.hdr.Name, f.hdr.ModTime, f.hdr.Uname, f.hdr.Gname)
		}
		if strings.HasPrefix(f.hdr.Name, "/") || strings.HasPrefix(f.hdr.Name, "./") {
			t.Errorf("entry name %q is not relative", f.hdr.Name)
		}
		if dir := filepath.Dir(strings.TrimSuffix(f.hdr.Name, "/")); dir != "." && a.entry("/"+dir) == nil {
			t.Errorf("%s: parent %s missing", f.hdr.Name, dir)
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("layer entries are not sorted: %v", names)
	}
}

func TestArchiveIsReproducible(t *testing.T) {
	build := func() []byte {
		img, err := BinaryImage(BinaryOptions{Binary: "/bin/true", Ref: "example.com/true:1"}, epochZero)
		if err != nil {
			t.Fatal(err)
		}
		return buildArchive(t, img)
	}
	first, second := build(), build()
	if !bytes.Equal(first, second) {
		t.Fatal("two builds of the same inputs differ")
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	epoch, err := Epoch()
	if err != nil {
		t.Fatal(err)
	}
	if !epoch.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("Epoch() = %v", epoch)
	}
	img, err := BinaryImage(BinaryOptions{Binary: "/bin/true", Ref: "example.com/true:1"}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	a := readArchive(t, buildArchive(t, img))
	if a.config.Created != "2023-11-14T22:13:20Z" || !a.layer[0].hdr.ModTime.Equal(epoch) {
		t.Fatalf("SOURCE_DATE_EPOCH not used: created %s, mtime %v", a.config.Created, a.layer[0].hdr.ModTime)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := Epoch(); err == nil {
		t.Fatal("SOURCE_DATE_EPOCH=yesterday accepted")
	}
}

func TestDockerfileImage(t *testing.T) {
	file := filepath.Join(dockerDir, "router.Dockerfile")
	_, stage := parseDockerfileFile(t, file)
	binary := standIn(t, "/bin/true", "wsring-router")
	img, err := DockerfileImage(file, stage, binary, "ghcr.io/wsring/wsring-router:0.1.0", epochZero)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sub", "router.tar")
	digest, err := WriteArchiveFile(out, img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	if info.Tag != "ghcr.io/wsring/wsring-router:0.1.0" || info.RefName != "0.1.0" || info.ManifestDigest != digest {
		t.Errorf("tag %q ref %q digest %q (written %q)", info.Tag, info.RefName, info.ManifestDigest, digest)
	}
	c := info.Config
	if c.User != "65532:65532" || c.WorkingDir != "/home/nonroot" ||
		!reflect.DeepEqual(c.Entrypoint, []string{"/usr/local/bin/wsring-router"}) ||
		!reflect.DeepEqual(c.ExposedPorts, []string{"8080/tcp", "9090/tcp"}) ||
		c.Labels["org.opencontainers.image.title"] != "wsring-router" {
		t.Errorf("config %+v", c)
	}
	var found bool
	for _, fi := range info.Files {
		if fi.Path == "/usr/local/bin/wsring-router" {
			found = fi.Type == "file" && fi.Mode == "0755" && fi.UID == 0
		}
		if fi.Path == "/tmp" && fi.Mode != "1777" {
			t.Errorf("/tmp mode %s", fi.Mode)
		}
	}
	if !found {
		t.Error("/usr/local/bin/wsring-router missing or not a 0755 root file")
	}

	// The binary must be the one the COPY names.
	wrong := standIn(t, "/bin/true", "ws-pod")
	_, err = DockerfileImage(file, stage, wrong, "ghcr.io/wsring/wsring-router:0.1.0", epochZero)
	if err == nil || !strings.Contains(err.Error(), "router.Dockerfile:") || !strings.Contains(err.Error(), "the file names differ") {
		t.Errorf("wrong binary: error %v", err)
	}
}

func TestInspectRejectsTampering(t *testing.T) {
	img, err := BinaryImage(BinaryOptions{Binary: "/bin/true", Ref: "example.com/true:1"}, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	good := buildArchive(t, img)
	a := readArchive(t, good)
	layerName := blobPath(a.manifest.Layers[0].Digest)

	rewrite := func(change func(files map[string][]byte)) []byte {
		files := map[string][]byte{}
		for k, v := range a.files {
			files[k] = append([]byte(nil), v...)
		}
		change(files)
		var buf bytes.Buffer
		if err := writeLayout(&buf, files, epochZero); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name   string
		change func(map[string][]byte)
		want   string
	}{
		{"flipped byte", func(f map[string][]byte) { f[layerName][len(f[layerName])/2] ^= 0xff }, "content hashes to"},
		{"missing blob", func(f map[string][]byte) { delete(f, layerName) }, "is missing from the archive"},
		{"no oci-layout", func(f map[string][]byte) { delete(f, "oci-layout") }, "has no oci-layout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(bytes.NewReader(rewrite(tt.change)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := Inspect(bytes.NewReader(rewrite(func(map[string][]byte) {}))); err != nil {
		t.Fatalf("untouched archive: %v", err)
	}
}

func TestNormalizeRef(t *testing.T) {
	valid := []struct{ in, full, tag string }{
		{"ghcr.io/wsring/wsring-router:0.1.0", "ghcr.io/wsring/wsring-router:0.1.0", "0.1.0"},
		{"redis:7.4-alpine", "docker.io/library/redis:7.4-alpine", "7.4-alpine"},
		{"bitnami/redis:7", "docker.io/bitnami/redis:7", "7"},
		{"docker.io/library/redis:7.4-alpine", "docker.io/library/redis:7.4-alpine", "7.4-alpine"},
		{"localhost:5000/x:1", "localhost:5000/x:1", "1"},
		{"localhost/x:1", "localhost/x:1", "1"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "3.10"},
	}
	for _, tt := range valid {
		full, tag, err := NormalizeRef(tt.in)
		if err != nil || full != tt.full || tag != tt.tag {
			t.Errorf("NormalizeRef(%q) = %q, %q, %v; want %q, %q", tt.in, full, tag, err, tt.full, tt.tag)
		}
	}
	refused := map[string]string{
		"localhost:5000/x": "has no :tag",
		"redis":            "has no :tag",
		"redis@sha256:abc": "digests are not supported",
		"Redis:7":          "lowercase",
		"redis:-x":         "not a valid tag",
	}
	for in, want := range refused {
		if _, _, err := NormalizeRef(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeRef(%q) error %v, want %q", in, err, want)
		}
	}
}
