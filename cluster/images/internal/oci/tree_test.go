package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost lays out a merged-/usr style tree under a temporary directory:
//
//	lib -> usr/lib                       (relative directory link)
//	abs -> <root>/usr/lib                (absolute directory link)
//	usr/lib/libfoo.so.1 -> libfoo.so.1.2 (library link)
//	usr/lib/libfoo.so.1.2                (the file, mode 0644)
//	loop -> loop
func fakeHost(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/lib/libfoo.so.1.2"), []byte("elf"), 0o644))
	must(os.Symlink("libfoo.so.1.2", filepath.Join(root, "usr/lib/libfoo.so.1")))
	must(os.Symlink("usr/lib", filepath.Join(root, "lib")))
	must(os.Symlink(filepath.Join(root, "usr/lib"), filepath.Join(root, "abs")))
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	return root
}

func TestAddHostPathMirrorsSymlinks(t *testing.T) {
	root := fakeHost(t)
	tree := NewTree()
	if err := tree.AddHostPath(root + "/lib/libfoo.so.1"); err != nil {
		t.Fatal(err)
	}
	// The same library through another path adds only the new link.
	if err := tree.AddHostPath(root + "/abs/libfoo.so.1"); err != nil {
		t.Fatal(err)
	}
	want := map[string]entryKind{
		root + "/lib":                   kindSymlink,
		root + "/abs":                   kindSymlink,
		root + "/usr":                   kindDir,
		root + "/usr/lib":               kindDir,
		root + "/usr/lib/libfoo.so.1":   kindSymlink,
		root + "/usr/lib/libfoo.so.1.2": kindFile,
	}
	for p, kind := range want {
		e := tree.entries[p]
		if e == nil || e.kind != kind {
			t.Errorf("%s: got %+v, want a %v", p, e, kind)
		}
	}
	if e := tree.entries[root+"/lib"]; e != nil && e.target != "usr/lib" {
		t.Errorf("link target %q, want the host's relative usr/lib", e.target)
	}
	if e := tree.entries[root+"/usr/lib/libfoo.so.1.2"]; e != nil && (e.mode != 0o644 || e.size != 3) {
		t.Errorf("file mode %o size %d", e.mode, e.size)
	}
	for p := range tree.entries {
		if p != "/" && !strings.HasPrefix(p, root) && !strings.HasPrefix(root, p) {
			t.Errorf("unexpected entry %s", p)
		}
	}
}

func TestAddHostPathErrors(t *testing.T) {
	root := fakeHost(t)
	tests := []struct{ path, want string }{
		{root + "/loop", "too many levels of symbolic links"},
		{root + "/missing", "no such file"},
		{root + "/usr/lib/libfoo.so.1.2/x", "not a directory"},
		{"relative/path", "not an absolute path"},
	}
	for _, tt := range tests {
		err := NewTree().AddHostPath(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddHostPath(%s) error %v, want %q", tt.path, err, tt.want)
		}
	}
}

func TestAddFileResolvesTreeSymlinks(t *testing.T) {
	root := fakeHost(t)
	tree := NewTree()
	if err := tree.AddHostPath(root + "/lib/libfoo.so.1"); err != nil {
		t.Fatal(err)
	}
	// A file placed under the /lib link lands in usr/lib, as it would if
	// the image were unpacked and the file written there.
	if err := tree.AddFile(root+"/lib/new", []byte("x"), "", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !tree.Has(root+"/usr/lib/new") || tree.Has(root+"/lib/new") {
		t.Fatal("file under a symlinked directory was not resolved through the link")
	}
	// EnsureDir through a link is satisfied by the link's target.
	if err := tree.EnsureDir(root + "/lib"); err != nil {
		t.Fatal(err)
	}
	// Conflicts are errors, not silent overwrites.
	if err := tree.AddFile(root+"/usr/lib/new", []byte("y"), "", 0o644, 0, 0); err == nil {
		t.Error("second file at the same path accepted")
	}
	if err := tree.AddDir(root+"/usr/lib/new", 0o755, 0, 0); err == nil {
		t.Error("directory over a file accepted")
	}
	if err := tree.AddFile(root+"/usr/lib/libfoo.so.1.2/sub", []byte("y"), "", 0o644, 0, 0); err == nil {
		t.Error("file under a file accepted")
	}
}

func TestAddDirMetadata(t *testing.T) {
	tree := NewTree()
	if err := tree.AddFile("/home/nonroot/.keep", []byte{}, "", 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	// The implied parent takes the explicit owner and mode.
	if err := tree.AddDir("/home/nonroot", 0o700, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	e := tree.entries["/home/nonroot"]
	if e.mode != 0o700 || e.uid != 65532 || e.gid != 65532 {
		t.Fatalf("metadata %+v", e)
	}
	// EnsureDir keeps it, a contradicting explicit AddDir is refused.
	if err := tree.EnsureDir("/home/nonroot"); err != nil || e.mode != 0o700 {
		t.Fatalf("EnsureDir changed the directory: %v %+v", err, e)
	}
	if err := tree.AddDir("/home/nonroot", 0o755, 0, 0); err == nil {
		t.Fatal("contradicting AddDir accepted")
	}
	if tree.entries["/home"].mode != 0o755 {
		t.Fatal("implied parent is not 0755")
	}
}
