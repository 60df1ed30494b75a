#!/usr/bin/env bash
# Benchmark of replicas sharing one PostgreSQL store (the HA issue), run by `make bench`.
#
# A throwaway PostgreSQL server (bench-lib.sh, default durability settings), Docker
# through the socket proxy, every replica a `flotilla serve` with its own data dir; all
# replicas carry one --instance label value unique to this run of the script. The
# pipeline `hello` prints a line and exits.
#
#  1. Failover: replicas A and B, --lease-ttl 6s --lease-renew-interval 2s. Each try waits
#     a random one to two renew intervals, finds the leader through /readyz, kills it
#     (-9) and at once creates a run of `hello` through the survivor's API. Measured from
#     the kill: the Docker `start` event of that run's container (Docker's timestamp,
#     label flotilla.dev/run=<uid>), and the moment the survivor's /readyz says it leads
#     (polled every 100 ms). The killed replica is then restarted on its data dir and the
#     next try waits until it is ready as a follower. TRIES tries, then DEFAULT_TRIES on
#     two other replicas with the default lease (15s/5s).
#     The lease runs out a ttl after the dead leader's last renewal (0 to one renew
#     interval before the kill), and the survivor tries every renew interval: expect
#     kill → new leader between ttl − renew and ttl + renew, plus the container's start.
#  2. Throughput: RUNS runs of `hello` created in one burst (one request after the other)
#     at --max-concurrent-runs 8, wall time until all Succeeded: one operator on
#     PostgreSQL, and two replicas on another database with the runs created half through
#     each one's API; ROUNDS rounds, interleaved (the order swapped every round). One
#     leader runs every container (a follower only serves the API and writes the Run
#     objects), so a second replica adds availability, not throughput: expect the same
#     runs/s.
#  3. API latency on the follower against the leader (the two replicas of 2, holding
#     those runs): wrk with scripts/wrk-flotilla.lua, 10 connections paced at RATE req/s
#     for DURATION s each: GET runs?limit=100 and GET one run; p50/p99.
#  4. Change feed: WATCH_TRIES runs created through the leader's API while a watch on the
#     follower is open; milliseconds from the start of each create to its line on the
#     follower's watch (the follower reads the write when PostgreSQL's commit
#     notification arrives); p50/p99/max.
#
# Prints figures (no pass/fail) and the WARN/ERROR lines of the replicas' logs; fails only
# when something breaks. Takes about 10 minutes after the build.
# Environment: TRIES (20), DEFAULT_TRIES (5; 0 skips), RUNS (100), ROUNDS (2), RATE (500),
# DURATION (20 s), PROXY_PORT (23795), KEEP=1 keeps the work dir (replica logs),
# FLOTILLA_BIN (a binary to measure instead of building the release one), CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
TRIES="${TRIES:-20}"
DEFAULT_TRIES="${DEFAULT_TRIES:-5}"
RUNS="${RUNS:-100}"
RATE="${RATE:-500}"
DURATION="${DURATION:-20}"
PORT="${PROXY_PORT:-23795}"
ROUNDS="${ROUNDS:-2}"
WATCH_TRIES="${WATCH_TRIES:-20}"
FAST_TTL=6
FAST_RENEW=2
# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

command -v wrk >/dev/null || {
    log "wrk is missing; installing Debian's package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
}
bench_build
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-ha.XXXXXX")"
chmod 755 "$WORK" # PostgreSQL runs as nobody under root and needs to reach its dir
INSTANCE="bench-ha-$$"
declare -A PID=() URL=()
cleanup() {
    local name
    for name in "${!PID[@]}"; do stop_replica "$name"; done
    bench_stop_postgres
    bash "$ROOT/scripts/proxy.sh" stop --listen "127.0.0.1:$PORT" >/dev/null 2>&1 || true
    docker ps -aq --filter "label=flotilla.dev/managed-by=$INSTANCE" | xargs -r docker rm -f >/dev/null
    bench_remove_work
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/pipelines/hello"
echo 'print("hello")' > "$WORK/pipelines/hello/main.py"
: > "$WORK/pipelines/hello/requirements.txt"
cat > "$WORK/pipelines/flotilla.yaml" <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: hello }
spec: { source: { path: hello } }
YAML

