#!/usr/bin/env bash
# Benchmark of the API server (issue 7), run by `make bench`.
#
#  1. 100,000 stored Runs. They are applied through `POST …/v1alpha1/apply` in batches of
#     5,000 (fieldManager=bench) for a Pipeline whose source folder does not exist: the
#     run controller reconciles each once (one container list through the socket proxy),
#     marks it Failed with SourceNotFound, and never looks at it again. (Runs of a missing
#     pipeline would stay Pending as PipelineNotFound and be re-reconciled at every 30 s
#     resync; with an unreachable Docker they would stay Pending and be retried: both keep
#     the machine busy during the measurements.) The measurements start once every run
#     has finished.
#  2. wrk (Debian's; no wrk2, so pacing by a per-connection delay, see wrk-flotilla.lua):
#       - the runs list without a limit (every stored run in one answer): its size and
#         the latency distribution at 2 connections, as fast as it goes;
#       - pages of 500 runs at 500 requests/s: the first page polled (served from the
#         rendered copy until a write), and a random page each time (read and rendered);
#       - GET of single runs (random names among the 100,000) at 500 requests/s;
#     p50/p99 and the achieved rate (target p99 ≤ 20 ms at 500 req/s).
#  3. 200 concurrent SSE followers (scripts/sse-followers.py) of one run printing 10,000
#     lines/s for 10 s: every follower must receive every stored line, once and in
#     order, and the stored log must hold all 100,000 printed lines. The printed lines
#     total about 8 MB in Docker's json-file log, under the daemon's 10 MB rotation
#     (a rotation under `docker logs -f` loses lines: see bench-runs.sh, part 3).
#
# Prints figures next to the targets; fails only when something crashes or answers wrong.
# Environment: STORED (default 100000), BATCH (5000), RATE (500), DURATION (30 s),
# FOLLOWERS (200), LINES_PER_S (10000), SECONDS_PRINTING (10), PROXY_PORT (23793),
# KEEP=1 keeps the temp dir, CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/flotilla"
STORED="${STORED:-100000}"
BATCH="${BATCH:-5000}"
RATE="${RATE:-500}"
DURATION="${DURATION:-30}"
FOLLOWERS="${FOLLOWERS:-200}"
LINES_PER_S="${LINES_PER_S:-10000}"
SECONDS_PRINTING="${SECONDS_PRINTING:-10}"
PORT="${PROXY_PORT:-23793}"
PRINTED=$((LINES_PER_S * SECONDS_PRINTING))
# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

