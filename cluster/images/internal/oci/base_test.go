package oci

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f01)\n" +
		"\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f02)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f03)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f03)\n" +
		"\tlinux-gate.so.1 =>  (0x00007f04)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f05)\n"
	got, err := parseLdd("bin", out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/x86_64-linux-gnu/libssl.so.3",
		"/lib/x86_64-linux-gnu/libgcc_s.so.1",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseLdd = %q\nwant %q", got, want)
	}

	_, err = parseLdd("bin", "\tlibmissing.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")
	if err == nil || !strings.Contains(err.Error(), "libmissing.so.1 is not installed") {
		t.Fatalf("missing library: error %v", err)
	}
	if _, err := parseLdd("bin", "something else\n"); err == nil {
		t.Fatal("output without libraries accepted")
	}
}

func TestSharedLibraries(t *testing.T) {
	libs, err := SharedLibraries("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for _, l := range libs {
		libc = libc || filepath.Base(l) == "libc.so.6"
		loader = loader || strings.HasPrefix(filepath.Base(l), "ld-linux")
	}
	if !libc || !loader {
		t.Fatalf("/bin/true: %q lacks libc or the loader", libs)
	}

	static, err := SharedLibraries(pauseBinary(t))
	if err != nil || static != nil {
		t.Fatalf("static pause: %q, %v; want no libraries", static, err)
	}
}

func TestCheckBinary(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"/bin/true", ""},
		{script, "is not an ELF executable"},
		{filepath.Join(dir, "missing"), "no such file"},
	}
	for _, tt := range tests {
		err := CheckBinary(tt.path)
		if tt.want == "" {
			if err != nil {
				t.Errorf("CheckBinary(%s): %v", tt.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckBinary(%s) error %v, want %q", tt.path, err, tt.want)
		}
	}
	if _, err := BuildRootfs(script, "/x"); err == nil {
		t.Error("BuildRootfs accepted a shell script")
	}
}

func TestBinaryImageOptions(t *testing.T) {
	tests := []struct {
		name string
		opts BinaryOptions
		want string
	}{
		{"bad user", BinaryOptions{User: "redis"}, `--user redis: user "redis" is neither numeric`},
		{"bad port", BinaryOptions{Ports: []string{"http"}}, "--expose http: not a port number"},
		{"bad env", BinaryOptions{Env: []string{"NOVALUE"}}, `--env "NOVALUE" is not KEY=value`},
		{"relative workdir", BinaryOptions{WorkingDir: "data"}, "--workdir data: not an absolute path"},
		{"relative dest", BinaryOptions{Dest: "bin/true"}, "destination bin/true is not an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Binary, tt.opts.Ref = "/bin/true", "example.com/x:1"
			_, err := BinaryImage(tt.opts, epochZero)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	img, err := BinaryImage(BinaryOptions{Binary: "/bin/true", Ref: "example.com/x:1", WorkingDir: "/data", Env: []string{"PATH=/bin"}}, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	if e := img.Tree.entries["/data"]; e == nil || e.kind != kindDir {
		t.Error("--workdir /data was not created")
	}
	if img.Config.Env[0] != "PATH=/bin" || len(img.Config.Env) != 2 {
		t.Errorf("--env PATH did not replace the default: %q", img.Config.Env)
	}
}
