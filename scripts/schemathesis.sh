#!/usr/bin/env bash
# Schemathesis against the /openapi.json of a running `flotilla serve --dev` (SQLite in a
# temp dir, no Docker, a free loopback port): every generated request must be answered
# without a 5xx. Part of `make fuzz`; runs alone too.
#
#   SCHEMATHESIS_EXAMPLES=50   examples per API operation
#   SCHEMATHESIS_VENV=...      where schemathesis is installed (from PyPI) if missing
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flotilla-target}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-50}
VENV=${SCHEMATHESIS_VENV:-$HOME/.cache/flotilla-schemathesis}

if [[ ! -x $VENV/bin/schemathesis ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet schemathesis
fi
cargo build --bin flotilla
BIN=$CARGO_TARGET_DIR/debug/flotilla

dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-schemathesis.XXXXXX")
server=
: >"$dir/stdout"
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

token=flt_schemathesis_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
key=$("$BIN" secret gen-key)
# DOCKER_HOST points at a port that refuses at once: the API is under test, not runs.
ENCRYPTION_KEY=$key FLOTILLA_ADMIN_TOKEN=$token DOCKER_HOST=tcp://127.0.0.1:1 \
    FLOTILLA_INSTANCE=flotilla-schemathesis-$$ RUST_LOG=warn NO_COLOR=1 \
    "$BIN" serve --dev --data-dir "$dir/data" --listen 127.0.0.1:0 \
    >"$dir/stdout" 2>"$dir/serve.log" </dev/null &
server=$!

base=
for _ in $(seq 300); do
    base=$(sed -nE 's#^Flotilla API: *(http://[^/]+)/.*#\1#p' "$dir/stdout" | head -1)
    [[ -n $base ]] && break
    kill -0 "$server" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $base ]] || { echo "flotilla serve printed no address" >&2; cat "$dir/serve.log" >&2; exit 1; }
# Objects for the requests to find (see fuzz/schemathesis.toml).
api="$base/apis/flotilla.dev/v1alpha1"
curl -sS --fail-with-body -o "$dir/seed.out" -H "Authorization: Bearer $token" -H 'Content-Type: application/yaml' \
    --data-binary @- "$api/apply?fieldManager=schemathesis" <<'YAML' || { cat "$dir/seed.out" >&2; exit 1; }
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: {name: hello}
spec: {source: {path: hello}, webhookKey: fuzzkey}
---
apiVersion: flotilla.dev/v1alpha1
kind: Schedule
metadata: {name: hello}
spec: {pipelineRef: {name: hello}, every: 5m}
---
apiVersion: flotilla.dev/v1alpha1
kind: Secret
metadata: {name: db}
spec: {stringData: {PASSWORD: hunter2}}
YAML
curl -sS --fail-with-body -o "$dir/seed.out" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"metadata": {"name": "hello-1"}, "spec": {"pipelineRef": {"name": "hello"}}}' \
    "$api/namespaces/default/runs" || { cat "$dir/seed.out" >&2; exit 1; }

echo "== schemathesis against $base/openapi.json ($EXAMPLES examples per operation)"

# /readyz is excluded: without Docker its answer is 503 by design (the runtime does not
# answer); every other route must not answer 5xx to anything.
# Run from the temp dir: schemathesis keeps a cache (.schemathesis/) in its working dir.
config=$PWD/fuzz/schemathesis.toml
set +e
(cd "$dir" && "$VENV/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
    --checks not_a_server_error \
    --exclude-path /readyz \
    --max-examples "$EXAMPLES" \
    --header "Authorization: Bearer $token" \
    --workers 1 \
    --request-timeout 30 \
    --suppress-health-check all \
    --generation-database none \
    --no-color) | tee "$dir/schemathesis.out"
status=${PIPESTATUS[0]}
set -e

echo "schemathesis: $(grep -E '^ +[0-9]+ generated' "$dir/schemathesis.out" | xargs) (exit $status)"
if [[ $status != 0 ]]; then
    echo "server log (last lines):" >&2
    grep -v 'container runtime unavailable' "$dir/serve.log" | tail -40 >&2 || true
fi
exit "$status"
