package oci

import (
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// dockerDir holds the project's real Dockerfiles.
const dockerDir = "../../../../docker"

// TestRealDockerfiles parses each of the project's Dockerfiles and checks
// the final stage against what the file says, read independently with
// regular expressions, so that a version bump does not break the test but
// a parser that loses a port or a label does.
func TestRealDockerfiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dockerDir, "*.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("found %d Dockerfiles in %s, want 3: %v", len(files), dockerDir, files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, stage := parseDockerfileFile(t, file)
			text := string(data)
			name := regexp.MustCompile(`/out/([a-z-]+) /usr/local/bin/`).FindStringSubmatch(text)[1]
			version := regexp.MustCompile(`(?m)^ARG VERSION=(\S+)$`).FindStringSubmatch(text)[1]
			ports := strings.Fields(regexp.MustCompile(`(?m)^EXPOSE (.+)$`).FindStringSubmatch(text)[1])
			var wantPorts []string
			for _, p := range ports {
				wantPorts = append(wantPorts, p+"/tcp")
			}

			if stage.Base != "gcr.io/distroless/cc-debian12:nonroot" {
				t.Errorf("base %q", stage.Base)
			}
			if stage.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", stage.User)
			}
			if want := []string{"/usr/local/bin/" + name}; !reflect.DeepEqual(stage.Entrypoint, want) {
				t.Errorf("entrypoint %q, want %q", stage.Entrypoint, want)
			}
			if stage.Cmd != nil {
				t.Errorf("cmd %q, want none", stage.Cmd)
			}
			if !reflect.DeepEqual(stage.ExposedPorts, wantPorts) {
				t.Errorf("ports %q, want %q", stage.ExposedPorts, wantPorts)
			}
			if got := stage.Labels["org.opencontainers.image.version"]; got != version {
				t.Errorf("version label %q, want %q", got, version)
			}
			if got := stage.Labels["org.opencontainers.image.title"]; got != name {
				t.Errorf("title label %q, want %q", got, name)
			}
			if got := stage.Labels["org.opencontainers.image.licenses"]; got != "Apache-2.0" {
				t.Errorf("licenses label %q", got)
			}
			if len(stage.Labels) != 5 {
				t.Errorf("%d labels, want 5: %v", len(stage.Labels), stage.Labels)
			}
			for k, v := range stage.Labels {
				if strings.ContainsAny(v, `"$\`) {
					t.Errorf("label %s=%q was not unquoted or expanded", k, v)
				}
			}
			wantCopy := Copy{From: "builder", Source: "/out/" + name, Dest: "/usr/local/bin/" + name}
			gotCopy := stage.Copy
			gotCopy.Line = 0
			if gotCopy != wantCopy {
				t.Errorf("copy %+v, want %+v", gotCopy, wantCopy)
			}
			if stage.WorkingDir != "/home/nonroot" {
				t.Errorf("workdir %q, want the distroless nonroot home", stage.WorkingDir)
			}
			wantEnv := []string{DefaultPath, "SSL_CERT_FILE=" + CertFile}
			if !reflect.DeepEqual(stage.Env, wantEnv) {
				t.Errorf("env %q, want %q", stage.Env, wantEnv)
			}

			over, err := ParseDockerfile(file, data, map[string]string{"VERSION": "9.9.9"})
			if err != nil {
				t.Fatal(err)
			}
			if got := over.Labels["org.opencontainers.image.version"]; got != "9.9.9" {
				t.Errorf("with --build-arg VERSION=9.9.9 the version label is %q", got)
			}
		})
	}
}

// minimal is the smallest final stage this builder accepts; tests append
// one instruction to it.
const minimal = `# syntax=docker/dockerfile:1
FROM rust:1 AS builder
RUN cargo build \
    --release
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/app /usr/local/bin/app
`

func TestUnsupportedInstructions(t *testing.T) {
	// minimal has 6 lines, so the appended instruction is on line 7.
	tests := []struct {
		name, add, want string
	}{
		{"run", "RUN echo hi", "x.Dockerfile:7: RUN in the final stage cannot be reproduced without a Docker engine"},
		{"run lower case", "run echo hi", "x.Dockerfile:7: RUN in the final stage cannot be reproduced"},
		{"add", "ADD app.tar /", "x.Dockerfile:7: ADD in the final stage"},
		{"volume", "VOLUME /data", "x.Dockerfile:7: VOLUME in the final stage"},
		{"healthcheck", "HEALTHCHECK CMD [\"/x\"]", "x.Dockerfile:7: HEALTHCHECK in the final stage"},
		{"shell", `SHELL ["/bin/sh", "-c"]`, "x.Dockerfile:7: SHELL in the final stage"},
		{"stopsignal", "STOPSIGNAL SIGINT", "x.Dockerfile:7: STOPSIGNAL in the final stage"},
		{"onbuild", "ONBUILD RUN x", "x.Dockerfile:7: ONBUILD in the final stage"},
		{"maintainer", "MAINTAINER me", "x.Dockerfile:7: MAINTAINER in the final stage"},
		{"unknown", "FROBNICATE x", "x.Dockerfile:7: unknown instruction FROBNICATE"},
		{"shell entrypoint", "ENTRYPOINT /usr/local/bin/app --flag", "x.Dockerfile:7: ENTRYPOINT in shell form cannot be reproduced"},
		{"bad json entrypoint", `ENTRYPOINT ["/app", 1]`, "x.Dockerfile:7: ENTRYPOINT in shell form"},
		{"shell cmd", "CMD serve", "x.Dockerfile:7: CMD in shell form"},
		{"second copy", "COPY --from=builder /out/b /b", "x.Dockerfile:7: a second COPY cannot be reproduced: only one binary is supplied (the first COPY is at line 6)"},
		{"expose range", "EXPOSE 8000-8010", "x.Dockerfile:7: EXPOSE 8000-8010: not a port number"},
		{"expose sctp", "EXPOSE 80/sctp", "x.Dockerfile:7: EXPOSE 80/sctp: protocol must be tcp or udp"},
		{"unknown user", "USER app", `x.Dockerfile:7: USER app: user "app" is neither numeric nor in the image's /etc/passwd`},
		{"two users", "USER 1 2", "x.Dockerfile:7: USER takes exactly one"},
		{"bad label", "LABEL a=b c", `x.Dockerfile:7: LABEL: "c" is not key=value`},
		{"bad substitution", "LABEL a=${B%x}", "x.Dockerfile:7: LABEL: unsupported substitution"},
		{"continued run", "RUN a \\\n  b", "x.Dockerfile:7: RUN in the final stage"},
		{"dangling continuation", "LABEL a=b \\", "x.Dockerfile:7: LABEL ends with a line continuation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDockerfile("x.Dockerfile", []byte(minimal+tt.add+"\n"), nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant one starting %q", err, tt.want)
			}
		})
	}
}

func TestFinalStageErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
		args             map[string]string
	}{
		{"no from", "LABEL a=b\n", "x:1: LABEL before the first FROM", nil},
		{"empty", "# nothing\n", "x: no FROM instruction", nil},
		{"other base", "FROM debian:12\nCOPY --from=0 /a /a\n", "x:1: FROM debian:12: only gcr.io/distroless/cc-debian12", nil},
		{"from flag", "FROM --platform=linux/amd64 gcr.io/distroless/cc-debian12:nonroot\n", "x:1: FROM --platform=linux/amd64: flags are not supported", nil},
		{"no copy", "FROM gcr.io/distroless/cc-debian12:nonroot\nUSER 0\n", "x:1: the final stage has no COPY --from=<stage>", nil},
		{"copy from context", "FROM gcr.io/distroless/cc-debian12:nonroot\nCOPY app /app\n", "x:2: COPY without --from=<stage> copies from the build context", nil},
		{"copy from unknown stage", "FROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=build /app /app\n", "x:2: COPY --from=build: no earlier stage", nil},
		{"copy chown", "FROM rust AS b\nFROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=b --chown=1:1 /app /app\n", "x:3: COPY --chown cannot be reproduced", nil},
		{"copy glob", "FROM rust AS b\nFROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=b /out/* /app\n", "x:3: COPY /out/*: only a single file", nil},
		{"copy two sources", "FROM rust AS b\nFROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=b /a /b /dir/\n", "x:3: COPY: expected exactly one source", nil},
		{"escape directive", "# escape=`\nFROM gcr.io/distroless/cc-debian12:nonroot\n", "x:1: escape=` is not supported", nil},
		{"unused build arg", minimal, "x: build arg NOPE is not declared", map[string]string{"NOPE": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDockerfile("x", []byte(tt.text), tt.args)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant one starting %q", err, tt.want)
			}
		})
	}
}

