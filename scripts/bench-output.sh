#!/usr/bin/env bash
# Benchmark of run output shipped to a shared PostgreSQL store, run by `make bench`.
#
# Two `flotilla serve` replicas (a leader and a follower, each with its own data dir) on
# one throwaway PostgreSQL server (initdb in the work dir, default durability settings),
# Docker through the socket proxy:
#
#  1. one run printing 200 MB (2,000,000 numbered lines of 100 bytes) on the leader, which
#     captures it to its file and ships it into PostgreSQL in chunks of at most 1 MiB:
#     wall time trigger → Succeeded (the run is only seen finished once its last chunk is
#     stored) and the leader's RSS growth (peak - before; target ≤ 50 MB);
#  2. what PostgreSQL holds: rows, bytes (as many as the leader's file) and the table's
#     size on disk, compressed with lz4 where the server has it;
#  3. the follower, which has no file, serving that log as text from the chunks: time,
#     lines, identical to the leader's file, and its RSS growth;
#  4. for comparison, the same run on a lone operator on SQLite (nothing shipped).
#
# Prints figures; fails only when something breaks or a byte differs.
# Environment: PROXY_PORT (default 23794), KEEP=1 keeps the work dir, FLOTILLA_BIN (a
# binary to measure instead of building the release one), CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
PORT="${PROXY_PORT:-23794}"
# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

bench_build
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-output.XXXXXX")"
chmod 755 "$WORK" # PostgreSQL runs as nobody under root and needs to reach its dir
INSTANCE="bench-output-$$"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    bench_stop_postgres
    bash "$ROOT/scripts/proxy.sh" stop --listen "127.0.0.1:$PORT" >/dev/null 2>&1 || true
    docker ps -aq --filter "label=flotilla.dev/managed-by=$INSTANCE" | xargs -r docker rm -f >/dev/null
    bench_remove_work
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

log "==> starting PostgreSQL"
bench_start_postgres "$WORK/pg"
DB_URL="$(bench_create_database flotilla)"
PSQL=("$PG_BIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres -d flotilla)

mkdir -p "$WORK/pipelines/loud"
# 200 MB: 2,000,000 lines of 100 bytes, numbered so they can be counted.
cat > "$WORK/pipelines/loud/main.py" <<'PY'
import sys
pad = "x" * 88
write = sys.stdout.write
for i in range(2_000_000):
    write(f"{i:010d} {pad}\n")
PY
: > "$WORK/pipelines/loud/requirements.txt"
cat > "$WORK/pipelines/loud/pipeline.yaml" <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: loud }
spec: { source: { path: loud }, resources: { memory: 256Mi } }
YAML

bash "$ROOT/scripts/proxy.sh" start --listen "127.0.0.1:$PORT" >/dev/null
export ENCRYPTION_KEY="$("$BIN" secret gen-key)"
export FLOTILLA_ADMIN_TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
AUTH=(-H "Authorization: Bearer $FLOTILLA_ADMIN_TOKEN")
API=/apis/flotilla.dev/v1alpha1/namespaces/default

# start_replica NAME ARGS…: starts `flotilla serve` with its data dir $WORK/NAME; sets PID
# and ADDRESS.
start_replica() {
    local name="$1"
    shift
    RUST_LOG=warn "$BIN" serve --data-dir "$WORK/$name" --listen 127.0.0.1:0 \
        --pipelines-dir "$WORK/pipelines" --docker-host "tcp://127.0.0.1:$PORT" \
        --instance "$INSTANCE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PID=$!
    PIDS+=("$PID")
    ADDRESS=""
    for _ in $(seq 1 300); do
        ADDRESS="$(sed -n 's#^Flotilla API: *\(http://[^/]*\)/.*#\1#p' "$WORK/$name.out" | head -1)"
        [[ -n "$ADDRESS" ]] && return 0
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; log "$name died at start"; exit 1; }
        sleep 0.1
    done
    log "$name printed no address"
    exit 1
}
# wait_for CONDITION-COMMAND… : polls every 0.2 s, at most 10 minutes.
wait_for() {
    for _ in $(seq 1 3000); do "$@" && return 0; sleep 0.2; done
    log "timed out waiting for: $*"
    exit 1
}
leads() { curl -sf "$1/readyz" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["leader"]["self"] else 1)'; }
has_pipeline() { curl -sf "${AUTH[@]}" "$1$API/pipelines/loud" >/dev/null; }
phase_of() { curl -sf "${AUTH[@]}" "$1$API/runs/$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"].get("phase", ""))'; }
finished() { [[ "$(phase_of "$1" "$2")" =~ ^(Succeeded|Failed|Cancelled)$ ]]; }
create_run() {
    curl -sf "${AUTH[@]}" -H 'content-type: application/json' \
        -d '{"spec":{"pipelineRef":{"name":"loud"}}}' "$1$API/runs" |
        python3 -c 'import json,sys; r = json.load(sys.stdin)["metadata"]; print(r["name"], r["uid"])'
}
# measure_run ADDRESS PID DATA_DIR: runs `loud` on the operator at ADDRESS; sets WALL,
# GROWTH_MB, RUN_NAME, RUN_UID and LOG (its local file).
measure_run() {
    wait_for has_pipeline "$1"
    # Reset the peak (VmHWM) to the current RSS, so the peak read after is this run's.
    echo 5 > "/proc/$2/clear_refs" 2>/dev/null || log "cannot reset VmHWM; the peak may predate this run"
    local before start
    before="$(kib "$2" VmRSS)"
    start="$(now)"
    read -r RUN_NAME RUN_UID < <(create_run "$1")
    wait_for finished "$1" "$RUN_NAME"
    WALL="$(since "$start")"
    [[ "$(phase_of "$1" "$RUN_NAME")" == Succeeded ]] || { log "the run did not succeed"; exit 1; }
    GROWTH_MB=$(( ($(kib "$2" VmHWM) - before) / 1024 ))
    LOG="$3/runs/$RUN_UID/attempt-1.log"
}

