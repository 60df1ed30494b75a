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
