#!/usr/bin/env bash
# Benchmarks of runs on Docker (issue 3), run by `make bench`. Prints figures; fails only
# when something breaks.
#
#  0. the phases of one run (reply, create, start, first line printed and readable,
#     die, recorded), median and p90 of PHASE_SAMPLES sequential runs: Flotilla on the
#     Docker socket directly, Flotilla through the socket proxy, and `docker run` (the
#     floor), from Docker's event stream and the API (scripts/phases.py);
#     then SLOT_SAMPLES (default 10) slots of an `every: 3s` schedule of `hello` through
#     the proxy, ms after each slot: start called, Docker's start, first line printed and
#     readable (the run and its container are created ahead of the slot);
#  1. trigger → first output line of `hello`, median of 20, Flotilla (`flotilla run --wait`
#     through the socket proxy) against `docker run` of the same image and command;
#  2. 100 `hello` runs at concurrency 8 (`--max-concurrent-runs 8`) against
#     `xargs -P8 docker run --rm …`, wall time;
#  3. one run printing 200 MB of lines: every line stored, and the operator's RSS growth.
#
# Environment: SAMPLES (default 20), PHASE_SAMPLES (default 30), ONLY_PHASES=1 stops
# after part 0 and prints its table, RUNS (default 100), PROXY_PORT (default 23790),
# KEEP=1 keeps the temp dir (data, logs), CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/flotilla"
IMAGE="flotilla/runner:$(awk -F'"' '/^version/ {print $2; exit}' "$ROOT/Cargo.toml")"
SAMPLES="${SAMPLES:-20}"
PHASE_SAMPLES="${PHASE_SAMPLES:-30}"
RUNS="${RUNS:-100}"
PORT="${PROXY_PORT:-23790}"
log() { printf '%s\n' "$*" >&2; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

(cd "$ROOT" && cargo build --release --quiet --bin flotilla)
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-runs.XXXXXX")"
INSTANCE="bench-$$"
SERVER_PID=""
DIRECT_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n "$DIRECT_PID" ]]; then kill "$DIRECT_PID" 2>/dev/null || true; wait "$DIRECT_PID" 2>/dev/null || true; fi
    docker ps -aq --filter "label=flotilla.dev/managed-by=$INSTANCE-direct" | xargs -r docker rm -f >/dev/null
    bash "$ROOT/scripts/proxy.sh" stop --listen "127.0.0.1:$PORT" >/dev/null 2>&1 || true
    docker ps -aq --filter "label=flotilla.dev/managed-by=$INSTANCE" | xargs -r docker rm -f >/dev/null
    docker ps -aq --filter "label=flotilla-bench=$INSTANCE" | xargs -r docker rm -f >/dev/null
    if [[ "${KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

mkdir -p "$WORK/pipelines/hello" "$WORK/pipelines/loud"
printf 'import time\nprint(f"hello {time.time_ns()}", flush=True)\n' > "$WORK/pipelines/hello/main.py"
: > "$WORK/pipelines/hello/requirements.txt"
# 200 MB: 2,000,000 lines of 100 bytes, numbered so they can be counted.
cat > "$WORK/pipelines/loud/main.py" <<'PY'
import sys
pad = "x" * 88
write = sys.stdout.write
for i in range(2_000_000):
    write(f"{i:010d} {pad}\n")
PY
cat > "$WORK/pipelines/flotilla.yaml" <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: hello }
spec: { source: { path: hello } }
---
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: loud }
spec: { source: { path: loud }, resources: { memory: 256Mi } }
YAML

bash "$ROOT/scripts/proxy.sh" start --listen "127.0.0.1:$PORT" >/dev/null
export ENCRYPTION_KEY="$("$BIN" secret gen-key)"
export FLOTILLA_ADMIN_TOKEN="bench-$(date +%s%N)"
export FLOTILLA_TOKEN="$FLOTILLA_ADMIN_TOKEN"
export FLOTILLA_SERVER="http://127.0.0.1:18790"
"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:18790 --pipelines-dir "$WORK/pipelines" \
    --docker-host "tcp://127.0.0.1:$PORT" --instance "$INSTANCE" --max-concurrent-runs 8 \
    --log-format json >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf "$FLOTILLA_SERVER/readyz" >/dev/null && break; sleep 0.1; done
until "$BIN" get pipeline hello >/dev/null 2>&1; do sleep 0.2; done

log "==> 1. trigger → first line, median of $SAMPLES"
# The docker side gets what a Flotilla run gets from the image's point of view: the same
# user, read-only root with a tmpfs /tmp, and the operator's uv cache and uv Python dirs
# mounted where the image's UV_CACHE_DIR / UV_PYTHON_INSTALL_DIR point (without them uv
# cannot take its cache lock on the read-only root and exits with an error at once).
DOCKER_ARGS=(--label "flotilla-bench=$INSTANCE" --user 10001:10001 --read-only
    --tmpfs /tmp -e HOME=/tmp -e UV_NO_PROGRESS=1 -e PYTHONUNBUFFERED=1
    -v "$WORK/data/uv-cache:/cache/uv" -v "$WORK/data/uv-python:/cache/python"
    -v "$WORK/pipelines/hello:/pipeline:ro" -w /pipeline "$IMAGE" uv run --no-project main.py)
