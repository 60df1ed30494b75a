#!/usr/bin/env bash
# Benchmark of the git source (issue 6), run by `make bench`.
#
# A repository of 1,000 pipelines (a folder with main.py and a YAML manifest each) is
# served from a local bare repository (file URL) to a release `flotilla serve
# --git-url`. Measured:
#   - the first sync (clone, check out, scan and apply 1,000 pipelines),
#   - push → webhook → applied: from the start of `git push` of a commit that changes
#     one pipeline until the API returns the changed spec, with the push delivered to
#     `POST /hooks/git` (GitHub form, HMAC-signed) (median of RUNS),
#   - a sync that finds nothing new: `POST …/sources/sync?wait=true`, as the client
#     sees it and as the server measured it (median of RUNS).
# The server gets a Docker endpoint that refuses connections: nothing runs.
#
# Prints figures next to the targets. It fails only when something crashes or answers
# wrongly; a missed target is a figure to look at, not an error.
#
# Environment: PIPELINES (default 1000), RUNS (default 5), CARGO_TARGET_DIR,
# FLOTILLA_BIN (a binary to use instead of building), KEEP=1 keeps the temp dir.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIPELINES="${PIPELINES:-1000}"
RUNS="${RUNS:-5}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
SECRET="bench-webhook-secret"
API="/apis/flotilla.dev/v1alpha1"

# shellcheck source=bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
now_ns() { date +%s%N; }
elapsed_ms() { echo $((($2 - $1) / 1000000)); }
git_() {
    git -c user.name=bench -c user.email=bench@flotilla.invalid -c init.defaultBranch=main \
        -c commit.gpgsign=false "$@"
}

bench_build

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-git.XXXXXX")"
SERVER_PID=""
cleanup() { bench_stop_server; bench_remove_work; }
trap cleanup EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1

log "==> a repository of $PIPELINES pipelines"
git_ init --quiet --bare "$WORK/remote.git"
git_ init --quiet "$WORK/work"
cd "$WORK/work"
git_ remote add origin "$WORK/remote.git"
awk -v n="$PIPELINES" 'BEGIN {
    for (i = 0; i < n; i++) {
        name = sprintf("bench-%04d", i);
        system("mkdir -p pipelines/" name);
        printf "print(\"%s\")\n", name > ("pipelines/" name "/main.py");
        printf "requests==2.32.3\n" > ("pipelines/" name "/requirements.txt");
        printf "apiVersion: flotilla.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: %s\n  labels: { suite: bench }\nspec:\n  source: { path: %s }\n  python: \"3.12\"\n  env: { INDEX: \"%d\" }\n  resources: { memory: 256Mi, cpus: \"0.5\" }\n  timeout: 10m\n", name, name, i > ("pipelines/" name ".yaml");
        close("pipelines/" name "/main.py"); close("pipelines/" name "/requirements.txt"); close("pipelines/" name ".yaml");
    }
}'
git_ add --all
git_ commit --quiet -m "$PIPELINES pipelines"
git_ push --quiet origin HEAD:refs/heads/main
log "    $(git ls-files | wc -l) files"

log "==> starting flotilla serve --git-url file://$WORK/remote.git --git-path pipelines"
KEY="$("$BIN" secret gen-key)"
TOKEN="flt_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
start=$(now_ns)
ENCRYPTION_KEY="$KEY" FLOTILLA_ADMIN_TOKEN="$TOKEN" DOCKER_HOST=tcp://127.0.0.1:1 \
    FLOTILLA_INSTANCE="bench-git-$$" WEBHOOK_SECRET="$SECRET" RUST_LOG=warn \
    "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 \
    --git-url "file://$WORK/remote.git" --git-branch main --git-path pipelines \
    >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
bench_await_api
log "    $SERVER (pid $SERVER_PID)"

