#!/usr/bin/env bash
# Benchmark of the foundation (issue 2), run by `make bench`.
#
# Applies 10,000 resources (5,000 Pipelines + 5,000 Schedules with every-minute crons)
# through the API of a release `flotilla serve` on SQLite, and measures:
#   - `flotilla apply -f <dir>` of all of them (one apply set, several files),
#   - `flotilla get pipelines -o json > /dev/null` with them stored (median of 5),
#   - a re-apply that changes nothing,
#   - the peak RSS of `serve` holding them (VmHWM),
#   - with 5,000 more Pipelines applied, `get pipelines -o json` of 10,000 pipelines,
#   - finally the peak RSS once the schedule controller has acted on a minute slot
#     (5,000 every-minute schedules create 5,000 Runs per minute).
# The foundation figures are taken right after a minute starts, so the schedule
# controller's slot does not fall into them; the table says how many Runs existed.
# The server gets a Docker endpoint that refuses connections and its own instance label:
# the Runs the schedules create stay Pending and no container is ever started.
#
# Prints figures next to the targets. It fails only when something crashes or answers
# wrongly; a missed target is a figure to look at, not an error.
#
# Environment: PIPELINES (default 5000), RUNS (list repetitions, default 5),
# CARGO_TARGET_DIR (where the release build goes), KEEP=1 keeps the temp dir,
# NO_WAIT=1 skips waiting for a minute to start.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIPELINES="${PIPELINES:-5000}"
RUNS="${RUNS:-5}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
# Manifests per file; ~220 bytes each keeps every file far below the 16 MiB limit.
PER_FILE=1000

# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
now_ns() { date +%s%N; }
# Milliseconds between two now_ns readings.
elapsed_ms() { echo $((($2 - $1) / 1000000)); }
bench_build

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench.XXXXXX")"
SERVER_PID=""
cleanup() { bench_stop_server; bench_remove_work; }
trap cleanup EXIT

# generate DIR FIRST COUNT WITH_SCHEDULES: manifests bench-FIRST… into DIR/set-NNN.yaml.
generate() {
    mkdir -p "$1"
    awk -v first="$2" -v n="$3" -v schedules="$4" -v per="$PER_FILE" -v dir="$1" 'BEGIN {
        for (i = first; i < first + n; i++) {
            file = sprintf("%s/set-%03d.yaml", dir, int((i - first) / per));
            name = sprintf("bench-%05d", i);
            printf "---\napiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: %s\n  labels: { suite: bench }\nspec:\n  source: { path: %s }\n  python: \"3.12\"\n  env: { INDEX: \"%d\" }\n  resources: { memory: 256Mi, cpus: \"0.5\" }\n  timeout: 10m\n", name, name, i > file;
            if (schedules) {
                printf "---\napiVersion: flotilla.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: %s\nspec:\n  pipelineRef: { name: %s }\n  cron: \"* * * * *\"\n  timeZone: UTC\n  concurrencyPolicy: Forbid\n", name, name > file;
            }
        }
    }'
}