command -v wrk >/dev/null || {
    log "wrk is missing; installing Debian's package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
}
log "==> building the release binary and the runner image"
(cd "$ROOT" && cargo build --release --quiet --bin flotilla)
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-api.XXXXXX")"
INSTANCE="bench-api-$$"
SERVER_PID=""
SAMPLER_PID=""
cleanup() {
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    bash "$ROOT/scripts/proxy.sh" stop --listen "127.0.0.1:$PORT" >/dev/null 2>&1 || true
    docker ps -aq --filter "label=flotilla.dev/managed-by=$INSTANCE" | xargs -r docker rm -f >/dev/null
    if [[ "${KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

mkdir -p "$WORK/pipelines/printer"
cat > "$WORK/pipelines/printer/main.py" <<PY
import sys, time
rate, total = $LINES_PER_S, $PRINTED
write = sys.stdout.write
start = time.monotonic()
for i in range(total):
    write(f"{i:07d}\n")
    if i % 100 == 99:
        pause = start + (i + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
PY
cat > "$WORK/pipelines/flotilla.yaml" <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: printer }
spec: { source: { path: printer } }
---
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: bench-missing }
spec: { source: { path: does-not-exist } }
YAML

bash "$ROOT/scripts/proxy.sh" start --listen "127.0.0.1:$PORT" >/dev/null
TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export FLOTILLA_TOKEN="$TOKEN" XDG_CONFIG_HOME="$WORK/config"
: >"$WORK/serve.out"
ENCRYPTION_KEY="$("$BIN" secret gen-key)" FLOTILLA_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn \
    "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --log-format json \
    --pipelines-dir "$WORK/pipelines" --docker-host "tcp://127.0.0.1:$PORT" --instance "$INSTANCE" \
    >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
bench_await_api
export FLOTILLA_SERVER="$SERVER"
API="$SERVER/apis/flotilla.dev/v1alpha1"
RUNS_URL="$API/namespaces/default/runs"
AUTH=(-H "Authorization: Bearer $TOKEN")
alive() { kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; log "serve crashed"; exit 1; }; }
until "$BIN" get pipeline bench-missing >/dev/null 2>&1 && "$BIN" get pipeline printer >/dev/null 2>&1; do
    alive; sleep 0.2
done
python3 "$ROOT/scripts/proc-sampler.py" "$SERVER_PID" "$WORK/samples.txt" 1 &
SAMPLER_PID=$!
metric() { # metric NAME_REGEX: sum of the matching series at /metrics
    curl -sf "${AUTH[@]}" "$SERVER/metrics" | awk -v re="$1" '$1 ~ re { s += $2 } END { printf "%d", s }'
}

log "==> 1. storing $STORED runs: apply in batches of $BATCH, then wait for every run to finish"
start=$(date +%s%N)
for ((first = 0; first < STORED; first += BATCH)); do
    awk -v first="$first" -v n="$BATCH" 'BEGIN {
        for (i = first; i < first + n; i++)
            printf "---\napiVersion: flotilla.dev/v1alpha1\nkind: Run\nmetadata: { name: seed-%06d, labels: { suite: bench } }\nspec: { pipelineRef: { name: bench-missing }, env: { INDEX: \"%d\" } }\n", i, i
    }' > "$WORK/batch.yaml"
    curl -sf "${AUTH[@]}" -H 'content-type: application/yaml' --data-binary "@$WORK/batch.yaml" \
        "$API/apply?fieldManager=bench" > "$WORK/apply.json" ||
        { log "apply of batch $first failed"; cat "$WORK/apply.json" >&2; exit 1; }
done
APPLY_MS=$(( ($(date +%s%N) - start) / 1000000 ))
log "    applied in $APPLY_MS ms"
# flotilla_run_transitions is not counted for runs that fail before a container exists
# (SourceNotFound): wait for the reconciles instead, then check the phases in the list.
while :; do
    reconciles=$(metric '^flotilla_reconcile_duration_seconds_count')
    depth=$(metric '^flotilla_work_queue_depth')
    (( reconciles >= STORED && depth == 0 )) && break
    alive; sleep 2
done
SEED_MS=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 5 # let the last status writes and events settle
FAILED=$(curl -sf "${AUTH[@]}" "$RUNS_URL" | grep -o '"reason": \?"SourceNotFound"' | wc -l)
(( FAILED >= STORED )) || { log "only $FAILED of $STORED runs are Failed (SourceNotFound)"; exit 1; }
log "    all $STORED reconciled after $SEED_MS ms"
RSS_STORED_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
DB_MB=$(( $(du -cb "$WORK/data"/flotilla.db* | tail -1 | cut -f1) / 1024 / 1024 ))

log "==> 2. wrk"
LOAD_WRK="$(uptime)"
LIST_TIMES=()
for _ in 1 2 3; do
    read -r code bytes seconds < <(curl -s -o "$WORK/list.json" -w '%{http_code} %{size_download} %{time_total}\n' \
        "${AUTH[@]}" "$RUNS_URL")
    [[ "$code" == 200 ]] || { log "list answered $code"; exit 1; }
    LIST_TIMES+=("$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')")
