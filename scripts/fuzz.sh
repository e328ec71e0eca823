#!/usr/bin/env bash
# cargo-fuzz (libFuzzer) targets of fuzz/: router key extraction, control
# messages, ring documents, Origin allow-lists. Each target runs for FUZZ_SECONDS (default 30),
# starting from the committed seeds in fuzz/corpus/<target> (read-only) plus
# what earlier runs found in fuzz/work/<target> (git-ignored). Crashes are
# written to fuzz/artifacts/<target>/ and fail the script.
#
#   scripts/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh ring_document
#   FUZZ_SANITIZER=none scripts/fuzz.sh  # faster build and runs, no ASan
#
# libFuzzer needs nightly rustc flags: a nightly toolchain is used when rustup
# has one, otherwise stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
sanitizer=${FUZZ_SANITIZER:-address}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(key_extraction control_message ring_document origin_allow_list)

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

start=$SECONDS
"${fuzz[@]}" build --sanitizer "$sanitizer"   # every target, once
echo "build: $((SECONDS - start)) s"

for target in "${targets[@]}"; do
    work=fuzz/work/$target
    mkdir -p "$work"
    echo "== $target (${seconds} s)"
    log=$(mktemp)
    t0=$SECONDS
    if ! "${fuzz[@]}" run --sanitizer "$sanitizer" "$target" "$work" "fuzz/corpus/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "FAILED: $target (reproducer in fuzz/artifacts/$target/)"
        exit 1
    fi
    # libFuzzer's last status line (coverage, features, exec/s) and final stats.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log"
    echo "corpus: $(find "$work" -type f | wc -l) inputs; $((SECONDS - t0)) s"
    rm -f "$log"
done
echo "fuzz.sh done in $((SECONDS - start)) s"
