package oci

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
)

// The account files of distroless: root, nobody and the nonroot user
// 65532 whose home is /home/nonroot. Kubernetes' runAsNonRoot checks the
// numeric USER; the names are for programs that look themselves up.
const (
	passwdFile = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	groupFile = "root:x:0:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
	nsswitchFile = "passwd: files\n" +
		"group: files\n" +
		"shadow: files\n" +
		"hosts: files dns\n" +
		"networks: files\n" +
		"protocols: files\n" +
		"services: files\n" +
		"ethers: files\n" +
		"rpc: files\n"
)

// optionalHostFiles are copied from the host when present: the CA bundle
// (from Debian's ca-certificates, as in distroless) and os-release, which
// scanners and people read to learn what the image is made of.
var optionalHostFiles = []string{CertFile, "/etc/os-release"}

// NonrootUID is the distroless nonroot user and group.
const NonrootUID = 65532

// BuildRootfs assembles the filesystem of a distroless/cc-debian12-like
// image from this Debian 12 host: the binary's shared-library closure and
// loader, the CA bundle, the account files and the usual directories, plus
// the binary itself at dest with mode 0755.
func BuildRootfs(binary, dest string) (*Tree, error) {
	if err := CheckBinary(binary); err != nil {
		return nil, err
	}
	libs, err := SharedLibraries(binary)
	if err != nil {
		return nil, err
	}
	t := NewTree()
	// Host files first, so that the host's symlinks (/lib -> usr/lib) are in
	// place before files made here resolve their paths through them.
	for _, lib := range libs {
		if err := t.AddHostPath(lib); err != nil {
			return nil, fmt.Errorf("copying library %s: %w", lib, err)
		}
	}
	for _, f := range optionalHostFiles {
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := t.AddHostPath(f); err != nil {
			return nil, fmt.Errorf("copying %s: %w", f, err)
		}
	}
	if err := addBaseFiles(t); err != nil {
		return nil, err
	}
	if !path.IsAbs(dest) {
		return nil, fmt.Errorf("destination %s is not an absolute path", dest)
	}
	if err := t.AddFile(dest, nil, binary, 0o755, 0, 0); err != nil {
		return nil, fmt.Errorf("placing %s at %s: %w", binary, dest, err)
	}
	return t, nil
}

// addBaseFiles adds what distroless's base layers hold besides packages.
func addBaseFiles(t *Tree) error {
	dirs := []struct {
		path     string
		mode     int64
		uid, gid int
	}{
		{"/etc", 0o755, 0, 0},
		{"/tmp", 0o1777, 0, 0},
		{"/root", 0o700, 0, 0},
		{"/home", 0o755, 0, 0},
		{"/home/nonroot", 0o700, NonrootUID, NonrootUID},
		{"/usr/local/bin", 0o755, 0, 0},
	}
	for _, d := range dirs {
		if err := t.AddDir(d.path, d.mode, d.uid, d.gid); err != nil {
			return err
		}
	}
	files := map[string]string{
		"/etc/passwd":        passwdFile,
		"/etc/group":         groupFile,
		"/etc/nsswitch.conf": nsswitchFile,
	}
	for _, p := range sortedKeys(files) {
		if err := t.AddFile(p, []byte(files[p]), "", 0o644, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// CheckBinary refuses what cannot run in a linux/amd64 image: a missing
// file, a script, or an ELF file for another machine.
func CheckBinary(binary string) error {
	f, err := elf.Open(binary)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("binary %s: %w", binary, err)
		}
		return fmt.Errorf("binary %s is not an ELF executable: %v", binary, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("binary %s is for %v, the image is linux/amd64", binary, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("binary %s is an ELF %v, not an executable", binary, f.Type)
	}
	return nil
}

// SharedLibraries returns the absolute paths of the libraries and dynamic
// loader that ldd resolves for binary, in ldd's order; nothing for a
// static binary. ldd is used, rather than reading DT_NEEDED, because it
// resolves the whole closure exactly as the loader will on this system.
func SharedLibraries(binary string) ([]string, error) {
	cmd := exec.Command("ldd", binary)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if strings.Contains(text, "not a dynamic executable") || strings.Contains(text, "statically linked") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %v: %s", binary, err, strings.TrimSpace(text))
	}
	return parseLdd(binary, text)
}

// parseLdd reads ldd's output: "name => /path (0x...)" for libraries,
// "/path (0x...)" for the loader, and "name (0x...)" for the vDSO, which
// is not a file.
func parseLdd(binary, text string) ([]string, error) {
	var libs []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, "=> not found") {
			name, _, _ := strings.Cut(line, " ")
			return nil, fmt.Errorf("ldd %s: %s is not installed on this machine", binary, name)
		}
		field := line
		if _, rhs, ok := strings.Cut(line, "=>"); ok {
			field = strings.TrimSpace(rhs)
		}
		p, _, _ := strings.Cut(field, " (")
		p = strings.TrimSpace(p)
		if !path.IsAbs(p) {
			continue // linux-vdso.so.1 and similar
		}
		if !contains(libs, p) {
			libs = append(libs, p)
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in its output: %s", binary, strings.TrimSpace(text))
	}
	return libs, nil
}