log "==> generating $PIPELINES Pipelines + $PIPELINES Schedules (and $PIPELINES more Pipelines)"
MANIFESTS="$WORK/manifests"
generate "$MANIFESTS" 0 "$PIPELINES" 1
generate "$WORK/extra" "$PIPELINES" "$PIPELINES" 0
FILES=$(find "$MANIFESTS" -name '*.yaml' | wc -l)
BYTES=$(cat "$MANIFESTS"/*.yaml | wc -c)
LARGEST=$(find "$MANIFESTS" -name '*.yaml' -printf '%s\n' | sort -n | tail -1)
log "    $FILES files, $BYTES bytes in all, largest $LARGEST bytes"

bench_serve_without_docker "bench-$$"
export FLOTILLA_SERVER="$SERVER" FLOTILLA_TOKEN="$TOKEN"
# No saved `flotilla login` configuration takes part.
export XDG_CONFIG_HOME="$WORK/config"
log "    $SERVER (pid $SERVER_PID)"

alive() { kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; log "serve crashed"; exit 1; }; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status"; }
count() { "$BIN" get "$1" -A -o json | grep -c "\"kind\": \"$2\"" || true; }
RSS_IDLE_KB=$(hwm_kb)

if [[ "${NO_WAIT:-0}" != 1 ]]; then
    log "==> waiting for a minute to start (the schedule controller acts on minute slots)"
    while [[ $((10#$(date +%S))) -ge 2 ]]; do sleep 0.2; done
fi

log "==> apply -f (all $((PIPELINES * 2)) objects, one apply set)"
start=$(now_ns)
"$BIN" apply -f "$MANIFESTS" >"$WORK/apply.out"
APPLY_MS=$(elapsed_ms "$start" "$(now_ns)")
CREATED=$(grep -c ' created$' "$WORK/apply.out" || true)
[[ "$CREATED" -eq $((PIPELINES * 2)) ]] || { log "expected $((PIPELINES * 2)) created, got $CREATED"; exit 1; }

log "==> get pipelines -o json, $RUNS times"
LIST_TIMES=()
for _ in $(seq 1 "$RUNS"); do
    start=$(now_ns)
    "$BIN" get pipelines -o json >/dev/null
    LIST_TIMES+=("$(elapsed_ms "$start" "$(now_ns)")")
done
LIST_MS=$(printf '%s\n' "${LIST_TIMES[@]}" | median)
# The same list straight from the API (no CLI process, no pretty-printing).
API_TIMES=()
for _ in $(seq 1 "$RUNS"); do
    API_TIMES+=("$(curl -sf -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
        "$SERVER/apis/flotilla.dev/v1alpha1/namespaces/default/pipelines" | awk '{ printf "%d", $1 * 1000 }')")
done
API_LIST_MS=$(printf '%s\n' "${API_TIMES[@]}" | median)

log "==> re-apply without changes"
start=$(now_ns)
"$BIN" apply -f "$MANIFESTS" >"$WORK/reapply.out"
REAPPLY_MS=$(elapsed_ms "$start" "$(now_ns)")
UNCHANGED=$(grep -c ' unchanged$' "$WORK/reapply.out" || true)
[[ "$UNCHANGED" -eq $((PIPELINES * 2)) ]] || { log "expected $((PIPELINES * 2)) unchanged, got $UNCHANGED"; exit 1; }
alive
RSS_KB=$(hwm_kb)
RUNS_THEN=$(count runs Run)
[[ $(count pipelines Pipeline) -eq "$PIPELINES" ]] || { log "wrong number of pipelines stored"; exit 1; }
DB_BYTES=$(du -cb "$WORK/data"/flotilla.db* 2>/dev/null | tail -1 | cut -f1)

log "==> $PIPELINES more Pipelines (another field manager), then get pipelines -o json of $((PIPELINES * 2))"
start=$(now_ns)
"$BIN" apply --field-manager bench-extra -f "$WORK/extra" >/dev/null
EXTRA_MS=$(elapsed_ms "$start" "$(now_ns)")
BIG_TIMES=()
for _ in $(seq 1 "$RUNS"); do
    start=$(now_ns)
    "$BIN" get pipelines -o json >/dev/null
    BIG_TIMES+=("$(elapsed_ms "$start" "$(now_ns)")")
done
BIG_LIST_MS=$(printf '%s\n' "${BIG_TIMES[@]}" | median)
[[ $(count pipelines Pipeline) -eq $((PIPELINES * 2)) ]] || { log "wrong number of pipelines stored"; exit 1; }
alive
RSS_BIG_KB=$(hwm_kb)

log "==> holding them past the next minute slot"
SLOT_WAIT=$((60 - 10#$(date +%S) + 15))
sleep "$SLOT_WAIT"
alive
RSS_SLOT_KB=$(hwm_kb)
RUNS_SLOT=$(count runs Run)

verdict() { if [[ "$1" -le "$2" ]]; then echo "ok"; else echo "MISSED"; fi; }
row() { printf '%-56s %7s %-2s %7s %-2s %s\n' "$1" "$2" "$3" "$4" "$3" "$5"; }

printf '\nFlotilla foundation benchmark: %d Pipelines + %d Schedules, SQLite, release build\n\n' "$PIPELINES" "$PIPELINES"
printf '%-56s %10s %10s\n' "MEASURE" "RESULT" "TARGET"
row "apply -f, create $((PIPELINES * 2))" "$APPLY_MS" ms 3000 "$(verdict "$APPLY_MS" 3000)"
row "re-apply, nothing changed" "$REAPPLY_MS" ms - ""
row "get pipelines -o json, $PIPELINES pipelines (median of $RUNS)" "$LIST_MS" ms 300 "$(verdict "$LIST_MS" 300)"
row "  the same list from the API with curl (median)" "$API_LIST_MS" ms - ""
row "serve peak RSS holding $((PIPELINES * 2)) ($RUNS_THEN runs)" "$((RSS_KB / 1024))" MB 80 "$(verdict "$((RSS_KB / 1024))" 80)"
row "  serve RSS before the apply" "$((RSS_IDLE_KB / 1024))" MB - ""
row "  SQLite files" "$((DB_BYTES / 1024 / 1024))" MB - ""
row "apply -f, create $PIPELINES more Pipelines" "$EXTRA_MS" ms - ""
row "get pipelines -o json, $((PIPELINES * 2)) pipelines (median of $RUNS)" "$BIG_LIST_MS" ms 300 "$(verdict "$BIG_LIST_MS" 300)"
row "serve peak RSS holding $((PIPELINES * 3))" "$((RSS_BIG_KB / 1024))" MB - ""
row "serve peak RSS after a schedule slot ($RUNS_SLOT runs)" "$((RSS_SLOT_KB / 1024))" MB - ""
printf '\nlist runs (ms): %s | %s\n' "${LIST_TIMES[*]}" "${BIG_TIMES[*]}"
