// Command ociimage builds OCI image archives for `ctr images import`
// without a Docker engine or a registry: it assembles a
// distroless/cc-debian12-like base from this Debian 12 machine's own files
// and adds one binary, following a Dockerfile's final stage or flags.
//
//	ociimage dockerfile --dockerfile docker/router.Dockerfile --binary target/release/wsring-router \
//	    --tag ghcr.io/wsring/wsring-router:0.1.0 --out /tmp/images/router.tar
//	ociimage binary --binary /usr/bin/redis-server --dest /usr/local/bin/redis-server \
//	    --tag docker.io/library/redis:7.4-alpine --user 999:999 --expose 6379 --out /tmp/images/redis.tar
//	ociimage inspect --archive /tmp/images/router.tar
//
// Errors exit 1, usage errors 2.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"wsring.dev/cluster/images/internal/oci"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors in how the command was called (exit code 2);
// fs, when set, is the subcommand whose flags are then listed.
type usageError struct {
	msg string
	fs  *flag.FlagSet
}

func (e *usageError) Error() string { return e.msg }

// usage is printed for a missing or unknown subcommand.
const usage = `usage:
  ociimage dockerfile --dockerfile FILE --binary FILE --tag NAME:TAG --out FILE [--build-arg K=V ...]
  ociimage binary --binary FILE --tag NAME:TAG --out FILE [--dest PATH] [--user UID:GID]
                  [--entrypoint PATH] [--cmd ARG ...] [--expose PORT ...] [--label K=V ...]
                  [--env K=V ...] [--workdir DIR]
  ociimage inspect --archive FILE
`

// run executes one command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dockerfile":
		err = runDockerfile(args[1:], stdout)
	case "binary":
		err = runBinary(args[1:], stdout)
	case "inspect":
		err = runInspect(args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = &usageError{msg: fmt.Sprintf("unknown subcommand %q", args[0])}
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ociimage: %v\n", err)
		if ue.fs != nil {
			printFlags(ue.fs, stderr)
		} else {
			fmt.Fprint(stderr, usage)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "ociimage: %v\n", err)
		return 1
	}
}

// listFlag collects a repeatable flag's values.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// newFlagSet returns a flag set that returns errors instead of printing
// them and exiting, so that every error is reported on one line by run.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// printFlags lists a subcommand's flags.
func printFlags(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "usage of ociimage %s:\n", fs.Name())
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parseFlags parses args and turns flag errors, stray arguments and
// missing required flags into usage errors; -h lists the flags on stdout.
func parseFlags(fs *flag.FlagSet, args []string, required map[string]*string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(fs, stdout)
			return err
		}
		return &usageError{fmt.Sprintf("%s: %v", fs.Name(), err), fs}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)), fs}
	}
	for _, name := range sortedNames(required) {
		if *required[name] == "" {
			return &usageError{fmt.Sprintf("%s: --%s is required", fs.Name(), name), fs}
		}
	}
	return nil
}

// sortedNames returns the keys in order, for stable messages.
func sortedNames(m map[string]*string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// keyValues turns repeated K=V flags into a map; flagName names the flag
// in errors.
func keyValues(flagName string, list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &usageError{msg: fmt.Sprintf("--%s %q is not KEY=value", flagName, kv)}
		}
		m[k] = v
	}
	return m, nil
}

// checkTag refuses a --tag that is not a name:tag reference as a usage
// error, before anything is read or built.
func checkTag(tag string) error {
	if _, _, err := oci.NormalizeRef(tag); err != nil {
		return &usageError{msg: "--" + err.Error()}
	}
	return nil
}

// imageFlags are the flags both build subcommands share: the binary the
// image gets, its tag and the archive to write.
type imageFlags struct {
	fs               *flag.FlagSet
	binary, tag, out *string
	required         map[string]*string
}

// newImageFlags declares the shared flags of subcommand name.
func newImageFlags(name, binaryHelp string) imageFlags {
	fs := newFlagSet(name)
	f := imageFlags{
		fs:     fs,
		binary: fs.String("binary", "", binaryHelp),
		tag:    fs.String("tag", "", "image reference, name:tag"),
		out:    fs.String("out", "", "archive to write"),
	}
	f.required = map[string]*string{"binary": f.binary, "tag": f.tag, "out": f.out}
	return f
}