done
LIST_BYTES=$bytes
LIST_ITEMS=$(grep -o '"kind": \?"Run"' "$WORK/list.json" | wc -l)
[[ "$LIST_ITEMS" -ge "$STORED" ]] || { log "the list holds $LIST_ITEMS runs, expected $STORED"; exit 1; }
LIST_MS=$(printf '%s\n' "${LIST_TIMES[@]}" | median)
# wrk_run NAME CONNECTIONS RATE NAMES DURATION URL (WRK_CONTINUE, WRK_LATENCY_MS from
# the environment)
wrk_run() {
    WRK_CONNECTIONS="$2" WRK_RATE="$3" WRK_NAMES="$4" \
        wrk -t"$(( $2 < 2 ? $2 : 2 ))" -c"$2" -d"$5s" --timeout 30s --latency \
        -s "$ROOT/scripts/wrk-flotilla.lua" "$6" > "$WORK/wrk-$1.txt" 2>&1
    alive
}
# wrk_figure NAME p50|p99|rps|non2xx|requests
wrk_figure() {
    awk -v want="$2" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50.000%" || ($1 == "50%" ) { p50 = ms($2) }
        $1 == "99.000%" || ($1 == "99%" ) { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        / requests in / { n = $1 }
        END {
            if (want == "p50") printf "%.2f", p50; else if (want == "p99") printf "%.2f", p99;
            else if (want == "rps") printf "%.1f", rps; else if (want == "requests") printf "%d", n;
            else printf "%d", bad
        }' "$WORK/wrk-$1.txt"
}
# settle: wait (up to 30 s) until the operator used < 10 % of a core over a second, so
# one measurement does not pay for the end of the previous one (lists in flight).
settle() {
    local _ before after
    for _ in $(seq 30); do
        before=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"); sleep 1
        after=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
        (( after - before < 10 )) && return 0
    done
}
settle
wrk_run list 2 0 0 "$DURATION" "$RUNS_URL"
settle
wrk_run get 10 "$RATE" "$STORED" "$DURATION" "$RUNS_URL"
settle
# The list as kubectl reads it: pages of 500 (its default --chunk-size), paced at $RATE.
# The same first page again and again (a dashboard polling it: served from the rendered
# copy while nothing is written), then a random page each time (read and rendered).
wrk_run page 10 "$RATE" 0 "$DURATION" "$RUNS_URL?limit=500"
settle
WRK_CONTINUE=$((STORED - 500)) WRK_LATENCY_MS=5 wrk_run pages 10 "$RATE" 0 "$DURATION" "$RUNS_URL?limit=500"
LOAD_WRK_AFTER="$(uptime)"

log "==> 3. $FOLLOWERS SSE followers of a run printing $LINES_PER_S lines/s for ${SECONDS_PRINTING}s"
echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true # VmHWM from here on
RSS_SSE_BEFORE_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
LOAD_SSE="$(uptime)"
name=$(curl -sf "${AUTH[@]}" -H 'content-type: application/json' \
    -d '{"spec":{"pipelineRef":{"name":"printer"}}}' "$RUNS_URL" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["name"])')
python3 "$ROOT/scripts/sse-followers.py" "$RUNS_URL/$name/log?follow=true" "$TOKEN" "$FOLLOWERS" 4 180 \
    > "$WORK/sse.json"
alive
LOAD_SSE_AFTER="$(uptime)"
RSS_SSE_PEAK_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
PHASE=$(curl -sf "${AUTH[@]}" "$RUNS_URL/$name" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["phase"])')
curl -sf "${AUTH[@]}" "$RUNS_URL/$name/log" > "$WORK/printer.log"
STORED_LINES=$(awk '$2 == "stdout"' "$WORK/printer.log" | wc -l)
STORED_ALL=$(wc -l < "$WORK/printer.log")
DISTINCT=$(awk '$2 == "stdout" { print $3 }' "$WORK/printer.log" | sort -u | wc -l)

kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "ok" : "MISSED" }'; }
row() { printf '%-60s %14s %12s %s\n' "$1" "$2" "${3:-}" "${4:-}"; }
sse() { python3 -c "import json,sys; print(json.load(open('$WORK/sse.json'))[sys.argv[1]])" "$1"; }
fmt_s() { awk -v v="$1" 'BEGIN { printf "%.3f s", v }'; }

