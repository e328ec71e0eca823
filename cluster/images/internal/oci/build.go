package oci

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// DockerfileImage builds the image that a Dockerfile's final stage
// describes, with binary as the file its COPY --from places. The binary's
// name must match the COPY source, so that passing the router's binary for
// the ws-pod Dockerfile fails instead of producing a mislabelled image.
func DockerfileImage(dockerfile string, stage *Stage, binary, ref string, epoch time.Time) (*Image, error) {
	if filepath.Base(binary) != path.Base(stage.Copy.Source) {
		return nil, &ParseError{dockerfile, stage.Copy.Line, fmt.Sprintf("COPY copies %s but --binary is %s (the file names differ)", stage.Copy.Source, binary)}
	}
	tree, err := BuildRootfs(binary, stage.Copy.Dest)
	if err != nil {
		return nil, err
	}
	for _, dir := range stage.Workdirs {
		if err := tree.EnsureDir(dir); err != nil {
			return nil, fmt.Errorf("WORKDIR %s: %w", dir, err)
		}
	}
	return &Image{
		Ref:  ref,
		Tree: tree,
		Config: Config{
			User:         stage.User,
			ExposedPorts: portSet(stage.ExposedPorts),
			Env:          stage.Env,
			Entrypoint:   stage.Entrypoint,
			Cmd:          stage.Cmd,
			WorkingDir:   stage.WorkingDir,
			Labels:       nonEmpty(stage.Labels),
		},
		CreatedBy: fmt.Sprintf("ociimage dockerfile %s (final stage: FROM %s, COPY %s %s)", filepath.Base(dockerfile), stage.Base, stage.Copy.Source, stage.Copy.Dest),
		Epoch:     epoch,
	}, nil
}

// BinaryOptions describe an image for a program that has no Dockerfile.
type BinaryOptions struct {
	Binary     string
	Dest       string // default: /<basename of Binary>
	Ref        string
	User       string   // default: the nonroot user 65532:65532
	Entrypoint []string // default: [Dest]
	Cmd        []string
	Ports      []string // "6379" or "6379/tcp"
	Labels     map[string]string
	Env        []string // KEY=value, added to (or replacing) the base's
	WorkingDir string   // default: /, created if missing
}

// BinaryImage builds an image of the distroless-like base plus one binary.
func BinaryImage(o BinaryOptions, epoch time.Time) (*Image, error) {
	if o.Dest == "" {
		o.Dest = "/" + filepath.Base(o.Binary)
	}
	if o.User == "" {
		o.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	}
	if err := CheckUser(o.User); err != nil {
		return nil, fmt.Errorf("--user %v", err)
	}
	if len(o.Entrypoint) == 0 {
		o.Entrypoint = []string{o.Dest}
	}
	if o.WorkingDir == "" {
		o.WorkingDir = "/"
	}
	if !path.IsAbs(o.WorkingDir) {
		return nil, fmt.Errorf("--workdir %s: not an absolute path", o.WorkingDir)
	}
	var ports []string
	for _, p := range o.Ports {
		port, err := NormalizePort(p)
		if err != nil {
			return nil, fmt.Errorf("--expose %v", err)
		}
		ports = append(ports, port)
	}
	env := []string{DefaultPath, "SSL_CERT_FILE=" + CertFile}
	for _, kv := range o.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q is not KEY=value", kv)
		}
		env = setEnv(env, kv)
	}
	tree, err := BuildRootfs(o.Binary, o.Dest)
	if err != nil {
		return nil, err
	}
	if err := tree.EnsureDir(o.WorkingDir); err != nil {
		return nil, fmt.Errorf("--workdir %s: %w", o.WorkingDir, err)
	}
	return &Image{
		Ref:  o.Ref,
		Tree: tree,
		Config: Config{
			User:         o.User,
			ExposedPorts: portSet(ports),
			Env:          env,
			Entrypoint:   o.Entrypoint,
			Cmd:          o.Cmd,
			WorkingDir:   path.Clean(o.WorkingDir),
			Labels:       nonEmpty(o.Labels),
		},
		CreatedBy: fmt.Sprintf("ociimage binary %s at %s", filepath.Base(o.Binary), o.Dest),
		Epoch:     epoch,
	}, nil
}

// setEnv replaces KEY's entry in env or appends kv.
func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	for i, old := range env {
		if k, _, _ := strings.Cut(old, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// portSet turns "8080/tcp" entries into the config's set, nil when empty.
func portSet(ports []string) map[string]struct{} {
	if len(ports) == 0 {
		return nil
	}
	set := map[string]struct{}{}
	for _, p := range ports {
		set[p] = struct{}{}
	}
	return set
}

// nonEmpty returns m, or nil when it has no entries, so that the config
// omits the field.
func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