// parse parses args, with the shared flags and extra ones required, and
// refuses a bad --tag before anything is read or built.
func (f imageFlags) parse(args []string, stdout io.Writer, extra map[string]*string) error {
	for name, value := range extra {
		f.required[name] = value
	}
	if err := parseFlags(f.fs, args, f.required, stdout); err != nil {
		return err
	}
	return checkTag(*f.tag)
}

// write builds the image at the build epoch and writes its archive.
func (f imageFlags) write(build func(epoch time.Time) (*oci.Image, error), stdout io.Writer) error {
	epoch, err := oci.Epoch()
	if err != nil {
		return err
	}
	img, err := build(epoch)
	if err != nil {
		return err
	}
	return write(*f.out, img, stdout)
}

// runDockerfile builds the image of a Dockerfile's final stage.
func runDockerfile(args []string, stdout io.Writer) error {
	f := newImageFlags("dockerfile", "the file that the final stage's COPY --from places")
	dockerfile := f.fs.String("dockerfile", "", "Dockerfile whose final stage describes the image")
	var buildArgs listFlag
	f.fs.Var(&buildArgs, "build-arg", "KEY=value overriding an ARG default (repeatable)")
	if err := f.parse(args, stdout, map[string]*string{"dockerfile": dockerfile}); err != nil {
		return err
	}
	argMap, err := keyValues("build-arg", buildArgs)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*dockerfile)
	if err != nil {
		return err
	}
	stage, err := oci.ParseDockerfile(*dockerfile, data, argMap)
	if err != nil {
		return err
	}
	return f.write(func(epoch time.Time) (*oci.Image, error) {
		return oci.DockerfileImage(*dockerfile, stage, *f.binary, *f.tag, epoch)
	}, stdout)
}

// runBinary builds an image of the base plus one binary, from flags.
func runBinary(args []string, stdout io.Writer) error {
	f := newImageFlags("binary", "the program to put in the image")
	dest := f.fs.String("dest", "", "its path in the image (default /<basename>)")
	user := f.fs.String("user", "", "uid:gid the container runs as (default 65532:65532)")
	entrypoint := f.fs.String("entrypoint", "", "program to run (default the destination)")
	workdir := f.fs.String("workdir", "", "working directory (default /)")
	var cmd, expose, labels, env listFlag
	f.fs.Var(&cmd, "cmd", "argument passed to the entrypoint, the image's CMD (repeatable)")
	f.fs.Var(&expose, "expose", "port[/tcp|/udp] (repeatable)")
	f.fs.Var(&labels, "label", "KEY=value (repeatable)")
	f.fs.Var(&env, "env", "KEY=value added to the environment (repeatable)")
	if err := f.parse(args, stdout, nil); err != nil {
		return err
	}
	labelMap, err := keyValues("label", labels)
	if err != nil {
		return err
	}
	var entry []string
	if *entrypoint != "" {
		entry = []string{*entrypoint}
	}
	return f.write(func(epoch time.Time) (*oci.Image, error) {
		return oci.BinaryImage(oci.BinaryOptions{
			Binary: *f.binary, Dest: *dest, Ref: *f.tag, User: *user,
			Entrypoint: entry, Cmd: cmd, Ports: expose, Labels: labelMap,
			Env: env, WorkingDir: *workdir,
		}, epoch)
	}, stdout)
}

// write writes the archive and says what it holds.
func write(out string, img *oci.Image, stdout io.Writer) error {
	digest, err := oci.WriteArchiveFile(out, img)
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	full, _, _ := oci.NormalizeRef(img.Ref)
	fmt.Fprintf(stdout, "%s: %s %s\n", out, full, digest)
	return nil
}

// runInspect prints an archive's tag, config and files as JSON.
func runInspect(args []string, stdout io.Writer) error {
	fs := newFlagSet("inspect")
	archive := fs.String("archive", "", "OCI layout tar to read")
	if err := parseFlags(fs, args, map[string]*string{"archive": archive}, stdout); err != nil {
		return err
	}
	f, err := os.Open(*archive)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := oci.Inspect(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *archive, err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(info)
}
