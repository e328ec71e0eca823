// Command pause is a pod sandbox's first process, like Kubernetes' pause:
// it holds the pod's namespaces open by doing nothing. As PID 1 of the
// pod's PID namespace (when the pod shares it) it also inherits orphaned
// processes, so it reaps every child that exits; otherwise they would stay
// zombies and fill the process table. SIGINT and SIGTERM end it with exit
// code 0, which is how the runtime stops a sandbox.
//
// Build it static, so that the image needs no libraries:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags=-s -o pause ./cmd/pause
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run waits for signals until SIGINT or SIGTERM and returns the exit code.
func run(args []string, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "pause: takes no arguments, got %q\n", args)
		return 2
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Printed once the handlers are in place: a signal sent after this line
	// is handled (tests wait for it).
	if os.Getpid() != 1 {
		fmt.Fprintln(stderr, "pause: running, not as PID 1: orphaned processes are not reaped here")
	} else {
		fmt.Fprintln(stderr, "pause: running")
	}
	// Children that exited before the handler was installed sent their
	// SIGCHLD to nobody: reap them now.
	reapChildren()
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		fmt.Fprintf(stderr, "pause: shutting down, got signal %v\n", sig)
		return 0
	}
	return 0
}

// reapChildren collects every exited child without blocking and returns
// their PIDs. One call drains them all, because signals of the same kind
// are merged while pending: one SIGCHLD may stand for many exits.
func reapChildren() []int {
	var reaped []int
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return reaped // ECHILD: no children; 0: none has exited yet
		}
		reaped = append(reaped, pid)
	}
}
