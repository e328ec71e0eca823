package oci

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// maxSymlinks bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinks = 40

// entryKind is the type of a file in the image.
type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

func (k entryKind) String() string {
	switch k {
	case kindDir:
		return "directory"
	case kindFile:
		return "file"
	default:
		return "symlink"
	}
}

// entry is one file of the image's root filesystem.
type entry struct {
	path     string // absolute and clean
	kind     entryKind
	mode     int64 // permission bits, with the sticky bit for /tmp
	uid, gid int
	target   string // symlink target, as on the host
	source   string // host file to read the content from, for files
	size     int64  // expected size of source, checked when it is read
	content  []byte // inline content, for files made here
	explicit bool   // directory metadata was set on purpose, not implied
}

// Tree is an image's root filesystem, built in memory before it is written
// as a layer. Paths are absolute; parents are created as needed.
type Tree struct {
	entries map[string]*entry
}

// NewTree returns an empty tree holding only the root directory.
func NewTree() *Tree {
	return &Tree{entries: map[string]*entry{"/": {path: "/", kind: kindDir, mode: 0o755}}}
}

// AddHostPath copies the host's file at p into the tree at the same path,
// mirroring every symlink met on the way (in p's directories or at its
// end) so that both the link and its target exist in the image. On a
// merged-/usr host, /lib64/ld-linux-x86-64.so.2 thus brings the /lib64
// link, the loader's own link and the real file under /usr/lib.
func (t *Tree) AddHostPath(p string) error {
	return t.addHost(p, 0)
}

// addHost walks p component by component on the host; hops counts the
// symlinks followed so far.
func (t *Tree) addHost(p string, hops int) error {
	if hops > maxSymlinks {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	if !path.IsAbs(p) {
		return fmt.Errorf("%s: not an absolute path", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return nil
	}
	parts := strings.Split(p[1:], "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		last := i == len(parts)-1
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if err := t.putSymlink(next, target); err != nil {
				return err
			}
			resolved := target
			if !path.IsAbs(target) {
				resolved = path.Join(cur, target)
			}
			return t.addHost(path.Join(append([]string{resolved}, parts[i+1:]...)...), hops+1)
		case fi.IsDir():
			if err := t.putDir(next, 0o755, 0, 0, false); err != nil {
				return err
			}
			cur = next
		case fi.Mode().IsRegular() && last:
			return t.putFile(&entry{path: next, kind: kindFile, mode: int64(fi.Mode().Perm()), source: next, size: fi.Size()})
		case fi.Mode().IsRegular():
			return fmt.Errorf("%s: not a directory (in %s)", next, p)
		default:
			return fmt.Errorf("%s: unsupported file type %v", next, fi.Mode().Type())
		}
	}
	return nil
}

// AddFile places a file with the given content (inline, or read from the
// host file source when content is nil) at p, resolving symlinks in p's
// directories through the tree so that /bin/x lands in /usr/bin when /bin
// is a link. An existing entry at p is an error: two files competing for
// one path would make the image depend on their order.
func (t *Tree) AddFile(p string, content []byte, source string, mode int64, uid, gid int) error {
	real, err := t.resolve(p, false)
	if err != nil {
		return err
	}
	if err := t.mkdirAll(path.Dir(real)); err != nil {
		return err
	}
	e := &entry{path: real, kind: kindFile, mode: mode, uid: uid, gid: gid, content: content}
	if content == nil {
		fi, err := os.Stat(source)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", source)
		}
		e.source, e.size = source, fi.Size()
	}
	return t.putFile(e)
}

// AddDir creates directory p with the given metadata, replacing what an
// implied parent had (for /tmp 1777 and the nonroot home).
func (t *Tree) AddDir(p string, mode int64, uid, gid int) error {
	real, err := t.resolve(p, true)
	if err != nil {
		return err
	}
	if err := t.mkdirAll(path.Dir(real)); err != nil {
		return err
	}
	return t.putDir(real, mode, uid, gid, true)
}

// EnsureDir creates directory p (root, 0755) unless it exists, as WORKDIR
// does: an existing directory keeps its metadata.
func (t *Tree) EnsureDir(p string) error {
	real, err := t.resolve(p, true)
	if err != nil {
		return err
	}
	return t.mkdirAll(real)
}

// mkdirAll creates p and its parents as implied root-owned 0755
// directories where they are missing.
func (t *Tree) mkdirAll(p string) error {
	if p == "/" {
		return nil
	}
	if err := t.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	return t.putDir(p, 0o755, 0, 0, false)
}

// resolve replaces symlinks of the tree in p's directories (and in its
// last component when followLast) by their targets.
func (t *Tree) resolve(p string, followLast bool) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%s: not an absolute path", p)
	}
	p = path.Clean(p)
	for hops := 0; hops <= maxSymlinks; hops++ {
		if p == "/" {
			return p, nil
		}
		parts := strings.Split(p[1:], "/")
		cur := "/"
		restarted := false
		for i, part := range parts {
			next := path.Join(cur, part)
			e := t.entries[next]
			if e != nil && e.kind == kindSymlink && (i < len(parts)-1 || followLast) {
				resolved := e.target
				if !path.IsAbs(resolved) {
					resolved = path.Join(cur, resolved)
				}
				p = path.Join(append([]string{resolved}, parts[i+1:]...)...)
				restarted = true
				break
			}
			cur = next
		}
		if !restarted {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}

// putDir records a directory; explicit metadata overrides implied
// metadata, and a non-directory already at p is a conflict.
func (t *Tree) putDir(p string, mode int64, uid, gid int, explicit bool) error {
	if e, ok := t.entries[p]; ok {
		if e.kind != kindDir {
			return fmt.Errorf("%s: wanted a directory, the image already has a %s there", p, e.kind)
		}
		if explicit {
			if e.explicit && (e.mode != mode || e.uid != uid || e.gid != gid) {
				return fmt.Errorf("%s: directory set up twice with different owners or modes", p)
			}
			e.mode, e.uid, e.gid, e.explicit = mode, uid, gid, true
		}
		return nil
	}
	t.entries[p] = &entry{path: p, kind: kindDir, mode: mode, uid: uid, gid: gid, explicit: explicit}
	return nil
}

// putSymlink records a symlink; the same link twice is fine (two libraries
// share /lib64), anything else at p is a conflict.
func (t *Tree) putSymlink(p, target string) error {
	if e, ok := t.entries[p]; ok {
		if e.kind == kindSymlink && e.target == target {
			return nil
		}
		return fmt.Errorf("%s: wanted a symlink to %s, the image already has a %s there", p, target, e.kind)
	}
	if err := t.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	t.entries[p] = &entry{path: p, kind: kindSymlink, mode: 0o777, target: target}
	return nil
}

// putFile records a file; the same host file twice is fine (ldd lists a
// library once, but the loader is both a dependency and the interpreter),
// anything else at p is a conflict.
func (t *Tree) putFile(e *entry) error {
	if old, ok := t.entries[e.path]; ok {
		if old.kind == kindFile && old.source != "" && old.source == e.source && old.mode == e.mode && old.uid == e.uid && old.gid == e.gid {
			return nil
		}
		return fmt.Errorf("%s: the image already has a %s there", e.path, old.kind)
	}
	if err := t.mkdirAll(path.Dir(e.path)); err != nil {
		return err
	}
	t.entries[e.path] = e
	return nil
}

// Has reports whether the tree has an entry at exactly p.
func (t *Tree) Has(p string) bool {
	_, ok := t.entries[p]
	return ok
}
