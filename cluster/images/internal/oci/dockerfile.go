package oci

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// DefaultPath and CertFile are the environment that distroless sets in
// every image, so that programs find executables and OpenSSL finds the CA
// bundle without configuration.
const (
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	CertFile    = "/etc/ssl/certs/ca-certificates.crt"
)

// BaseImage is the part of a base image's config that a Dockerfile's final
// stage inherits.
type BaseImage struct {
	User       string
	WorkingDir string
	Env        []string
}

// distrolessBases are the base images that this builder can assemble from
// the host's Debian 12 files, with the config distroless gives them (user
// "0" and "/" for the root variant, 65532 and its home for "nonroot").
var distrolessBases = map[string]BaseImage{
	"gcr.io/distroless/cc-debian12:nonroot": {
		User:       "65532",
		WorkingDir: "/home/nonroot",
		Env:        []string{DefaultPath, "SSL_CERT_FILE=" + CertFile},
	},
	"gcr.io/distroless/cc-debian12:latest": {
		User:       "0",
		WorkingDir: "/",
		Env:        []string{DefaultPath, "SSL_CERT_FILE=" + CertFile},
	},
	"gcr.io/distroless/cc-debian12": {
		User:       "0",
		WorkingDir: "/",
		Env:        []string{DefaultPath, "SSL_CERT_FILE=" + CertFile},
	},
}

// Stage is the final stage of a Dockerfile, resolved into the image config
// and the one file it adds to the base.
type Stage struct {
	Base         string // the FROM image
	User         string
	Entrypoint   []string
	Cmd          []string
	ExposedPorts []string // "8080/tcp", in the order written, without duplicates
	Env          []string // the base's environment updated by ENV, "KEY=value"
	Labels       map[string]string
	WorkingDir   string
	// Workdirs are the directories named by WORKDIR, which Docker creates in
	// the image when they do not exist.
	Workdirs []string
	Copy     Copy
}

// Copy is the final stage's single COPY --from=<stage> instruction.
type Copy struct {
	Line   int
	From   string
	Source string
	Dest   string // absolute path of the file in the image
}

// instruction is one Dockerfile instruction with its continuation lines
// joined; Line is where it starts.
type instruction struct {
	Line    int
	Keyword string // upper case
	Args    string
}

// ParseError is an error tied to a line of a Dockerfile, printed as
// "file:line: message" so that editors and people can jump to it.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// unsupported lists instructions that are valid Dockerfile but need a
// Docker engine (a shell, a build context or runtime state) to reproduce.
var unsupported = map[string]bool{
	"RUN": true, "ADD": true, "VOLUME": true, "HEALTHCHECK": true,
	"SHELL": true, "STOPSIGNAL": true, "ONBUILD": true, "MAINTAINER": true,
}

// ParseDockerfile reads a Dockerfile and returns its final stage. buildArgs
// override ARG defaults like docker build --build-arg; an override for an
// ARG that the Dockerfile never declares is an error, as a typo there
// would otherwise build an image with the default silently.
//
// Earlier stages are skipped: their result reaches the image only through
// COPY --from, whose file the caller supplies.
func ParseDockerfile(file string, data []byte, buildArgs map[string]string) (*Stage, error) {
	instrs, err := splitInstructions(file, string(data))
	if err != nil {
		return nil, err
	}
	p := &stageParser{file: file, buildArgs: buildArgs, args: map[string]string{}, env: map[string]string{}}
	return p.parse(instrs)
}