DOCKER_RUN=(docker run --rm "${DOCKER_ARGS[@]}")
"${DOCKER_RUN[@]}" >/dev/null # warm the image and check the command works

log "==> 0. phases of $PHASE_SAMPLES sequential hello runs: direct socket, socket proxy, docker run"
# A second operator on the Docker socket itself (only to measure what the proxy costs),
# with its own data dir; its uv cache is warmed by one run first.
"$BIN" serve --data-dir "$WORK/direct" --listen 127.0.0.1:18791 --pipelines-dir "$WORK/pipelines" \
    --docker-host unix:///var/run/docker.sock --instance "$INSTANCE-direct" --max-concurrent-runs 8 \
    --log-format json >"$WORK/serve-direct.log" 2>&1 &
DIRECT_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:18791/readyz" >/dev/null && break; sleep 0.1; done
until FLOTILLA_SERVER=http://127.0.0.1:18791 "$BIN" get pipeline hello >/dev/null 2>&1; do sleep 0.2; done
FLOTILLA_SERVER=http://127.0.0.1:18791 "$BIN" run hello --wait >/dev/null
"$BIN" run hello --wait >/dev/null
phases() { # server instance out [args]
    python3 "$ROOT/scripts/phases.py" flotilla --server "$1" --token "$FLOTILLA_TOKEN" --pipeline hello \
        --expect hello --label "flotilla.dev/managed-by=$2" --samples "$PHASE_SAMPLES" --out "$3" "${@:4}"
}
phases http://127.0.0.1:18791 "$INSTANCE-direct" "$WORK/phases-direct.json"
phases "$FLOTILLA_SERVER" "$INSTANCE" "$WORK/phases-proxy.json" \
    --haproxy-log "${XDG_RUNTIME_DIR:-/tmp}/flotilla-proxy-$PORT/haproxy.log"
python3 "$ROOT/scripts/phases.py" docker --label "flotilla-bench=$INSTANCE" --samples "$PHASE_SAMPLES" \
    --expect hello --out "$WORK/phases-docker.json" -- "${DOCKER_ARGS[@]}"
kill "$DIRECT_PID"; wait "$DIRECT_PID" 2>/dev/null || true; DIRECT_PID=""
log "==> 0b. ${SLOT_SAMPLES:-10} slots of an every-3s schedule of hello, through the proxy"
"$BIN" apply -f - >/dev/null <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Schedule
metadata: { name: hello-every-3s }
spec: { pipelineRef: { name: hello }, every: 3s, history: { succeeded: 100 } }
YAML
python3 "$ROOT/scripts/phases.py" scheduled --server "$FLOTILLA_SERVER" --token "$FLOTILLA_TOKEN" \
    --schedule hello-every-3s --expect hello --label "flotilla.dev/managed-by=$INSTANCE" \
    --samples "${SLOT_SAMPLES:-10}" --haproxy-log "${XDG_RUNTIME_DIR:-/tmp}/flotilla-proxy-$PORT/haproxy.log" \
    > "$WORK/phases-scheduled.txt"
cat "$WORK/phases-scheduled.txt" >&2
"$BIN" delete schedule hello-every-3s >/dev/null
phase_table() {
    python3 "$ROOT/scripts/phases.py" table "direct socket=$WORK/phases-direct.json" \
        "socket proxy=$WORK/phases-proxy.json" "docker run=$WORK/phases-docker.json"
    cat "$WORK/phases-scheduled.txt"
}
if [[ "${ONLY_PHASES:-0}" == 1 ]]; then phase_table; exit 0; fi
flotilla_samples=(); docker_samples=()
for i in $(seq "$SAMPLES"); do
    flotilla_samples+=("$(python3 "$ROOT/scripts/first-line.py" --expect hello --start-file "$WORK/start-$i" \
        "$BIN" run hello --wait)")
    docker_samples+=("$(python3 "$ROOT/scripts/first-line.py" --expect hello "${DOCKER_RUN[@]}")")
