#!/usr/bin/env bash
# Autobahn testsuite cases (kosoku fuzzingclient) through the router to the
# ws-pod echo app, once per router→pod transport (HTTP/1.1 and HTTP/2):
# `wsring dev --pods 1` on free ports, then kosoku against
# ws://router/?key=autobahn. Fails on any FAILED case; the HTML/JSON reports
# are written to target/conformance/<transport>/.
set -euo pipefail
cd "$(dirname "$0")/.."

# kosoku from the tools venv (Debian's python3 refuses global pip installs).
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
tools_python
# The debug build is the one `cargo test` already made; conformance is about
# behaviour, not speed.
cargo build --locked --bin wsring
root=target/conformance
rm -rf "$root" && mkdir -p "$root"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_suite TRANSPORT: the whole suite through a router with --pod-transport TRANSPORT.
run_suite() {
  local transport=$1 out="$root/$1" public admin control dev status=0
  mkdir -p "$out"
  public=$(free_port); admin=$(free_port); control=$(free_port)
  # Autobahn's 9.x cases send messages up to 16 MiB: allow them for this run.
  RUST_LOG=warn target/debug/wsring dev --pods 1 --builtin-bus \
    --listen "127.0.0.1:$public" --admin-listen "127.0.0.1:$admin" --control-listen "127.0.0.1:$control" \
    --pod-arg=--max-message-bytes=67108864 --router-arg=--pod-transport="$transport" > "$out/dev.log" 2>&1 &
  dev=$!
  for _ in $(seq 1 300); do
    grep -q WSRING_DEV_READY "$out/dev.log" && break
    kill -0 $dev 2>/dev/null || { cat "$out/dev.log"; return 1; }
    sleep 0.1
  done
  grep -q WSRING_DEV_READY "$out/dev.log" || { echo "wsring dev did not start"; cat "$out/dev.log"; kill $dev; return 1; }

  # 12.* and 13.* test permessage-deflate, an optional extension ws-pod does not
  # negotiate (kosoku reports them UNIMPLEMENTED and exits non-zero for that).
  kosoku -m fuzzingclient -p 2 -x '12.*' -x '13.*' -o "$out/reports" \
    "ws://127.0.0.1:$public/?key=autobahn" > "$out/kosoku.log" 2>&1 || status=$?
  kill $dev 2>/dev/null || true
  wait $dev 2>/dev/null || true
  tail -n 5 "$out/kosoku.log"
  python3 - "$out/reports/index.json" "$transport" <<'PY' || return 1
import collections, json, sys
index = json.load(open(sys.argv[1]))
transport = sys.argv[2]
counts = collections.Counter()
failed = []
for agent, cases in index.items():
    for case, result in cases.items():
        counts[result["behavior"]] += 1
        if result["behavior"] in ("FAILED", "ERROR", "UNIMPLEMENTED"):
            failed.append(case)
print(f"conformance ({transport}):", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
if failed:
    print("FAILED cases:", " ".join(sorted(failed)))
    sys.exit(1)
if not counts:
    sys.exit("no conformance results")
print(f"conformance ({transport}): {sum(counts.values())} passed, 0 failed")
PY
  return $status
}

run_suite http1
run_suite h2