// splitInstructions turns the text into instructions: it drops comments,
// blank lines and parser directives, and joins lines ending in a
// backslash with the next, as the Dockerfile frontend does.
func splitInstructions(file, text string) ([]instruction, error) {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []instruction
	directives := true // parser directives are only allowed before anything else
	var cur *instruction
	for i, raw := range lines {
		lineNo := i + 1
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") {
			if directives {
				if err := checkDirective(file, lineNo, trimmed); err != nil {
					return nil, err
				}
			}
			continue // comments are dropped, even inside a continued instruction
		}
		directives = false
		if trimmed == "" {
			continue
		}
		body := strings.TrimRight(raw, " \t")
		continued := strings.HasSuffix(body, `\`)
		if continued {
			body = strings.TrimSuffix(body, `\`)
		}
		if cur == nil {
			body = strings.TrimLeft(body, " \t")
			keyword, args := body, ""
			if sp := strings.IndexAny(body, " \t"); sp >= 0 {
				keyword, args = body[:sp], body[sp+1:]
			}
			cur = &instruction{Line: lineNo, Keyword: strings.ToUpper(keyword), Args: args}
		} else {
			cur.Args += body
		}
		if !continued {
			cur.Args = strings.TrimSpace(cur.Args)
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, &ParseError{file, cur.Line, cur.Keyword + " ends with a line continuation but the file ends"}
	}
	return out, nil
}

// checkDirective accepts the parser directives that do not change how the
// file is read (syntax, check) and refuses a non-default escape character,
// which this parser does not implement.
func checkDirective(file string, line int, comment string) error {
	name, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(comment, "#")), "=")
	if !ok {
		return nil
	}
	name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
	if name == "escape" && value != `\` {
		return &ParseError{file, line, fmt.Sprintf("escape=%s is not supported (only the default backslash)", value)}
	}
	return nil
}

// stageParser interprets the final stage's instructions.
type stageParser struct {
	file       string
	buildArgs  map[string]string
	globalArgs map[string]string // ARGs before the first FROM
	stageNames map[string]int    // AS names and indexes of earlier stages
	args       map[string]string // ARGs of the final stage
	env        map[string]string // ENV of the base and the final stage
	stage      Stage
	usedArgs   map[string]bool
}

// parse finds the final FROM, records what earlier stages are called and
// interprets every instruction after the final FROM.
func (p *stageParser) parse(instrs []instruction) (*Stage, error) {
	p.globalArgs = map[string]string{}
	p.stageNames = map[string]int{}
	p.usedArgs = map[string]bool{}
	last := -1
	stages := 0
	for i, in := range instrs {
		switch {
		case in.Keyword == "FROM":
			last = i
			stages++
		case in.Keyword == "ARG" && stages == 0:
			if err := p.declareArgs(in, p.globalArgs, nil); err != nil {
				return nil, err
			}
		case stages == 0:
			return nil, p.errorf(in.Line, "%s before the first FROM", in.Keyword)
		}
	}
	if last < 0 {
		return nil, &ParseError{p.file, 0, "no FROM instruction"}
	}
	// Name earlier stages so that COPY --from can be checked against them.
	index := 0
	for _, in := range instrs[:last] {
		if in.Keyword != "FROM" {
			continue
		}
		words := strings.Fields(in.Args)
		if n := len(words); n >= 3 && strings.EqualFold(words[n-2], "AS") {
			p.stageNames[strings.ToLower(words[n-1])] = index
		}
		p.stageNames[strconv.Itoa(index)] = index
		index++
	}
	if err := p.from(instrs[last]); err != nil {
		return nil, err
	}
	for _, in := range instrs[last+1:] {
		if err := p.instruction(in); err != nil {
			return nil, err
		}
	}
	if p.stage.Copy.Line == 0 {
		return nil, &ParseError{p.file, instrs[last].Line, "the final stage has no COPY --from=<stage>: there is no place for the binary"}
	}
	for name := range p.buildArgs {
		if !p.usedArgs[name] {
			return nil, &ParseError{p.file, 0, fmt.Sprintf("build arg %s is not declared by an ARG in the final stage or before the first FROM", name)}
		}
	}
	p.stage.Env = envList(p.stage.Env, p.env)
	return &p.stage, nil
}

// errorf returns a ParseError for line.
func (p *stageParser) errorf(line int, format string, a ...any) error {
	return &ParseError{p.file, line, fmt.Sprintf(format, a...)}
}

// from checks the final FROM and takes over the base image's config.
func (p *stageParser) from(in instruction) error {
	words, err := shellWords(in.Args, mapLookup(p.globalArgs))
	if err != nil {
		return p.errorf(in.Line, "FROM: %v", err)
	}
	if len(words) > 0 && strings.HasPrefix(words[0], "--") {
		return p.errorf(in.Line, "FROM %s: flags are not supported in the final stage", words[0])
	}
	if len(words) != 1 && !(len(words) == 3 && strings.EqualFold(words[1], "AS")) {
		return p.errorf(in.Line, "FROM: expected an image, optionally followed by AS name")
	}
	base, ok := distrolessBases[words[0]]
	if !ok {
		return p.errorf(in.Line, "FROM %s: only gcr.io/distroless/cc-debian12 (:nonroot or :latest) can be assembled without a Docker engine", words[0])
	}
	p.stage.Base = words[0]
	p.stage.User = base.User
	p.stage.WorkingDir = base.WorkingDir
	p.stage.Env = append([]string(nil), base.Env...)
	p.stage.Labels = map[string]string{}
	for _, kv := range base.Env {
		k, v, _ := strings.Cut(kv, "=")
		p.env[k] = v
	}
	return nil
}

// instruction interprets one instruction of the final stage.
func (p *stageParser) instruction(in instruction) error {
	switch in.Keyword {
	case "ARG":
		return p.declareArgs(in, p.args, p.globalArgs)
	case "LABEL":
		return p.label(in)
	case "ENV":
		return p.envInstr(in)
	case "COPY":
		return p.copyInstr(in)
	case "USER":
		return p.user(in)
	case "EXPOSE":
		return p.expose(in)
	case "ENTRYPOINT":
		list, err := p.execForm(in)
		if err != nil {
			return err
		}
		p.stage.Entrypoint = list
		return nil
	case "CMD":
		list, err := p.execForm(in)
		if err != nil {
			return err
		}
		p.stage.Cmd = list
		return nil
	case "WORKDIR":
		return p.workdir(in)
	case "FROM":
		return p.errorf(in.Line, "internal error: FROM after the final FROM")
	}
	if unsupported[in.Keyword] {
		return p.errorf(in.Line, "%s in the final stage cannot be reproduced without a Docker engine", in.Keyword)
	}
	return p.errorf(in.Line, "unknown instruction %s", in.Keyword)
}

// lookup resolves a variable the way Docker does in a stage: ENV wins over
// ARG of the same name.
func (p *stageParser) lookup(name string) (string, bool) {
	if v, ok := p.env[name]; ok {
		return v, true
	}
	v, ok := p.args[name]
	return v, ok
}

// words expands and splits an instruction's arguments.
func (p *stageParser) words(in instruction) ([]string, error) {
	words, err := shellWords(in.Args, p.lookup)
	if err != nil {
		return nil, p.errorf(in.Line, "%s: %v", in.Keyword, err)
	}
	return words, nil
}

// declareArgs handles ARG NAME[=default] ...: into is the scope it declares
// in; inherit (the global ARGs) gives the value of a name declared without
// a default, as Docker does when a stage re-declares a global ARG.
func (p *stageParser) declareArgs(in instruction, into, inherit map[string]string) error {
	lookup := mapLookup(into)
	if inherit != nil {
		lookup = p.lookup
	}
	words, err := shellWords(in.Args, lookup)
	if err != nil {
		return p.errorf(in.Line, "ARG: %v", err)
	}
	if len(words) == 0 {
		return p.errorf(in.Line, "ARG needs a name")
	}
	for _, w := range words {
		name, value, hasDefault := strings.Cut(w, "=")
		if name == "" {
			return p.errorf(in.Line, "ARG %q: empty name", w)
		}
		if v, ok := p.buildArgs[name]; ok {
			value = v
			p.usedArgs[name] = true
		} else if !hasDefault {
			if inherit == nil {
				continue // a global ARG without a value stays unset
			}
			if v, ok := inherit[name]; ok {
				value = v
			} else {
				continue
			}
		}
		into[name] = value
	}
	return nil
}

// keyValues parses the NAME=value pairs of LABEL and ENV, and their
// legacy single-pair form "NAME value with spaces".
func (p *stageParser) keyValues(in instruction) ([][2]string, error) {
	words, err := p.words(in)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, p.errorf(in.Line, "%s needs at least one key=value", in.Keyword)
	}
	if !strings.Contains(words[0], "=") {
		// Legacy form: the first word is the key, the rest of the line the value.
		key := words[0]
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimLeft(in.Args, " \t"), firstRawWord(in.Args)))
		if rest == "" {
			return nil, p.errorf(in.Line, "%s %s: missing value", in.Keyword, key)
		}
		value, err := expandWord(rest, p.lookup)
		if err != nil {
			return nil, p.errorf(in.Line, "%s: %v", in.Keyword, err)
		}
		return [][2]string{{key, value}}, nil
	}
	var pairs [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, p.errorf(in.Line, "%s: %q is not key=value", in.Keyword, w)
		}
		pairs = append(pairs, [2]string{k, v})
	}
	return pairs, nil
}

// firstRawWord returns the first whitespace-separated word of s as written.
func firstRawWord(s string) string {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// label handles LABEL.
func (p *stageParser) label(in instruction) error {
	pairs, err := p.keyValues(in)
	if err != nil {
		return err
	}
	for _, kv := range pairs {
		p.stage.Labels[kv[0]] = kv[1]
	}
	return nil
}

// envInstr handles ENV; later instructions see the new values.
func (p *stageParser) envInstr(in instruction) error {
	pairs, err := p.keyValues(in)
	if err != nil {
		return err
	}
	for _, kv := range pairs {
		p.env[kv[0]] = kv[1]
		p.stage.Env = appendKey(p.stage.Env, kv[0])
	}
	return nil
}

// copyInstr handles the one COPY --from=<stage> SRC DEST that places the
// binary. COPY from the build context is refused: this builder has no
// build context, only the binary given on its command line.
func (p *stageParser) copyInstr(in instruction) error {
	words, err := p.words(in)
	if err != nil {
		return err
	}
	var from string
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		flag := words[0]
		words = words[1:]
		name, value, _ := strings.Cut(flag, "=")
		if name != "--from" {
			return p.errorf(in.Line, "COPY %s cannot be reproduced: only --from=<stage> is supported", name)
		}
		from = value
	}
	if from == "" {
		return p.errorf(in.Line, "COPY without --from=<stage> copies from the build context, which this builder does not have")
	}
	if _, ok := p.stageNames[strings.ToLower(from)]; !ok {
		return p.errorf(in.Line, "COPY --from=%s: no earlier stage has that name (images are not supported as a source)", from)
	}
	if len(words) != 2 {
		return p.errorf(in.Line, "COPY: expected exactly one source and one destination, got %d paths", len(words))
	}
	if p.stage.Copy.Line != 0 {
		return p.errorf(in.Line, "a second COPY cannot be reproduced: only one binary is supplied (the first COPY is at line %d)", p.stage.Copy.Line)
	}
	src, dest := words[0], words[1]
	if strings.ContainsAny(src, "*?[") || strings.HasSuffix(src, "/") {
		return p.errorf(in.Line, "COPY %s: only a single file can be copied", src)
	}
	if strings.HasSuffix(dest, "/") {
		dest += path.Base(src)
	}
	if !path.IsAbs(dest) {
		dest = path.Join(p.stage.WorkingDir, dest)
	}
	p.stage.Copy = Copy{Line: in.Line, From: from, Source: src, Dest: path.Clean(dest)}
	return nil
}

// user handles USER name-or-uid[:group-or-gid]. Names must be ones the
// assembled /etc/passwd and /etc/group define, since the runtime resolves
// them there and would fail only when a pod starts.
func (p *stageParser) user(in instruction) error {
	words, err := p.words(in)
	if err != nil {
		return err
	}
	if len(words) != 1 {
		return p.errorf(in.Line, "USER takes exactly one user[:group]")
	}
	if err := CheckUser(words[0]); err != nil {
		return p.errorf(in.Line, "USER %v", err)
	}
	p.stage.User = words[0]
	return nil
}

// expose handles EXPOSE port[/tcp|/udp] ...
func (p *stageParser) expose(in instruction) error {
	words, err := p.words(in)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return p.errorf(in.Line, "EXPOSE needs a port")
	}
	for _, w := range words {
		port, err := NormalizePort(w)
		if err != nil {
			return p.errorf(in.Line, "EXPOSE %v", err)
		}
		if !contains(p.stage.ExposedPorts, port) {
			p.stage.ExposedPorts = append(p.stage.ExposedPorts, port)
		}
	}
	return nil
}

// execForm parses the JSON (exec) form of ENTRYPOINT and CMD. The shell
// form would run /bin/sh -c, and the image has no shell.
func (p *stageParser) execForm(in instruction) ([]string, error) {
	var list []string
	if !strings.HasPrefix(in.Args, "[") || json.Unmarshal([]byte(in.Args), &list) != nil {
		return nil, p.errorf(in.Line, "%s in shell form cannot be reproduced (it needs /bin/sh, which the image does not have): use the JSON form [\"...\"]", in.Keyword)
	}
	return list, nil
}

// workdir handles WORKDIR, relative to the previous one as in Docker.
func (p *stageParser) workdir(in instruction) error {
	words, err := p.words(in)
	if err != nil {
		return err
	}
	if len(words) != 1 {
		return p.errorf(in.Line, "WORKDIR takes exactly one path")
	}
	dir := words[0]
	if !path.IsAbs(dir) {
		dir = path.Join(p.stage.WorkingDir, dir)
	}
	p.stage.WorkingDir = path.Clean(dir)
	p.stage.Workdirs = append(p.stage.Workdirs, p.stage.WorkingDir)
	return nil
}

// NormalizePort turns "8080" or "8080/TCP" into "8080/tcp" and refuses
// ranges and other protocols.
func NormalizePort(s string) (string, error) {
	port, proto, hasProto := strings.Cut(s, "/")
	proto = strings.ToLower(proto)
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return "", fmt.Errorf("%s: protocol must be tcp or udp", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%s: not a port number 1-65535 (ranges are not supported)", s)
	}
	return fmt.Sprintf("%d/%s", n, proto), nil
}

// Users and groups of the assembled /etc/passwd and /etc/group, by name.
var (
	knownUsers  = map[string]int{"root": 0, "nobody": 65534, "nonroot": 65532}
	knownGroups = map[string]int{"root": 0, "tty": 5, "staff": 50, "nobody": 65534, "nonroot": 65532}
)

// CheckUser accepts "uid", "uid:gid" or names that the base's /etc/passwd
// and /etc/group define.
func CheckUser(s string) error {
	user, group, hasGroup := strings.Cut(s, ":")
	if !isNumber(user) {
		if _, ok := knownUsers[user]; !ok {
			return fmt.Errorf("%s: user %q is neither numeric nor in the image's /etc/passwd (root, nobody, nonroot)", s, user)
		}
	}
	if hasGroup && !isNumber(group) {
		if _, ok := knownGroups[group]; !ok {
			return fmt.Errorf("%s: group %q is neither numeric nor in the image's /etc/group", s, group)
		}
	}
	return nil
}

// isNumber reports whether s is a non-empty decimal number.
func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// mapLookup adapts a map to a lookupFunc.
func mapLookup(m map[string]string) lookupFunc {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// appendKey records that env key was set, keeping the first position of a
// key that the base or an earlier ENV already set.
func appendKey(list []string, key string) []string {
	for _, kv := range list {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return list
		}
	}
	return append(list, key+"=")
}

// envList fills the values into the ordered key list.
func envList(order []string, values map[string]string) []string {
	out := make([]string, 0, len(order))
	for _, kv := range order {
		k, _, _ := strings.Cut(kv, "=")
		out = append(out, k+"="+values[k])
	}
	return out
}

// contains reports whether list has s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