func TestFinalStageSupported(t *testing.T) {
	text := `# escape=\
ARG BASE_TAG=nonroot
FROM rust:1 AS builder
ARG VERSION=ignored-in-builder
RUN make
FROM gcr.io/distroless/cc-debian12:${BASE_TAG} AS final
ARG VERSION=1.2.3
ARG BASE_TAG
ARG NOVALUE
# comments and blank lines inside a continued instruction are dropped

LABEL a="x y" \
# a comment
      b=$VERSION c=${BASE_TAG}-${NOVALUE:-none} \

      'd e'=f
LABEL legacy value with spaces
ENV MODE=prod GREETING="hello $VERSION"
ENV PATH=/opt/bin:$PATH
WORKDIR /srv
WORKDIR data
COPY --from=builder /out/app bin/
USER nonroot:nonroot
EXPOSE 8080 8080/tcp 53/UDP
ENTRYPOINT ["/srv/data/bin/app", "--mode", "$MODE"]
CMD ["serve"]
`
	stage, err := ParseDockerfile("x", []byte(text), map[string]string{"VERSION": "2.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{"a": "x y", "b": "2.0.0", "c": "nonroot-none", "d e": "f", "legacy": "value with spaces"}
	if !reflect.DeepEqual(stage.Labels, wantLabels) {
		t.Errorf("labels %q, want %q", stage.Labels, wantLabels)
	}
	wantEnv := []string{"PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + CertFile, "MODE=prod", "GREETING=hello 2.0.0"}
	if !reflect.DeepEqual(stage.Env, wantEnv) {
		t.Errorf("env %q, want %q", stage.Env, wantEnv)
	}
	if stage.WorkingDir != "/srv/data" || !reflect.DeepEqual(stage.Workdirs, []string{"/srv", "/srv/data"}) {
		t.Errorf("workdir %q (created %q)", stage.WorkingDir, stage.Workdirs)
	}
	if stage.Copy.Dest != "/srv/data/bin/app" || stage.Copy.Line != 22 {
		t.Errorf("copy %+v, want /srv/data/bin/app at line 22", stage.Copy)
	}
	if stage.User != "nonroot:nonroot" {
		t.Errorf("user %q", stage.User)
	}
	if want := []string{"8080/tcp", "53/udp"}; !reflect.DeepEqual(stage.ExposedPorts, want) {
		t.Errorf("ports %q, want %q", stage.ExposedPorts, want)
	}
	// Exec form is not expanded, as in Docker.
	if want := []string{"/srv/data/bin/app", "--mode", "$MODE"}; !reflect.DeepEqual(stage.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", stage.Entrypoint, want)
	}
	if want := []string{"serve"}; !reflect.DeepEqual(stage.Cmd, want) {
		t.Errorf("cmd %q, want %q", stage.Cmd, want)
	}
}

func TestLatestBaseIsRoot(t *testing.T) {
	text := "FROM scratch AS b\nFROM gcr.io/distroless/cc-debian12:latest\nCOPY --from=b /a /a\n"
	stage, err := ParseDockerfile("x", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if stage.User != "0" || stage.WorkingDir != "/" {
		t.Fatalf("user %q workdir %q, want distroless root's 0 and /", stage.User, stage.WorkingDir)
	}
}