log "==> 1. two replicas on PostgreSQL: a run printing 200 MB on the leader"
start_replica leader --database "$DB_URL"
LEADER="$ADDRESS" LEADER_PID="$PID"
wait_for leads "$LEADER"
start_replica follower --database "$DB_URL"
FOLLOWER="$ADDRESS" FOLLOWER_PID="$PID"
measure_run "$LEADER" "$LEADER_PID" "$WORK/leader"
ship_wall="$WALL" ship_growth="$GROWTH_MB" run="$RUN_NAME" uid="$RUN_UID" leader_log="$LOG"
leader_lines=$(wc -l < "$leader_log")
leader_bytes=$(stat -c %s "$leader_log")

log "==> 2. what PostgreSQL holds"
IFS='|' read -r rows stored_bytes largest < <("${PSQL[@]}" -c \
    "SELECT count(*), sum(octet_length(data)), max(octet_length(data)) FROM run_output \
     WHERE run_uid = '$uid' AND file = 'attempt-1.log'")
table_mb=$("${PSQL[@]}" -c "SELECT pg_total_relation_size('run_output') / 1048576")
compression=$("${PSQL[@]}" -c "SELECT CASE attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END \
    FROM pg_attribute WHERE attrelid = 'run_output'::regclass AND attname = 'data'")
[[ "$stored_bytes" == "$leader_bytes" ]] || { log "PostgreSQL holds $stored_bytes bytes of the $leader_bytes of the leader's file"; exit 1; }

log "==> 3. the follower serves the log from PostgreSQL"
echo 5 > "/proc/$FOLLOWER_PID/clear_refs" 2>/dev/null || true
follower_before="$(kib "$FOLLOWER_PID" VmRSS)"
[[ ! -e "$WORK/follower/runs/$uid" ]] || { log "the follower has a local copy: nothing to measure"; exit 1; }
start="$(now)"
curl -sf "${AUTH[@]}" -o "$WORK/served.log" "$FOLLOWER$API/runs/$run/log"
serve_wall="$(since "$start")"
follower_growth=$(( ($(kib "$FOLLOWER_PID" VmHWM) - follower_before) / 1024 ))
served_lines=$(wc -l < "$WORK/served.log")
cmp -s "$WORK/served.log" "$leader_log" || { log "the follower's log differs from the leader's file"; exit 1; }
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
PIDS=()

log "==> 4. the same run on a lone operator on SQLite (nothing shipped)"
start_replica sqlite
measure_run "$ADDRESS" "$PID" "$WORK/sqlite"
lone_wall="$WALL" lone_growth="$GROWTH_MB"
lone_lines=$(wc -l < "$LOG")

printf '\nload: %s\n' "$(uptime)"
printf '\n%-62s %s\n' "benchmark" "figure"
printf '%-62s %s s\n' "200 MB run on the leader, trigger to Succeeded (shipped)" "$ship_wall"
printf '%-62s %s s\n' "the same run on a lone SQLite operator (not shipped)" "$lone_wall"
printf '%-62s %s MB (target ≤ 50 MB)\n' "leader RSS growth while capturing and shipping (peak - before)" "$ship_growth"
printf '%-62s %s MB\n' "lone operator RSS growth (peak - before)" "$lone_growth"
printf '%-62s %s / %s / %s\n' "lines in the leader's file / the lone operator's (of 2,000,000)" "$leader_lines" "$lone_lines" "$leader_bytes bytes"
printf '%-62s %s rows, %s bytes, largest %s\n' "stored in PostgreSQL" "$rows" "$stored_bytes" "$largest"
printf '%-62s %s MB\n' "run_output table on disk (TOAST, $compression)" "$table_mb"
printf '%-62s %s s, %s lines, identical\n' "the follower serves the whole log as text" "$serve_wall" "$served_lines"
printf '%-62s %s MB\n' "follower RSS growth while serving it (peak - before)" "$follower_growth"
