# Shared by the bench-*.sh scripts (sourced, not run): logging, medians, the work dir,
# and starting `flotilla serve` and waiting for its address. A sourcing script sets ROOT
# and BIN first.

log() { printf '%s\n' "$*" >&2; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench_build: builds the release binary unless FLOTILLA_BIN names one to measure.
bench_build() {
    if [[ -z "${FLOTILLA_BIN:-}" ]]; then
        log "==> building the release binary"
        (cd "$ROOT" && cargo build --release --quiet --bin flotilla)
    fi
}

# bench_stop_server: ends the server this script started (SERVER_PID), if it runs.
bench_stop_server() {
    if [[ -n "${SERVER_PID:-}" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

# bench_remove_work: deletes WORK unless KEEP=1.
bench_remove_work() {
    if [[ "${KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}

# bench_await_api: waits until the server started as SERVER_PID, writing to
# $WORK/serve.out and $WORK/serve.log, prints its address; sets SERVER.
bench_await_api() {
    SERVER=""
    for _ in $(seq 1 300); do
        SERVER="$(sed -n 's#^Flotilla API: *\(http://[^/]*\)/.*#\1#p' "$WORK/serve.out" | head -1)"
        [[ -n "$SERVER" ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; log "serve died at start"; exit 1; }
        sleep 0.1
    done
    cat "$WORK/serve.log" >&2
    log "serve printed no address"
    exit 1
}

# bench_serve_without_docker INSTANCE: starts `flotilla serve` on SQLite in $WORK/data
# with an unreachable Docker host (for benchmarks of the store and the API) and a fresh
# admin token; sets TOKEN, SERVER_PID and SERVER.
bench_serve_without_docker() {
    log "==> starting flotilla serve (SQLite in $WORK/data)"
    local key
    key="$("$BIN" secret gen-key)"
    TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    ENCRYPTION_KEY="$key" FLOTILLA_ADMIN_TOKEN="$TOKEN" DOCKER_HOST=tcp://127.0.0.1:1 \
        FLOTILLA_INSTANCE="$1" RUST_LOG=warn \
        "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVER_PID=$!
    bench_await_api
}

# bench_serve_pipelines INSTANCE PORT: starts the socket proxy on 127.0.0.1:PORT and
# `flotilla serve` on SQLite in $WORK/data, reconciling $WORK/pipelines through that
# proxy as INSTANCE, with a fresh key and admin token; exports FLOTILLA_TOKEN and
# FLOTILLA_SERVER for the CLI and sets SERVER_PID. bench_stop_pipelines INSTANCE PORT
# (for the cleanup trap) stops both and removes the instance's containers.
bench_serve_pipelines() {
    bash "$ROOT/scripts/proxy.sh" start --listen "127.0.0.1:$2" >/dev/null
    export ENCRYPTION_KEY="$("$BIN" secret gen-key)"
    export FLOTILLA_ADMIN_TOKEN="bench-$(date +%s%N)"
    export FLOTILLA_TOKEN="$FLOTILLA_ADMIN_TOKEN"
    "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --pipelines-dir "$WORK/pipelines" \
        --docker-host "tcp://127.0.0.1:$2" --instance "$1" \
        >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVER_PID=$!
    bench_await_api
    export FLOTILLA_SERVER="$SERVER"
}

bench_stop_pipelines() {
    bench_stop_server
    docker ps -aq --filter "label=flotilla.dev/managed-by=$1" | xargs -r docker rm -f >/dev/null
    bash "$ROOT/scripts/proxy.sh" stop --listen "127.0.0.1:$2" >/dev/null 2>&1 || true
}

# A throwaway PostgreSQL server for the benchmarks of a shared store: initdb into
# DIR/data (trust auth, superuser `postgres`, default durability), listening on a free
# loopback port with its socket in DIR. PostgreSQL refuses to run as root, so under root
# its programs run as nobody: DIR is handed to nobody and its parents must be
# traversable by others (chmod 755 the work dir).

# bench_free_port: a loopback TCP port that was free a moment ago.
bench_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_as_postgres COMMAND…: runs COMMAND as nobody under root, else as the caller.
bench_as_postgres() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u nobody -- "$@"; else "$@"; fi
}

# bench_start_postgres DIR: initialises and starts the server; sets PG_BIN, PG_DATA and
# PG_PORT. bench_stop_postgres (for the cleanup trap) stops it again.
bench_start_postgres() {
    local initdb
    initdb="$(command -v initdb || true)"
    if [[ -n "$initdb" ]]; then
        PG_BIN="$(dirname "$(readlink -f "$initdb")")"
    else
        PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)"
    fi
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] ||
        { log "PostgreSQL server binaries not found: apt-get install postgresql"; exit 1; }
    mkdir -p "$1"
    [[ "$(id -u)" == 0 ]] && chown nobody "$1"
    PG_DATA="$1/data"
    bench_as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    PG_PORT="$(bench_free_port)"
    bench_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$1/server.log" -w \
        -o "-p $PG_PORT -k $1 -c listen_addresses=127.0.0.1" start >/dev/null
}

# bench_stop_postgres: stops the server bench_start_postgres started (its data dir's
# postmaster, nothing else), if it runs.
bench_stop_postgres() {
    [[ -n "${PG_DATA:-}" && -f "$PG_DATA/postmaster.pid" ]] || return 0
    bench_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
}

# bench_create_database NAME: creates database NAME on that server; prints its URL.
bench_create_database() {
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $1" >/dev/null
    printf 'postgres://postgres@127.0.0.1:%s/%s\n' "$PG_PORT" "$1"
}