GET_P99=$(wrk_figure get p99)
LINES_MIN=$(sse lines_min); LINES_MAX=$(sse lines_max); WITH_ERRORS=$(sse with_errors); ENDED=$(sse ended)
every="MISSED"
[[ "$LINES_MIN" -eq "$STORED_ALL" && "$LINES_MAX" -eq "$STORED_ALL" && "$WITH_ERRORS" -eq 0 && "$ENDED" -eq "$FOLLOWERS" \
    && "$STORED_LINES" -eq "$PRINTED" && "$DISTINCT" -eq "$PRINTED" ]] && every="ok"

printf '\nFlotilla API benchmark: %d stored runs, SQLite, release build\n' "$STORED"
printf 'load at wrk: %s\n         after: %s\nload at SSE: %s\n         after: %s\n\n' \
    "$LOAD_WRK" "$LOAD_WRK_AFTER" "$LOAD_SSE" "$LOAD_SSE_AFTER"
row "MEASURE" "RESULT" "TARGET"
row "apply $STORED runs in batches of $BATCH" "$APPLY_MS ms"
row "  until all reconciled (Failed, SourceNotFound)" "$SEED_MS ms"
row "operator RSS holding them / SQLite files" "$((RSS_STORED_KB / 1024)) / $DB_MB MB"
row "runs list: one answer (curl, median of 3)" "$LIST_MS ms"
row "  its size / items" "$((LIST_BYTES / 1024 / 1024)) MB / $LIST_ITEMS"
row "  wrk, 2 connections, ${DURATION}s: requests/s" "$(wrk_figure list rps)"
row "  wrk latency p50 / p99" "$(wrk_figure list p50) / $(wrk_figure list p99) ms" "≤ 20 ms" \
    "$(verdict "$(wrk_figure list p99)" 20) (p99; not at 500 req/s: see the rate)"
row "runs list, first page of 500 (?limit=500) polled, paced at $RATE req/s: achieved" "$(wrk_figure page rps) req/s"
row "  latency p50 / p99" "$(wrk_figure page p50) / $(wrk_figure page p99) ms" "≤ 20 ms" "$(verdict "$(wrk_figure page p99)" 20)"
row "runs list, a random page of 500 each time, paced at $RATE req/s: achieved" "$(wrk_figure pages rps) req/s"
row "  latency p50 / p99" "$(wrk_figure pages p50) / $(wrk_figure pages p99) ms" "≤ 20 ms" "$(verdict "$(wrk_figure pages p99)" 20)"
row "GET one run (random of $STORED), wrk paced at $RATE req/s: achieved" "$(wrk_figure get rps) req/s"
row "  latency p50 / p99" "$(wrk_figure get p50) / $GET_P99 ms" "≤ 20 ms" "$(verdict "$GET_P99" 20)"
row "  requests / non-2xx" "$(wrk_figure get requests) / $(wrk_figure get non2xx)"
row "SSE: followers ended / with errors" "$ENDED / $WITH_ERRORS" "$FOLLOWERS / 0"
row "  lines per follower min / max (stored lines: $STORED_ALL)" "$LINES_MIN / $LINES_MAX" "$STORED_ALL" "$every"
row "  printer run: phase, stdout lines stored / distinct" "$PHASE $STORED_LINES / $DISTINCT" "$PRINTED"
row "  delivery lag p50 / p99 / max (Docker time → received)" "$(fmt_s "$(sse lag_p50_s)") / $(fmt_s "$(sse lag_p99_s)") / $(fmt_s "$(sse lag_max_s)")"
row "  last follower's end event after start" "$(fmt_s "$(sse last_end_s)")"
row "  operator RSS before / peak during" "$((RSS_SSE_BEFORE_KB / 1024)) / $((RSS_SSE_PEAK_KB / 1024)) MB"
errors=$(python3 -c "import json; print('; '.join(json.load(open('$WORK/sse.json'))['errors'][:5]))")
[[ -n "$errors" ]] && printf '\nfirst follower errors: %s\n' "$errors"
printf '\nwrk output, runs list:\n'; sed -n '/Latency Distribution/,/Requests\/sec/p' "$WORK/wrk-list.txt"
printf '\nwrk output, GET one run:\n'; sed -n '/Latency Distribution/,/Requests\/sec/p' "$WORK/wrk-get.txt"
