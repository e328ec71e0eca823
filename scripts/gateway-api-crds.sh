#!/usr/bin/env bash
# Write the Gateway API's standard-channel CRDs, of the version Traefik in
# cluster/traefik implements, to FILE (one YAML stream):
#
#   bash scripts/gateway-api-crds.sh FILE
#
# They come from the sigs.k8s.io/gateway-api Go module (config/crd/standard/),
# the one source of them this machine reaches; scripts/cluster.sh installs them
# in the test cluster and .ci/validate-k8s.sh checks the Gateway example
# against them.
set -euo pipefail
out="${1:?usage: gateway-api-crds.sh FILE}"
mod="$(cd "$(dirname "${BASH_SOURCE[0]}")/../cluster/traefik" && pwd)"
version="$(cd "$mod" && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)"
dir="$(cd "$mod" && go mod download -json "sigs.k8s.io/gateway-api@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$dir/config/crd/standard" ]] || { echo "gateway-api-crds: no CRDs in ${dir:-the module cache}" >&2; exit 1; }
for f in "$dir"/config/crd/standard/*.yaml; do
  echo "---"
  cat "$f"
done >"$out.new"
mv "$out.new" "$out"
