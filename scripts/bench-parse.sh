#!/usr/bin/env bash
# Benchmark of the manifest reader against a YAML alias bomb, run by `make bench`.
#
# The document of src/resource/manifest.rs's `alias_bombs_are_rejected` (nine levels of
# nine aliases: 9^9 ≈ 387 million "lol" if expanded) is applied through
# `POST …/v1alpha1/apply` of a release `flotilla serve`. The answer must be a 4xx saying
# the text is not valid YAML; the figure is the median time of that answer (target:
# under 2 s; the unit test asserts only the outcome, since a wall-clock bound there
# flakes on a loaded machine).
#
# Prints figures next to the target; fails only when something crashes or answers wrong.
# Environment: RUNS (repetitions, default 5), KEEP=1 keeps the temp dir, CARGO_TARGET_DIR,
# FLOTILLA_BIN (a binary to measure instead of building the release one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
RUNS="${RUNS:-5}"
TARGET_MS=2000

# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
bench_build

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-parse.XXXXXX")"
SERVER_PID=""
cleanup() { bench_stop_server; bench_remove_work; }
trap cleanup EXIT

# The alias bomb: a: &a [9 × "lol"], then b … i each nine aliases of the one before.
{
    printf 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous=a
    for name in b c d e f g h i; do
        refs=$(printf '*%s,' "$previous" "$previous" "$previous" "$previous" "$previous" \
            "$previous" "$previous" "$previous" "$previous")
        printf '%s: &%s [%s]\n' "$name" "$name" "${refs%,}"
        previous=$name
    done
} >"$WORK/bomb.yaml"

bench_serve_without_docker "bench-parse-$$"

TIMES=()
for _ in $(seq 1 "$RUNS"); do
    answer=$(curl -s -o "$WORK/answer.json" -w '%{http_code} %{time_total}' \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/yaml' \
        --data-binary "@$WORK/bomb.yaml" "$SERVER/apis/flotilla.dev/v1alpha1/apply?fieldManager=bench")
    status=${answer%% *}
    seconds=${answer#* }
    if [[ "$status" != 4* ]] || ! grep -q 'not valid YAML' "$WORK/answer.json"; then
        log "the alias bomb was not refused as invalid YAML: HTTP $status"
        cat "$WORK/answer.json" >&2
        exit 1
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; log "serve crashed"; exit 1; }
    TIMES+=("$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')")
done
MS=$(printf '%s\n' "${TIMES[@]}" | median)
verdict=$([[ "$MS" -lt "$TARGET_MS" ]] && echo ok || echo MISSED)

printf '\n%-58s %10s %8s  %s\n' "manifest reader" "measured" "target" ""
printf '%-58s %7s ms %5s ms  %s\n' "alias bomb (9 levels × 9 aliases) refused, median of $RUNS" \
    "$MS" "$TARGET_MS" "$verdict"
