package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
	ctrNamespace  = "test"
)

// containerd is a private containerd started for one test: its own root,
// state, socket and config under a short directory in /tmp (a Unix socket
// path must stay under about 100 bytes, which t.TempDir() may exceed).
type containerd struct {
	dir  string
	sock string
	cmd  *exec.Cmd
	log  string
	// hadRunDir records whether /run/containerd existed before: the 1.6
	// shim always puts its socket in /run/containerd/s, and directories
	// this test caused to exist there are removed again if left empty.
	hadRunDir bool
}

// runDir is where containerd 1.6's shims put their sockets whatever the
// configured state directory.
const runDir = "/run/containerd"

// startContainerd starts containerd 1.6 without the CRI plugin and waits
// until it answers; cleanup stops it by PID and removes its files.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ociimg-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{dir: dir, sock: filepath.Join(dir, "c.sock"), log: filepath.Join(dir, "containerd.log")}
	if _, err := os.Stat(runDir); err == nil {
		c.hadRunDir = true
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt"))
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(containerdBin, "--config", configPath)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		t.Fatalf("starting containerd: %v", err)
	}
	logFile.Close()
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	t.Cleanup(func() { c.stop(t, exited) })

	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.run("version"); err == nil {
			return c
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("containerd exited: %v\n%s", err, c.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 30s\n%s", c.sock, c.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs ctr against this containerd in the test namespace.
func (c *containerd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--address", c.sock, "--namespace", ctrNamespace}, args...)
	out, err := exec.CommandContext(ctx, ctrBin, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ctr runs ctr and fails the test on an error.
func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatalf("%v\ncontainerd log:\n%s", err, c.logTail())
	}
	return out
}

// runFlags keep ctr run's FIFOs and runc state under the test directory.
func (c *containerd) runFlags() []string {
	return []string{"--fifo-dir", filepath.Join(c.dir, "fifo"), "--runc-root", filepath.Join(c.dir, "runc")}
}

// stop removes leftover tasks and containers, stops containerd by its PID,
// unmounts anything still mounted under its directory and deletes it.
func (c *containerd) stop(t *testing.T, exited chan error) {
	if out, err := c.run("tasks", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.run("tasks", "kill", "--signal", "SIGKILL", id)
			time.Sleep(200 * time.Millisecond)
			_, _ = c.run("tasks", "delete", "--force", id)
		}
	}
	if out, err := c.run("containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.run("containers", "delete", id)
		}
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Logf("containerd (pid %d) ignored SIGTERM; killing it", c.cmd.Process.Pid)
		_ = c.cmd.Process.Kill()
		<-exited
	}
	for _, m := range mountsUnder(c.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Logf("removing %s: %v", c.dir, err)
	}
	if !c.hadRunDir {
		// os.Remove fails on a directory that is not empty, so nothing that
		// another containerd started meanwhile put there is touched.
		for _, d := range []string{"s", "fifo", "runc/" + ctrNamespace, "runc", ""} {
			_ = os.Remove(filepath.Join(runDir, d))
		}
	}
}

// logTail returns the end of containerd's log for failure messages.
func (c *containerd) logTail() string {
	data, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append([]string{fields[4]}, out...)
		}
	}
	return out
}

// runLimit reports whether a ctr run failure comes from the machine (no
// usable cgroups, a refused oom_score_adj, no runc) rather than the image.
func runLimit(err error) bool {
	msg := err.Error()
	for _, s := range []string{"oom_score_adj", "cgroup", "runc: not found", "executable file not found", "operation not permitted"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// TestContainerdImportAndRun imports archives made here into a real
// containerd 1.6, the version the cluster runs, and runs them.
func TestContainerdImportAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("starting containerd needs root")
	}
	for _, bin := range []string{containerdBin, ctrBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s is missing: %v", bin, err)
		}
	}
	work := t.TempDir()

	// The router's real Dockerfile around /usr/bin/id, a dynamic binary
	// whose output shows the user, the groups and that NSS finds the
	// image's /etc/passwd and /etc/group.
	file := filepath.Join(dockerDir, "router.Dockerfile")
	_, stage := parseDockerfileFile(t, file)
	const routerTag = "ghcr.io/wsring/wsring-router:0.1.0-test"
	router, err := DockerfileImage(file, stage, standIn(t, "/usr/bin/id", "wsring-router"), routerTag, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	routerTar := filepath.Join(work, "router.tar")
	if _, err := WriteArchiveFile(routerTar, router); err != nil {
		t.Fatal(err)
	}
	const pauseTag = "registry.k8s.io/pause:3.10-test"
	pause, err := BinaryImage(BinaryOptions{Binary: pauseBinary(t), Ref: pauseTag, User: "65535:65535"}, epochZero)
	if err != nil {
		t.Fatal(err)
	}
	pauseTar := filepath.Join(work, "pause.tar")
	if _, err := WriteArchiveFile(pauseTar, pause); err != nil {
		t.Fatal(err)
	}

	c := startContainerd(t)
	for _, archive := range []string{routerTar, pauseTar} {
		c.ctr(t, "images", "import", archive)
	}
	listed := strings.Fields(c.ctr(t, "images", "ls", "-q"))
	for _, tag := range []string{routerTag, pauseTag} {
		if !contains(listed, tag) {
			t.Fatalf("ctr images ls shows %q, not %s", listed, tag)
		}
	}

	// Run the router-shaped image: it runs /usr/local/bin/wsring-router
	// (really id) as 65532:65532 in /home/nonroot.
	args := append([]string{"run", "--rm"}, c.runFlags()...)
	out, err := c.run(append(args, routerTag, "router-test")...)
	if err != nil {
		if runLimit(err) {
			t.Skipf("imports work, but this machine cannot run containers: %v", err)
		}
		t.Fatalf("%v\ncontainerd log:\n%s", err, c.logTail())
	}
	if want := "uid=65532(nonroot) gid=65532(nonroot) groups=65532(nonroot)"; strings.TrimSpace(out) != want {
		t.Errorf("router image printed %q, want %q", strings.TrimSpace(out), want)
	}

	runPause(t, c, pauseTag)
}

// runPause starts the pause image, waits until its task runs, stops it
// with SIGTERM as a runtime stops a sandbox and expects exit code 0.
func runPause(t *testing.T, c *containerd, tag string) {
	const id = "pause-test"
	args := append([]string{"--address", c.sock, "--namespace", ctrNamespace, "run", "--rm"}, c.runFlags()...)
	run := exec.Command(ctrBin, append(args, tag, id)...)
	var output strings.Builder
	run.Stdout, run.Stderr = &output, &output
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := c.run("tasks", "ls")
		if strings.Contains(out, id) && strings.Contains(out, "RUNNING") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("pause exited before it was stopped: %v\n%s", err, output.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = run.Process.Kill()
			t.Fatalf("pause task not running after 30s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.ctr(t, "tasks", "kill", "--signal", "SIGTERM", id)
	select {
	case err := <-done:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("pause exited with %d after SIGTERM, want 0\n%s", exitErr.ExitCode(), output.String())
		}
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		_ = run.Process.Kill()
		t.Fatalf("pause did not exit within 30s of SIGTERM\n%s", output.String())
	}
	if !strings.Contains(output.String(), "pause: shutting down") {
		t.Errorf("pause output %q lacks its shutdown line", output.String())
	}
}
