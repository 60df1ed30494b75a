#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target for FUZZ_SECONDS, then schemathesis against a
# running operator's /openapi.json.
#
# Each target runs on its committed corpus (fuzz/corpus/<target>) with -timeout=1 (an
# input taking over 1 s is a failure, like a panic) and an RSS limit; afterwards the
# corpus is minimized again (libFuzzer -merge=1, what cargo fuzz cmin does) so what is committed stays small. A crash
# leaves its input in fuzz/artifacts/<target>/ (not committed): turn it into a test in
# tests/fuzz_regressions.rs, fix it, and run again.
#
#   FUZZ_SECONDS=600        seconds per target
#   FUZZ_TARGETS="a b"      targets to run (default: all of `cargo fuzz list`)
#   FUZZ_RSS_MB=2048        libFuzzer's -rss_limit_mb
#   FUZZ_TARGET_DIR=...     build directory of the instrumented binaries
#   FUZZ_BUILD=0            run the binaries already built there
#   SCHEMATHESIS=0          skip the API run
#   SCHEMATHESIS_EXAMPLES=50  examples per API operation
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/flotilla-fuzz-target}
SCHEMATHESIS=${SCHEMATHESIS:-1}
SCHEMATHESIS_EXAMPLES=${SCHEMATHESIS_EXAMPLES:-50}
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-fuzz-logs.XXXXXX")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# -s none: the code under test forbids `unsafe`, so AddressSanitizer finds nothing the
# Rust checks don't; without it builds and runs are several times faster. Debug
# assertions (overflow checks) stay on.
fuzz=(cargo +nightly fuzz)
build_flags=(-s none --target-dir "$FUZZ_TARGET_DIR")

[[ ${FUZZ_BUILD:-1} == 0 ]] || "${fuzz[@]}" build "${build_flags[@]}"
targets=${FUZZ_TARGETS:-$("${fuzz[@]}" list)}
# The binaries built above are run directly: `cargo fuzz run` would rebuild whenever a
# source file changed meanwhile, and the figures would mix two builds.
bin_dir=$FUZZ_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

failed=()
summary=()
for target in $targets; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    log=$LOGS/$target.log
    echo "== fuzz $target for ${FUZZ_SECONDS}s (log: $log)"
    status=ok
    dict=()
    [[ -f fuzz/dicts/$target.dict ]] && dict=(-dict="fuzz/dicts/$target.dict")
    "$bin_dir/$target" "$corpus" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$FUZZ_SECONDS" -timeout=1 -rss_limit_mb="$FUZZ_RSS_MB" \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=FAILED
    # The fastflow target writes its pipeline.json into a per-process temp folder.
    rm -rf "${TMPDIR:-/tmp}"/flotilla-fuzz-fastflow-*
    stat() { grep -E "^stat::$1:" "$log" | tail -1 | awk '{print $2}'; }
    last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    line=$(printf '%-10s %-6s execs=%-10s cov=%-6s ft=%-6s exec/s=%-7s slowest=%ss peak_rss=%sMB corpus=%s' \
        "$target" "$status" "$(stat number_of_executed_units)" "${cov:-?}" "${ft:-?}" \
        "$(stat average_exec_per_sec)" "$(stat slowest_unit_time_sec)" "$(stat peak_rss_mb)" \
        "$(find "$corpus" -type f | wc -l)")
    summary+=("$line")
    echo "$line"
    if [[ $status != ok ]]; then
        failed+=("$target")
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|timeout after' "$log" | head -20 || true
        continue
    fi
    # Minimize: keep the smallest inputs that reach all the features the corpus reaches.
    minimized=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-fuzz-cmin.XXXXXX")
    if "$bin_dir/$target" -merge=1 -timeout=1 -rss_limit_mb="$FUZZ_RSS_MB" \
        "$minimized" "$corpus" >>"$log" 2>&1; then
        rm -rf "$corpus" && mv "$minimized" "$corpus"
    else
        echo "minimizing $target failed; the corpus is left as the run grew it (see $log)"
        rm -rf "$minimized"
    fi
    rm -rf "${TMPDIR:-/tmp}"/flotilla-fuzz-fastflow-*
done

if [[ $SCHEMATHESIS != 0 ]]; then
    if bash scripts/schemathesis.sh 2>&1 | tee "$LOGS/schemathesis.log"; then
        summary+=("$(grep '^schemathesis: ' "$LOGS/schemathesis.log" | tail -1); no 5xx")
    else
        summary+=("schemathesis FAILED (log: $LOGS/schemathesis.log)")
        failed+=(schemathesis)
    fi
fi

echo
echo "== summary (logs in $LOGS)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}; crashing inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