log "==> starting PostgreSQL and the socket proxy"
bench_start_postgres "$WORK/pg"
bash "$ROOT/scripts/proxy.sh" start --listen "127.0.0.1:$PORT" >/dev/null
export ENCRYPTION_KEY="$("$BIN" secret gen-key)"
export FLOTILLA_ADMIN_TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export FLOTILLA_TOKEN="$FLOTILLA_ADMIN_TOKEN" # read by wrk-flotilla.lua
AUTH=(-H "Authorization: Bearer $FLOTILLA_ADMIN_TOKEN")
RUNS_PATH=/apis/flotilla.dev/v1alpha1/namespaces/default/runs

# running PID: the process exists and is not a zombie (our children stay zombies, their
# pid not reused, until `wait` reaps them).
running() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# start_replica NAME DATABASE ARGS…: starts `flotilla serve` as replica NAME (data dir
# $WORK/NAME, kept across restarts; log appended to $WORK/NAME.log) and waits until its
# /readyz answers; sets PID[NAME] and URL[NAME].
start_replica() {
    local name="$1" database="$2" address=""
    shift 2
    printf -- '--- bench: started %s with %s\n' "$(date -u +%FT%T.%6NZ)" "$*" >> "$WORK/$name.log"
    : > "$WORK/$name.out"
    RUST_LOG=info,sqlx=warn NO_COLOR=1 "$BIN" serve --data-dir "$WORK/$name" --listen 127.0.0.1:0 \
        --database "$database" --pipelines-dir "$WORK/pipelines" \
        --docker-host "tcp://127.0.0.1:$PORT" --instance "$INSTANCE" --stop-grace-period 2s "$@" \
        >"$WORK/$name.out" 2>>"$WORK/$name.log" &
    PID[$name]=$!
    for _ in $(seq 600); do
        address="$(sed -n 's#^Flotilla API: *\(http://[^/]*\)/.*#\1#p' "$WORK/$name.out" | head -1)"
        if [[ -n "$address" ]] && curl -sf -o /dev/null "$address/readyz"; then
            URL[$name]="$address"
            return 0
        fi
        running "${PID[$name]}" || { tail -20 "$WORK/$name.log" >&2; log "replica $name died at start"; exit 1; }
        sleep 0.1
    done
    tail -20 "$WORK/$name.log" >&2
    log "replica $name was not ready after 60 s"
    exit 1
}

# stop_replica NAME: SIGTERM, SIGKILL after 10 s; reaps it.
stop_replica() {
    local pid="${PID[$1]:-}"
    [[ -n "$pid" ]] || return 0
    if running "$pid"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "PID[$1]"
}

# alive NAME…: fails the script (with the log's tail) if a replica has exited.
alive() {
    local name
    for name in "$@"; do
        running "${PID[$name]}" ||
            { tail -30 "$WORK/$name.log" >&2; log "replica $name exited unexpectedly"; exit 1; }
    done
}

leads() { curl -sf --max-time 5 "${URL[$1]}/readyz" | grep -q '"self":true'; }

# leader_of NAME…: prints the replica that leads (waits up to 60 s for one).
leader_of() {
    local name
    for _ in $(seq 600); do
        for name in "$@"; do leads "$name" && { echo "$name"; return 0; }; done
        alive "$@"
        sleep 0.1
    done
    log "no leader among $* after 60 s"
    exit 1
}

# await_follower NAME: waits until NAME is ready and sees another replica lead.
await_follower() {
    for _ in $(seq 600); do
        curl -sf --max-time 5 "${URL[$1]}/readyz" | grep -q '"self":false' && return 0
        alive "$1"
        sleep 0.1
    done
    log "replica $1 is not a ready follower after 60 s"
    exit 1
}

