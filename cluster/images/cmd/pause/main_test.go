package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as pause: "run" runs it as is,
// "orphans" first leaves two background sleeps behind for it to adopt.
const helperEnv = "PAUSE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "orphans":
		// sh exits at once; its two sleeps are orphaned, re-parented to us
		// (PID 1 of a new PID namespace) and must be reaped when they end.
		cmd := exec.Command("/bin/sh", "-c", "sleep 0.3 & sleep 0.4 & exit 0")
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
	}
	os.Exit(run(nil, os.Stderr))
}

// startHelper runs the test binary as pause, waits until it reports that
// its signal handlers are in place and returns that first line.
func startHelper(t *testing.T, mode string, attr *syscall.SysProcAttr) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = attr
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	first, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "pause: running") {
		t.Fatalf("helper did not start: %q, %v", first, err)
	}
	return cmd, first
}

// waitExit waits for the helper with a deadline and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		if err != nil {
			t.Fatalf("waiting for pause: %v", err)
		}
		return 0
	case <-time.After(10 * time.Second):
		t.Fatal("pause did not exit within 10s of the signal")
		return -1
	}
}

func TestExitsZeroOnSIGTERMAndSIGINT(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, _ := startHelper(t, "run", nil)
			// A SIGCHLD must not end it.
			if err := cmd.Process.Signal(syscall.SIGCHLD); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := waitExit(t, cmd); code != 0 {
				t.Fatalf("exit code %d after %v, want 0", code, sig)
			}
		})
	}
}

func TestRefusesArguments(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"x"}, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}

func TestReapChildren(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for processState(pid) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("child %d did not become a zombie (state %q)", pid, processState(pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	reaped := reapChildren()
	if len(reaped) != 1 || reaped[0] != pid {
		t.Fatalf("reaped %v, want [%d]", reaped, pid)
	}
	if state := processState(pid); state != "" {
		t.Fatalf("child %d still exists in state %q after reaping", pid, state)
	}
}

// TestReapsOrphansAsPID1 runs pause as PID 1 of a new PID namespace, as in
// a pod that shares its process namespace, and checks that the orphans it
// adopts do not stay zombies.
func TestReapsOrphansAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a new PID namespace")
	}
	cmd, first := startHelper(t, "orphans", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
	if first != "pause: running\n" {
		t.Fatalf("pause did not run as PID 1: %q", first)
	}
	// The sleeps end after 0.3s and 0.4s; give them time to end and be reaped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		children := childrenOf(cmd.Process.Pid)
		if len(children) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause still has children (pid: state) %v", children)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// TestStaticBuild builds pause as documented and checks that it needs no
// dynamic loader or libraries.
func TestStaticBuild(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out := filepath.Join(t.TempDir(), "pause")
	build := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("pause has a %v program header: it is not static", p.Type)
		}
	}
}

// processState returns the state letter of pid from /proc, "" if gone.
func processState(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...: comm may contain spaces, so cut at the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return string(s[i+2])
}

// childrenOf lists the processes whose parent is pid, with their states.
func childrenOf(pid int) map[int]string {
	out := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			out[child] = fields[0]
		}
	}
	return out
}
