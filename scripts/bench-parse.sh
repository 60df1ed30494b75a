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

log() { printf '%s\n' "$*" >&2; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

if [[ -z "${FLOTILLA_BIN:-}" ]]; then
    log "==> building the release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin flotilla)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-parse.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
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

log "==> starting flotilla serve (SQLite in $WORK/data)"
KEY="$("$BIN" secret gen-key)"
TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
ENCRYPTION_KEY="$KEY" FLOTILLA_ADMIN_TOKEN="$TOKEN" DOCKER_HOST=tcp://127.0.0.1:1 \
    FLOTILLA_INSTANCE="bench-parse-$$" RUST_LOG=warn \
    "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
SERVER=""
for _ in $(seq 1 300); do
    SERVER="$(sed -n 's#^Flotilla API: *\(http://[^/]*\)/.*#\1#p' "$WORK/serve.out" | head -1)"
    [[ -n "$SERVER" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; log "serve died at start"; exit 1; }
    sleep 0.1
done
[[ -n "$SERVER" ]] || { cat "$WORK/serve.log" >&2; log "serve printed no address"; exit 1; }

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