call() { curl -sf -H "Authorization: Bearer $TOKEN" "$@"; }
field() { python3 -c "import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split('.'): v = v[int(k)] if isinstance(v, list) else (v or {}).get(k)
print('' if v is None else v)" "$1"; }

# The first sync: wait until the status shows an applied commit.
for _ in $(seq 1 600); do
    RESULT="$(call "$SERVER$API/sources" | field items.0.lastSync.result || true)"
    [[ "$RESULT" == applied ]] && break
    [[ "$RESULT" == invalid || "$RESULT" == failed ]] && { call "$SERVER$API/sources" >&2; exit 1; }
    sleep 0.05
done
FIRST_MS=$(elapsed_ms "$start" "$(now_ns)")
FIRST_SERVER_MS="$(call "$SERVER$API/sources" | field items.0.lastSync.durationMs)"
STORED=$(call "$SERVER$API/namespaces/default/pipelines" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
[[ "$STORED" -eq "$PIPELINES" ]] || { log "expected $PIPELINES pipelines, found $STORED"; exit 1; }

log "==> push → webhook → applied, $RUNS times"
PUSH_TIMES=()
for run in $(seq 1 "$RUNS"); do
    name="bench-$(printf '%04d' $((run * 97 % PIPELINES)))"
    sed -i "s/^  env: { INDEX: \"[0-9]*\"[^}]*}/  env: { INDEX: \"$run\", RUN: \"bench-$run\" }/" "pipelines/$name.yaml"
    git_ commit --quiet -am "bench change $run"
    start=$(now_ns)
    git_ push --quiet origin HEAD:refs/heads/main
    body="{\"ref\":\"refs/heads/main\",\"after\":\"$(git rev-parse HEAD)\"}"
    signature="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)"
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SERVER/hooks/git" \
        -H "X-GitHub-Event: push" -H "X-Hub-Signature-256: $signature" \
        -H 'Content-Type: application/json' --data-binary "$body")
    [[ "$status" == 202 ]] || { log "webhook answered $status"; exit 1; }
    applied=""
    for _ in $(seq 1 2000); do
        if call "$SERVER$API/namespaces/default/pipelines/$name" | grep -q "\"bench-$run\""; then
            applied=1
            break
        fi
    done
    [[ -n "$applied" ]] || { log "the change to $name never arrived"; exit 1; }
    PUSH_TIMES+=("$(elapsed_ms "$start" "$(now_ns)")")
done
PUSH_MS=$(printf '%s\n' "${PUSH_TIMES[@]}" | median)

log "==> sync with nothing new (POST $API/sources/sync?wait=true), $RUNS times"
NOOP_TIMES=()
NOOP_SERVER=()
for _ in $(seq 1 "$RUNS"); do
    start=$(now_ns)
    answer="$(call -X POST "$SERVER$API/sources/sync?wait=true")"
    NOOP_TIMES+=("$(elapsed_ms "$start" "$(now_ns)")")
    [[ "$(printf '%s' "$answer" | field lastSync.result)" == unchanged ]] || { log "expected unchanged: $answer"; exit 1; }
    NOOP_SERVER+=("$(printf '%s' "$answer" | field lastSync.durationMs)")
done
NOOP_MS=$(printf '%s\n' "${NOOP_TIMES[@]}" | median)
NOOP_SERVER_MS=$(printf '%s\n' "${NOOP_SERVER[@]}" | median)
kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; log "serve crashed"; exit 1; }

verdict() { if [[ "$1" -le "$2" ]]; then echo "ok"; else echo "MISSED"; fi; }
row() { printf '%-60s %7s %-2s %7s %-2s %s\n' "$1" "$2" "$3" "$4" "$3" "$5"; }
printf '\nFlotilla git source benchmark: %d pipelines (%d files), file remote, SQLite, release build\n\n' \
    "$PIPELINES" "$(git ls-files | wc -l)"
printf '%-60s %10s %10s\n' "MEASURE" "RESULT" "TARGET"
row "first sync: clone, check out, apply $PIPELINES (from start)" "$FIRST_MS" ms - ""
row "  the sync itself, as the server measured it" "$FIRST_SERVER_MS" ms - ""
row "push → webhook → change in the store (median of $RUNS)" "$PUSH_MS" ms 2000 "$(verdict "$PUSH_MS" 2000)"
row "sync with nothing new, client round trip (median of $RUNS)" "$NOOP_MS" ms 200 "$(verdict "$NOOP_MS" 200)"
row "  the sync itself, as the server measured it (median)" "$NOOP_SERVER_MS" ms - ""
printf '\npush → applied (ms): %s | no-change sync (ms): %s\n' "${PUSH_TIMES[*]}" "${NOOP_TIMES[*]}"
