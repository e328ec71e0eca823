#!/usr/bin/env bash
# Autobahn testsuite cases (kosoku fuzzingclient) through the router to the
# ws-pod echo app: `wsring dev --pods 1` on free ports, then kosoku against
# ws://router/?key=autobahn. Fails on any FAILED case; the HTML/JSON report is
# written to target/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import kosoku' 2>/dev/null || python3 -m pip install -q kosoku==0.1.0
# The debug build is the one `cargo test` already made; conformance is about
# behaviour, not speed.
cargo build --locked --bin wsring
out=target/conformance
rm -rf "$out" && mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
public=$(free_port); admin=$(free_port); control=$(free_port)

# Autobahn's 9.x cases send messages up to 16 MiB: allow them for this run.
RUST_LOG=warn target/debug/wsring dev --pods 1 --builtin-bus \
  --listen "127.0.0.1:$public" --admin-listen "127.0.0.1:$admin" --control-listen "127.0.0.1:$control" \
  --pod-arg=--max-message-bytes=67108864 > "$out/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null || true; wait $dev 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q WSRING_DEV_READY "$out/dev.log" && break
  kill -0 $dev 2>/dev/null || { cat "$out/dev.log"; exit 1; }
  sleep 0.1
done
grep -q WSRING_DEV_READY "$out/dev.log" || { echo "wsring dev did not start"; cat "$out/dev.log"; exit 1; }

# 12.* and 13.* test permessage-deflate, an optional extension ws-pod does not
# negotiate (kosoku reports them UNIMPLEMENTED and exits non-zero for that).
status=0
kosoku -m fuzzingclient -p 2 -x '12.*' -x '13.*' -o "$out/reports" \
  "ws://127.0.0.1:$public/?key=autobahn" > "$out/kosoku.log" 2>&1 || status=$?
tail -n 5 "$out/kosoku.log"
python3 - "$out/reports/index.json" <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))
counts = collections.Counter()
failed = []
for agent, cases in index.items():
    for case, result in cases.items():
        counts[result["behavior"]] += 1
        if result["behavior"] in ("FAILED", "ERROR", "UNIMPLEMENTED"):
            failed.append(case)
print("conformance:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
if failed:
    print("FAILED cases:", " ".join(sorted(failed)))
    sys.exit(1)
if not counts:
    sys.exit("no conformance results")
print(f"conformance: {sum(counts.values())} passed, 0 failed")
PY
exit $status