done
f_med=$(printf '%s\n' "${flotilla_samples[@]}" | median)
d_med=$(printf '%s\n' "${docker_samples[@]}" | median)
ratio1=$(awk -v a="$f_med" -v b="$d_med" 'BEGIN { printf "%.2f", a / b }')
# Where Flotilla's time goes: trigger → the process printing its line (the number it
# prints, time.time_ns()) against trigger → the CLI printing it.
stored=()
for i in $(seq "$SAMPLES"); do
    read -r t0 name < "$WORK/start-$i"
    uid=$(curl -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" \
        "$FLOTILLA_SERVER/apis/flotilla.dev/v1alpha1/namespaces/default/runs/$name" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["uid"])')
    printed=$(awk '$2 == "stdout" && $3 == "hello" { print $4; exit }' "$WORK/data/runs/$uid/attempt-1.log")
    stored+=("$(python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1e9 - float(sys.argv[2]):.4f}")' "$printed" "$t0")")
done
s_med=$(printf '%s\n' "${stored[@]}" | median)

log "==> 2. $RUNS hello runs at concurrency 8"
RUNS_URL="$FLOTILLA_SERVER/apis/flotilla.dev/v1alpha1/namespaces/default/runs"
finished() { curl -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" "$RUNS_URL" | grep -oE "\"phase\": ?\"($1)\"" | wc -l; }
# Every earlier run (warm-up, samples, the schedule's) has ended before these start.
while [[ $(finished 'Pending|Running') -gt 0 ]]; do sleep 0.2; done
EARLIER=$(finished 'Succeeded|Failed')
start=$(date +%s.%N)
for i in $(seq "$RUNS"); do
    curl -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" -H 'content-type: application/json' \
        -d '{"spec":{"pipelineRef":{"name":"hello"}}}' \
        "$FLOTILLA_SERVER/apis/flotilla.dev/v1alpha1/namespaces/default/runs" >/dev/null
done
# Polled with curl and grep (a CLI + python poll every 0.2 s would take CPU from the
# runs being measured on a small machine). Only hello runs exist at this point.
while [[ $(finished 'Succeeded|Failed') -lt $((RUNS + EARLIER)) ]]; do sleep 0.2; done
f_wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
succeeded=$(finished Succeeded)
[[ "$succeeded" -eq $((RUNS + EARLIER)) ]] || { log "only $succeeded of $((RUNS + EARLIER)) hello runs succeeded"; exit 1; }
start=$(date +%s.%N)
seq "$RUNS" | xargs -P8 -I{} "${DOCKER_RUN[@]}" >"$WORK/xargs.out"
hellos=$(grep -cE "^hello [0-9]+$" "$WORK/xargs.out" || true)
[[ "$hellos" -eq "$RUNS" ]] || { log "only $hellos of $RUNS docker runs printed hello:"; sort "$WORK/xargs.out" | uniq -c | head >&2; exit 1; }
d_wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
ratio2=$(awk -v a="$f_wall" -v b="$d_wall" 'BEGIN { printf "%.2f", a / b }')

log "==> 3. one run printing 200 MB"
# Reset the peak (VmHWM) to the current RSS, so the peak read after is this run's.
echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || log "cannot reset VmHWM; the peak may predate this run"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
start=$(date +%s.%N)
# Timed like part 0: Docker's die event → the run recorded finished (a watch), and the
# log read right then must hold all 2,000,000 lines.
python3 "$ROOT/scripts/phases.py" flotilla --server "$FLOTILLA_SERVER" --token "$FLOTILLA_TOKEN" \
    --pipeline loud --expect 0000000000 --label "flotilla.dev/managed-by=$INSTANCE" --samples 1 \
    --follow 0 --lines 2000000 --out "$WORK/loud.json"
loud_wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
peak=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
read -r uid loud_run loud_exit < <(python3 - "$WORK/loud.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))[0]
print(s["uid"], f"{(s['die'] - s['start']) / 1000:.1f}", f"{(s['recorded'] - s['die']) / 1000:.2f}")
PY
)
lines=$(wc -l < "$WORK/data/runs/$uid/attempt-1.log")
distinct=$(awk '{print $3}' "$WORK/data/runs/$uid/attempt-1.log" | sort -u | wc -l)

printf '\nload: %s\n' "$(uptime)"
# The daemon's json-file rotation bounds what `docker logs` can give back (see part 3).
log_opts=$(python3 -c 'import json; print(json.load(open("/etc/docker/daemon.json")).get("log-opts", {}))' 2>/dev/null || echo unknown)
printf 'docker %s, log driver %s, daemon log-opts %s\n' "$(docker version --format '{{.Server.Version}}')" \
    "$(docker info --format '{{.LoggingDriver}}')" "$log_opts"
printf '\n%-58s %12s %12s %8s %s\n' "benchmark" "flotilla" "docker" "ratio" "target"
printf '%-58s %11ss %11ss %8s %s\n' "trigger → first line, hello, median of $SAMPLES" "$f_med" "$d_med" "$ratio1" "≤ 1.15"
printf '%-58s %11ss\n' "  of which: trigger → line printed in the container" "$s_med"
printf '%-58s %11ss %11ss %8s %s\n' "$RUNS hello runs, concurrency 8, wall time" "$f_wall" "$d_wall" "$ratio2" "≤ 1.2"
printf '%-58s %12s\n' "200 MB run: lines stored (of 2,000,000) / distinct" "$lines / $distinct"
printf '%-58s %10s MB %s\n' "200 MB run: operator RSS growth (peak − before)" "$(( (peak - rss_before) / 1024 ))" "(target ≤ 20 MB; run took ${loud_wall}s)"
printf '%-58s %11ss %s\n' "200 MB run: container exit → recorded, all lines stored" "$loud_exit" "(target ≤ 2 s; start → exit ${loud_run}s)"
phase_table
printf '\ntrigger → first line samples (s), flotilla then docker:\n'
printf '  %s\n' "${flotilla_samples[*]}" "${docker_samples[*]}"
