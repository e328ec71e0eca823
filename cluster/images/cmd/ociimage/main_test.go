package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"wsring.dev/cluster/images/internal/oci"
)

// runCLI runs the command line and returns its exit code and output.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// copyFile copies src to dir/name with mode 0755.
func copyFile(t *testing.T, src, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// inspect runs the inspect subcommand and decodes its JSON.
func inspect(t *testing.T, archive string) oci.Inspection {
	t.Helper()
	code, stdout, stderr := runCLI("inspect", "--archive", archive)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s", code, stderr)
	}
	var info oci.Inspection
	if err := json.Unmarshal([]byte(stdout), &info); err != nil {
		t.Fatalf("inspect output is not JSON: %v\n%s", err, stdout)
	}
	return info
}

// file returns the inspected file at p.
func file(info oci.Inspection, p string) *oci.FileInfo {
	for i := range info.Files {
		if info.Files[i].Path == p {
			return &info.Files[i]
		}
	}
	return nil
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "usage:"},
		{"unknown subcommand", []string{"build"}, `unknown subcommand "build"`},
		{"unknown flag", []string{"inspect", "--nope"}, "flag provided but not defined: -nope"},
		{"missing flag", []string{"binary", "--binary", "/bin/true", "--out", "x.tar"}, "ociimage: binary: --tag is required"},
		{"stray argument", []string{"inspect", "--archive", "a.tar", "extra"}, `unexpected argument "extra"`},
		{"tag without tag", []string{"binary", "--binary", "/bin/true", "--tag", "redis", "--out", "x.tar"}, `--tag "redis" has no :tag`},
		{"bad build-arg", []string{"dockerfile", "--dockerfile", "d", "--binary", "b", "--tag", "a:1", "--out", "o", "--build-arg", "X"}, `--build-arg "X" is not KEY=value`},
		{"bad label", []string{"binary", "--binary", "/bin/true", "--tag", "a:1", "--out", "o", "--label", "k"}, `--label "k" is not KEY=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if code, stdout, _ := runCLI("help"); code != 0 || !strings.Contains(stdout, "ociimage dockerfile") {
		t.Fatalf("help: exit %d, %q", code, stdout)
	}
}

func TestDockerfileErrorsExitOne(t *testing.T) {
	dir := t.TempDir()
	dockerfile := filepath.Join(dir, "app.Dockerfile")
	text := "FROM rust AS builder\nFROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=builder /out/app /app\nRUN true\n"
	if err := os.WriteFile(dockerfile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := copyFile(t, "/bin/true", dir, "app")
	out := filepath.Join(dir, "app.tar")
	code, _, stderr := runCLI("dockerfile", "--dockerfile", dockerfile, "--binary", binary, "--tag", "example.com/app:1", "--out", out)
	want := "ociimage: " + dockerfile + ":4: RUN in the final stage cannot be reproduced without a Docker engine\n"
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("an archive was written despite the error: %v", err)
	}
	code, _, stderr = runCLI("binary", "--binary", filepath.Join(dir, "missing"), "--tag", "example.com/app:1", "--out", out)
	if code != 1 || !strings.Contains(stderr, "missing: no such file or directory") {
		t.Fatalf("missing binary: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI("inspect", "--archive", dockerfile)
	if code != 1 || !strings.Contains(stderr, dockerfile+": ") {
		t.Fatalf("inspect of a non-archive: exit %d, stderr %q", code, stderr)
	}
}

func TestDockerfileBuildAndInspect(t *testing.T) {
	dir := t.TempDir()
	binary := copyFile(t, "/bin/true", dir, "ws-pod")
	out := filepath.Join(dir, "images", "ws-pod.tar")
	code, stdout, stderr := runCLI("dockerfile", "--dockerfile", "../../../../docker/ws-pod.Dockerfile",
		"--binary", binary, "--tag", "ghcr.io/wsring/ws-pod:0.1.0", "--out", out, "--build-arg", "VERSION=0.2.0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, out+": ghcr.io/wsring/ws-pod:0.1.0 sha256:") {
		t.Errorf("stdout %q", stdout)
	}
	info := inspect(t, out)
	if info.Tag != "ghcr.io/wsring/ws-pod:0.1.0" || info.RefName != "0.1.0" {
		t.Errorf("tag %q ref %q", info.Tag, info.RefName)
	}
	c := info.Config
	if c.User != "65532:65532" || !reflect.DeepEqual(c.Entrypoint, []string{"/usr/local/bin/ws-pod"}) ||
		!reflect.DeepEqual(c.ExposedPorts, []string{"8081/tcp", "9091/tcp"}) ||
		c.Labels["org.opencontainers.image.version"] != "0.2.0" || c.WorkingDir != "/home/nonroot" {
		t.Errorf("config %+v", c)
	}
	if f := file(info, "/usr/local/bin/ws-pod"); f == nil || f.Mode != "0755" || f.Type != "file" {
		t.Errorf("binary entry %+v", f)
	}
	if f := file(info, "/home/nonroot"); f == nil || f.UID != 65532 || f.Mode != "0700" {
		t.Errorf("/home/nonroot entry %+v", f)
	}
}

func TestBinaryBuildAndInspect(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "redis.tar")
	code, _, stderr := runCLI("binary", "--binary", "/bin/true", "--dest", "/usr/local/bin/redis-server",
		"--tag", "redis:7.4-alpine", "--user", "999:999", "--expose", "6379",
		"--label", "org.opencontainers.image.title=redis-stand-in", "--cmd", "--save", "--cmd", "",
		"--env", "MODE=test", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	info := inspect(t, out)
	if info.Tag != "docker.io/library/redis:7.4-alpine" || info.RefName != "7.4-alpine" {
		t.Errorf("tag %q ref %q", info.Tag, info.RefName)
	}
	c := info.Config
	want := oci.InspectConfig{
		User:         "999:999",
		Entrypoint:   []string{"/usr/local/bin/redis-server"},
		Cmd:          []string{"--save", ""},
		ExposedPorts: []string{"6379/tcp"},
		Env:          []string{oci.DefaultPath, "SSL_CERT_FILE=" + oci.CertFile, "MODE=test"},
		Labels:       map[string]string{"org.opencontainers.image.title": "redis-stand-in"},
		WorkingDir:   "/",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n got %+v\nwant %+v", c, want)
	}
	if f := file(info, "/usr/local/bin/redis-server"); f == nil || f.Mode != "0755" {
		t.Errorf("binary entry %+v", f)
	}

	// Without --dest the binary goes to /<basename>.
	out2 := filepath.Join(dir, "true.tar")
	if code, _, stderr := runCLI("binary", "--binary", "/bin/true", "--tag", "example.com/true:1", "--out", out2); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	info2 := inspect(t, out2)
	if f := file(info2, "/true"); f == nil || !reflect.DeepEqual(info2.Config.Entrypoint, []string{"/true"}) {
		t.Errorf("/true %+v, entrypoint %q", f, info2.Config.Entrypoint)
	}
}