# await_pipeline NAME: waits until replica NAME serves the pipeline hello.
await_pipeline() {
    for _ in $(seq 300); do
        curl -sf -o /dev/null "${AUTH[@]}" "${URL[$1]}/apis/flotilla.dev/v1alpha1/namespaces/default/pipelines/hello" &&
            return 0
        alive "$1"
        sleep 0.2
    done
    log "replica $1 has no pipeline hello after 60 s"
    exit 1
}

# create_run NAME: creates a run of hello through replica NAME's API; prints "name uid".
create_run() {
    local answer
    answer="$(curl -s "${AUTH[@]}" -H 'content-type: application/json' \
        -d '{"spec":{"pipelineRef":{"name":"hello"}}}' "${URL[$1]}$RUNS_PATH")" || true
    sed -n 's/.*"name":"\(hello-[^"]*\)".*"uid":"\([^"]*\)".*/\1 \2/p' <<< "$answer" | grep . ||
        { log "creating a run through $1 answered: ${answer:-nothing}"; return 1; }
}

run_phase() { # run_phase REPLICA RUN
    curl -sf --max-time 5 "${AUTH[@]}" "${URL[$1]}$RUNS_PATH/$2" | grep -o '"phase":"[A-Za-z]*"' | tail -1 | cut -d'"' -f4
}

# await_succeeded REPLICA RUN: waits (up to 120 s) until RUN has Succeeded.
await_succeeded() {
    for _ in $(seq 600); do
        [[ "$(run_phase "$1" "$2")" == Succeeded ]] && return 0
        alive "$1"
        sleep 0.2
    done
    log "run $2 has not succeeded after 120 s"
    exit 1
}

# percentile P: the P-th percentile (nearest rank) of the numbers on stdin.
percentile() {
    sort -n | awk -v p="$1" '{ v[NR] = $1 } END { r = p * NR / 100; if (r > int(r)) r = int(r) + 1; if (r < 1) r = 1; print v[r] }'
}

