#!/usr/bin/env bash
# wsring's one test command (README "Run the tests"; .ci/run calls it).
# On a fresh Debian machine it installs what the tests need, then runs:
# formatting and lint, every Rust test (real redis-server, real processes and
# sockets), the Autobahn conformance cases through the router (kosoku), the
# Kubernetes packaging validation (helm lint/template, kubernetes-validate,
# CRD schema checks), and the README's Kubernetes walk-through on a real
# single-node cluster (scripts/cluster.sh: upstream Kubernetes built from its
# Go modules, containerd, CoreDNS, Traefik), torn down again pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s  (%d s)\n' "$*" "$((SECONDS - run_started))"; }
run_started=$SECONDS
# shellcheck source=scripts/tools.sh
source scripts/tools.sh

# need CMD MIN_VERSION HOW VERSION_CMD...: CMD must exist and report at least
# MIN_VERSION (x.y); README "Two commands" lists these prerequisites.
need() {
  local cmd="$1" min="$2" how="$3" have
  shift 3
  command -v "$cmd" >/dev/null || { echo "error: $cmd is missing: $how" >&2; exit 1; }
  # sed -n 1p, not head: under pipefail an early-exiting head can be a SIGPIPE.
  have="$("$@" 2>&1 | grep -oE '[0-9]+\.[0-9]+' | sed -n 1p)"
  if [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | sed -n 1p)" != "$min" ]; then
    echo "error: $cmd $have is older than $min: $how" >&2
    exit 1
  fi
}

step "prerequisites"
need cargo 1.85 "install Rust with rustup (https://rustup.rs)" cargo --version
need node 20.0 "install Node.js 20 or newer (Debian 12's nodejs is 18: use NodeSource or nvm)" node --version
need npm 9.0 "npm comes with Node.js" npm --version
need go 1.24 "install Go 1.24 or newer (https://go.dev/dl/); the test cluster builds Kubernetes from its Go modules" go version

step "installing test dependencies (only what is missing; no services started)"
# redis-server: every end-to-end test starts its own on a free port.
# curl: the README session test. chromium: the dashboard test. unzip: helm and
# kubectl come in a zip.
# gcc and libc6-dev: the linker rustc calls and the C compiler of ring's build
# script (a stock Debian has neither; rustup does not install them).
tools_apt redis-server curl unzip chromium fonts-liberation gcc libc6-dev
# kosoku (Autobahn cases) and the packaging validators, in one venv.
tools_python
redis-server --version

# A one-off build gains nothing from incremental state, which would be a third
# of target/; with the dev profile in Cargo.toml a clean run needs a few GiB.
export CARGO_INCREMENTAL=0
step "disk before the build"
df -h . | tail -n 1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, property, API-server mock, CRD schema/staleness and end-to-end tests)"
cargo test --workspace --locked

step "JavaScript client against local mode (node --test)"
(cd clients/js && npm ci --loglevel=error --no-audit --no-fund && WSRING_BIN="$PWD/../../target/debug/wsring" node --test test/)

step "router dashboard in headless Chromium (playwright-core)"
(cd tests/browser && npm ci --loglevel=error --no-audit --no-fund && WSRING_BIN="$PWD/../../target/debug/wsring" node --test)

step "Autobahn conformance through the router (kosoku fuzzingclient)"
bash scripts/conformance.sh

step "Kubernetes packaging validation"
bash .ci/validate-k8s.sh

step "test-cluster tools (cluster/images: OCI images from the Dockerfiles' runtime stage, pause)"
(cd cluster/images && go vet ./... && go test -p 1 ./...)

step "the README's Kubernetes walk-through on a real cluster (scripts/cluster.sh)"
# The cluster goes away whatever happens below: no process, namespace, bridge,
# rule, mount or cgroup of it outlives this script.
trap 'bash scripts/cluster.sh down' EXIT
started=$SECONDS
bash scripts/cluster.sh up
echo "cluster build and start: $((SECONDS - started)) s"
if ! cargo test --locked --test cluster -- --ignored --nocapture; then
  bash scripts/cluster.sh diagnose
  exit 1
fi
bash scripts/cluster.sh down
trap - EXIT

step "disk used by the build"
du -sh target

step "all checks passed"
echo "total: $((SECONDS - run_started)) s"
