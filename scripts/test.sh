#!/usr/bin/env bash
# wsring's one test command (README "Run the tests"; .ci/run calls it).
# On a fresh Debian machine it installs what the tests need, then runs:
# formatting and lint, every Rust test (real redis-server, real processes and
# sockets), the Autobahn conformance cases through the router (kosoku), and the
# Kubernetes packaging validation (helm lint/template, kubernetes-validate,
# CRD schema checks).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "installing test dependencies"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v unzip >/dev/null || missing+=(unzip)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -c 'import kosoku' 2>/dev/null || python3 -m pip install -q kosoku==0.1.0
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
(cd clients/js && npm ci --silent --no-audit --no-fund && WSRING_BIN="$PWD/../../target/debug/wsring" node --test test/)

step "router dashboard in headless Chromium (playwright-core)"
(cd tests/browser && npm ci --silent --no-audit --no-fund && WSRING_BIN="$PWD/../../target/debug/wsring" node --test)

step "Autobahn conformance through the router (kosoku fuzzingclient)"
bash scripts/conformance.sh

step "Kubernetes packaging validation"
bash .ci/validate-k8s.sh

step "disk used by the build"
du -sh target

step "all checks passed"