# failover_try A B DATABASE OUT RENEW LEASE_ARGS…: one try on replicas A and B (both
# running, one leading); appends "kill→start kill→lead starts" (ms, ms, count) to OUT.
failover_try() {
    local a="$1" b="$2" database="$3" out="$4" renew="$5"
    local leader survivor name uid t_kill t_now t_lead="" phase="" start_ns starts
    shift 5
    # A follower tries to take the lease on ticks of its own, every renew interval from
    # its start. Killed right after the other replica's restart, every try would hit the
    # same phase of those ticks and measure the same point of the window (ttl − renew,
    # ttl + renew]: a random pause of one to two intervals spreads the tries over it.
    sleep "$(awk -v r="$renew" -v x="$RANDOM" 'BEGIN { printf "%.3f", r * (1 + x / 32768) }')"
    leader="$(leader_of "$a" "$b")"
    if [[ "$leader" == "$a" ]]; then survivor="$b"; else survivor="$a"; fi
    t_kill="$(date +%s%N)"
    kill -9 "${PID[$leader]}"
    wait "${PID[$leader]}" 2>/dev/null || true # reaped at once: bash says nothing of the kill
    read -r name uid < <(create_run "$survivor") || true
    [[ -n "$uid" ]] || { log "creating a run through $survivor failed"; exit 1; }
    while :; do
        t_now="$(date +%s%N)"
        [[ -z "$t_lead" ]] && leads "$survivor" && t_lead="$t_now"
        phase="$(run_phase "$survivor" "$name")"
        [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
        (( t_now - t_kill < 120000000000 )) || { tail -30 "$WORK/$survivor.log" >&2; log "run $name still $phase after 120 s"; exit 1; }
        alive "$survivor"
        sleep 0.1
    done
    [[ -n "$t_lead" ]] || t_lead="$t_now"
    [[ "$phase" == Succeeded ]] || { log "run $name $phase"; exit 1; }
    starts="$(docker events --since "$((t_kill / 1000000000 - 1))" --until "$(date +%s.%N)" \
        --filter type=container --filter event=start --filter "label=flotilla.dev/run=$uid" \
        --format '{{.TimeNano}}')"
    start_ns="$(head -1 <<< "$starts")"
    [[ -n "$start_ns" ]] || { log "no Docker start event for run $name ($uid)"; exit 1; }
    echo "$(( (start_ns - t_kill) / 1000000 )) $(( (t_lead - t_kill) / 1000000 )) $(wc -l <<< "$starts")" >> "$out"
    log "    try $(wc -l < "$out"): killed $leader, $survivor led after $(( (t_lead - t_kill) / 1000000 )) ms, container started after $(( (start_ns - t_kill) / 1000000 )) ms"
    start_replica "$leader" "$database" "$@"
    await_follower "$leader"
}

# failover LABEL TRIES TTL RENEW: TRIES tries with that lease (seconds) on a database and
# replicas LABEL-a, LABEL-b of their own.
failover() {
    local label="$1" tries="$2" renew="$4" database name a="$1-a" b="$1-b"
    local lease=(--lease-ttl "$3s" --lease-renew-interval "$4s")
    database="$(bench_create_database "failover_$label")"
    : > "$WORK/failover-$label.txt"
    start_replica "$a" "$database" "${lease[@]}"
    leader_of "$a" >/dev/null
    start_replica "$b" "$database" "${lease[@]}"
    await_follower "$b"
    await_pipeline "$a"
    # A first run, not measured: the image and both replicas warm.
    read -r name _ < <(create_run "$b") || { log "creating a run through $b failed"; exit 1; }
    await_succeeded "$a" "$name"
    for _ in $(seq "$tries"); do
        failover_try "$a" "$b" "$database" "$WORK/failover-$label.txt" "$renew" "${lease[@]}"
    done
    stop_replica "$a"
    stop_replica "$b"
}

# finished_runs REPLICA [PHASES]: how many runs are in one of PHASES (a regex; default
# Succeeded|Failed), as REPLICA lists them.
finished_runs() {
    curl -sf "${AUTH[@]}" "${URL[$1]}$RUNS_PATH" | grep -oE "\"phase\":\"(${2:-Succeeded|Failed})\"" | wc -l
}

# burst OUT REPLICA…: RUNS runs created one after another, in turn through each
# REPLICA's API; appends the seconds until all Succeeded and the load average to OUT.
burst() {
    local out="$1" leader start i before load finished
    shift
    local replicas=("$@")
    leader="$(leader_of "$@")"
    before="$(finished_runs "$leader")"
    load="$(awk '{ print $1 }' /proc/loadavg)"
    start="$(date +%s.%N)"
    for ((i = 0; i < RUNS; i++)); do
        create_run "${replicas[i % ${#replicas[@]}]}" >/dev/null
    done
    # Polled with curl and grep, as bench-runs.sh does (cheap on a small machine).
    while :; do
        finished="$(finished_runs "$leader")"
        (( finished >= before + RUNS )) && break
        alive "$@"
        awk -v s="$start" -v e="$(date +%s)" 'BEGIN { exit !(e - s > 900) }' &&
            { log "only $((finished - before)) of $RUNS runs finished after 900 s"; exit 1; }
        sleep 0.2
    done
    awk -v s="$start" -v e="$(date +%s.%N)" -v l="$load" -v l2="$(awk '{ print $1 }' /proc/loadavg)" \
        'BEGIN { printf "%.2f %s %s\n", e - s, l, l2 }' >> "$out"
    finished="$(finished_runs "$leader" Succeeded)"
    (( finished == before + RUNS )) || { log "only $((finished - before)) of $RUNS runs succeeded"; exit 1; }
}

# warm REPLICA: one run of hello through REPLICA, not measured (image, caches, pipeline).
warm() {
    local name
    await_pipeline "$1"
    read -r name _ < <(create_run "$1") || { log "creating a run through $1 failed"; exit 1; }
    await_succeeded "$1" "$name"
}

# wrk_run NAME RATE URL: wrk with the benchmark's Lua script (bench-api.sh does the same).
wrk_run() {
    WRK_CONNECTIONS=10 WRK_RATE="$2" WRK_NAMES=0 \
        wrk -t2 -c10 -d"${DURATION}s" --timeout 30s --latency \
        -s "$ROOT/scripts/wrk-flotilla.lua" "$3" > "$WORK/wrk-$1.txt" 2>&1
}
# wrk_figure NAME p50|p99|rps|non2xx|requests
wrk_figure() {
    awk -v want="$2" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50.000%" || $1 == "50%" { p50 = ms($2) }
        $1 == "99.000%" || $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        / requests in / { n = $1 }
        END {
            if (want == "p50") printf "%.2f", p50; else if (want == "p99") printf "%.2f", p99;
            else if (want == "rps") printf "%.1f", rps; else if (want == "requests") printf "%d", n;
            else printf "%d", bad
        }' "$WORK/wrk-$1.txt"
}
# settle NAME…: waits (up to 30 s) until the replicas together used < 10 % of a core over
# a second.
settle() {
    local _ name before after
    cpu() { for name in "$@"; do awk '{ print $14 + $15 }' "/proc/${PID[$name]}/stat"; done | awk '{ s += $1 } END { print s }'; }
    for _ in $(seq 30); do
        before="$(cpu "$@")"; sleep 1; after="$(cpu "$@")"
        (( after - before < 10 )) && return 0
    done
}

LOAD_START="$(uptime)"
SECONDS=0
log "==> 1. failover, lease ttl ${FAST_TTL}s renewed every ${FAST_RENEW}s, $TRIES tries"
failover fast "$TRIES" "$FAST_TTL" "$FAST_RENEW"
if (( DEFAULT_TRIES > 0 )); then
    log "==> 1b. failover, the default lease (ttl 15s renewed every 5s), $DEFAULT_TRIES tries"
    failover default "$DEFAULT_TRIES" 15 5
fi
FAILOVER_SECONDS=$SECONDS
LOAD_AFTER_FAILOVER="$(uptime)"

log "==> 2. $RUNS runs at concurrency 8, one operator on PostgreSQL against two replicas, $ROUNDS rounds"
start_replica solo "$(bench_create_database throughput_one)" --max-concurrent-runs 8
leader_of solo >/dev/null
warm solo
DATABASE="$(bench_create_database throughput_two)"
start_replica c "$DATABASE" --max-concurrent-runs 8
leader_of c >/dev/null
start_replica d "$DATABASE" --max-concurrent-runs 8
await_follower d
warm c
# Interleaved, the order swapped every round, so that load from elsewhere on the machine
# and what earlier bursts leave behind fall on both alike.
for round in $(seq "$ROUNDS"); do
    for setup in $(if (( round % 2 )); then echo one two; else echo two one; fi); do
        if [[ "$setup" == one ]]; then burst "$WORK/burst-one.txt" solo; else burst "$WORK/burst-two.txt" c d; fi
        log "    round $round, $setup: $(tail -1 "$WORK/burst-$setup.txt" | cut -d' ' -f1) s"
    done
done
stop_replica solo
LOAD_AFTER_BURSTS="$(uptime)"

log "==> 3. API latency, follower against leader (wrk, $RATE req/s, ${DURATION}s each)"
LEADER="$(leader_of c d)"
if [[ "$LEADER" == c ]]; then FOLLOWER=d; else FOLLOWER=c; fi
RUN_NAME="$(curl -sf "${AUTH[@]}" "${URL[$FOLLOWER]}$RUNS_PATH?limit=1" | grep -o '"name":"hello-[^"]*"' | head -1 | cut -d'"' -f4)"
LOAD_WRK="$(uptime)"
for role in follower leader; do
    if [[ "$role" == follower ]]; then replica="$FOLLOWER"; else replica="$LEADER"; fi
    settle c d
    wrk_run "list-$role" "$RATE" "${URL[$replica]}$RUNS_PATH?limit=100"
    alive c d
    settle c d
    wrk_run "get-$role" "$RATE" "${URL[$replica]}$RUNS_PATH/$RUN_NAME"
    alive c d
done
LOAD_WRK_AFTER="$(uptime)"
LIST_ITEMS="$(curl -sf "${AUTH[@]}" "${URL[$FOLLOWER]}$RUNS_PATH?limit=100" | grep -o '"kind":"Run"' | wc -l)"

log "==> 4. a write through the leader → the follower's watch streams it, $WATCH_TRIES tries"
# The follower's watch, each line stamped (ns) as it arrives.
mkfifo "$WORK/watch.fifo"
curl -sN "${AUTH[@]}" "${URL[$FOLLOWER]}$RUNS_PATH?watch=true" > "$WORK/watch.fifo" &
WATCH_PID=$!
while IFS= read -r line; do
    name="$(grep -o '"name":"hello-[^"]*"' <<< "$line" | head -1 | cut -d'"' -f4)" || true
    if [[ -n "$name" ]]; then echo "$name $(date +%s%N)"; fi
done < "$WORK/watch.fifo" > "$WORK/watched.txt" &
READER_PID=$!
sleep 1
: > "$WORK/written.txt"
for _ in $(seq "$WATCH_TRIES"); do
    started="$(date +%s%N)"
    created="$(create_run "$LEADER")" || exit 1
    echo "${created%% *} $started" >> "$WORK/written.txt"
    sleep 0.2
done
for _ in $(seq 100); do
    seen=0
    while read -r name _; do grep -q "^$name " "$WORK/watched.txt" && seen=$((seen + 1)); done < "$WORK/written.txt"
    (( seen == WATCH_TRIES )) && break
    sleep 0.1
done
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" "$READER_PID" 2>/dev/null || true
# Milliseconds from the start of the create (through the leader's API) to its first line
# on the follower's watch.
while read -r name started; do
    received="$(grep "^$name " "$WORK/watched.txt" | head -1 | cut -d' ' -f2)"
    [[ -n "$received" ]] && echo $(( (received - started) / 1000000 ))
done < "$WORK/written.txt" > "$WORK/watch-latency.txt"
stop_replica c
stop_replica d

row() { printf '%-66s %s\n' "$1" "$2"; }
# failover_rows LABEL TTL RENEW [NOTE]: p50 / p99 / max of both columns of
# failover-LABEL.txt.
failover_rows() {
    local file="$WORK/failover-$1.txt" n twice
    n="$(wc -l < "$file")"
    stats() { cut -d' ' -f"$1" "$file" | awk '{ printf "%.2f\n", $1 / 1000 }' > "$WORK/col"
        printf '%s / %s / %s s' "$(percentile 50 < "$WORK/col")" "$(percentile 99 < "$WORK/col")" "$(sort -n "$WORK/col" | tail -1)"; }
    printf '  --lease-ttl %ss --lease-renew-interval %ss%s, %d tries (p50 / p99 / max; the p99 of %d is its max)\n' \
        "$2" "$3" "${4:-}" "$n" "$n"
    row "    leader killed (-9) → first container started by the new leader" "$(stats 1)"
    row "    leader killed (-9) → survivor's /readyz says it leads" "$(stats 2)  (window $(( $2 - $3 ))–$(( $2 + $3 )) s)"
    twice="$(awk '$3 != 1 { n++ } END { print n + 0 }' "$file")"
    row "    runs whose container started more than once" "$twice"
    printf '    kill → container start per try (s): %s\n' "$(awk '{ printf "%.2f ", $1 / 1000 }' "$file")"
}
# burst_rows FILE LABEL: one row per round of burst-FILE.txt.
burst_rows() {
    local seconds load load_after round=0
    while read -r seconds load load_after; do
        round=$((round + 1))
        row "  $2, round $round" "$seconds s, $(awk -v n="$RUNS" -v t="$seconds" 'BEGIN { printf "%.1f", n / t }') runs/s  (load $load → $load_after)"
    done < "$WORK/burst-$1.txt"
}

printf '\nFlotilla replicas on one PostgreSQL: failover, throughput, follower API (release build)\n'
printf 'PostgreSQL %s (throwaway server, default durability), docker %s through the socket proxy, %s cores\n' \
    "$("$PG_BIN/postgres" --version | awk '{ print $3 }')" "$(docker version --format '{{.Server.Version}}')" "$(nproc)"
printf 'load at start: %s\n  after the failovers: %s\n  after the bursts: %s\n  at wrk: %s\n  after: %s\n\n' \
    "$LOAD_START" "$LOAD_AFTER_FAILOVER (${FAILOVER_SECONDS}s of failovers)" "$LOAD_AFTER_BURSTS" "$LOAD_WRK" "$LOAD_WRK_AFTER"
printf '1. Failover (the killed replica is restarted as a follower before the next try)\n'
failover_rows fast "$FAST_TTL" "$FAST_RENEW"
if (( DEFAULT_TRIES > 0 )); then failover_rows default 15 5 " (the defaults)"; fi
printf '\n2. Throughput: %d hello runs created in one burst, --max-concurrent-runs 8, until all Succeeded\n' "$RUNS"
# One leader runs every container whatever the number of replicas: a follower serves the
# API and writes Run objects, it starts nothing. Replicas add availability, not throughput.
burst_rows one "one operator on PostgreSQL"
burst_rows two "two replicas, runs created half through each API"
printf '  (one leader runs all containers: replicas add availability, not throughput)\n'
printf '\n3. API latency, wrk 10 connections paced at %s req/s for %ss (%s runs stored, page of %s)\n' \
    "$RATE" "$DURATION" "$((ROUNDS * RUNS + 1))" "$LIST_ITEMS"
printf '  %-40s %14s %14s %22s\n' "" "achieved req/s" "p50 / p99 ms" "requests / non-2xx"
for what in list get; do
    for role in follower leader; do
        if [[ "$what" == list ]]; then label="GET runs?limit=100, $role"; else label="GET one run, $role"; fi
        printf '  %-40s %14s %14s %22s\n' "$label" "$(wrk_figure "$what-$role" rps)" \
            "$(wrk_figure "$what-$role" p50) / $(wrk_figure "$what-$role" p99)" \
            "$(wrk_figure "$what-$role" requests) / $(wrk_figure "$what-$role" non2xx)"
    done
done

printf "\n4. A run created through the leader's API → its ADDED event on the follower's watch (PostgreSQL NOTIFY at commit)\n"
row "  p50 / p99 / max over $(wc -l < "$WORK/watch-latency.txt") of $WATCH_TRIES writes" \
    "$(percentile 50 < "$WORK/watch-latency.txt") / $(percentile 99 < "$WORK/watch-latency.txt") / $(sort -n "$WORK/watch-latency.txt" | tail -1) ms"

printf '\nReplica logs: WARN/ERROR lines (count, message without timestamp)\n'
for file in "$WORK"/*.log; do
    printf '  %s: %d WARN, %d ERROR, %d starts\n' "$(basename "$file")" \
        "$(grep -c ' WARN ' "$file" || true)" "$(grep -c ' ERROR ' "$file" || true)" \
        "$(grep -c '^--- bench: started' "$file" || true)"
    grep -E ' (WARN|ERROR) ' "$file" | cut -d' ' -f2- | sed -E 's/(run|container|holder)=[^ ]+/\1=…/g; s/[0-9a-f]{8}-[0-9a-f-]{27}/…/g' |
        sort | uniq -c | sort -rn | head -8 | cut -c1-220 | sed 's/^/    /' || true
done
printf '\ntotal time: %d s\n' "$SECONDS"
