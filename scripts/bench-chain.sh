#!/usr/bin/env bash
# Benchmark of downstream triggers (issue 15), run by `make bench`: CHAINS (default 20)
# sequential runs of `parent`, each starting one run of `child` through `spec.triggers`,
# through the socket proxy. Prints, in ms, median / p90 / max of the time from the
# parent's container exit to the child's container start (Docker's times, as recorded in
# the runs' attempts): recording the parent (which creates the child in the same write),
# admitting the child, creating and starting its container.
# Prints figures; fails only when something breaks.
#
# Environment: CHAINS, PROXY_PORT (default 23794), FLOTILLA_BIN (a binary to measure
# instead of building the release one), KEEP=1 keeps the work dir, CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
CHAINS="${CHAINS:-20}"
PORT="${PROXY_PORT:-23794}"
source "$ROOT/scripts/bench-lib.sh"
bench_build
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-chain.XXXXXX")"
INSTANCE="bench-chain-$$"
SERVER_PID=""
cleanup() {
    bench_stop_pipelines "$INSTANCE" "$PORT"
    bench_remove_work
}
trap cleanup EXIT

mkdir -p "$WORK/pipelines/parent" "$WORK/pipelines/child"
echo 'print("parent")' > "$WORK/pipelines/parent/main.py"
echo 'print("child")' > "$WORK/pipelines/child/main.py"
cat > "$WORK/pipelines/flotilla.yaml" <<'YAML'
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: parent }
spec: { source: { path: parent }, triggers: [ { pipeline: child } ] }
---
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: child }
spec: { source: { path: child } }
YAML

bench_serve_pipelines "$INSTANCE" "$PORT"
until "$BIN" get pipeline child >/dev/null 2>&1; do sleep 0.2; done

log "==> $CHAINS chains parent → child through the socket proxy"
for _ in $(seq "$CHAINS"); do
    "$BIN" run parent --wait >/dev/null
    # The child's run exists once the parent is recorded; wait for it to finish.
    until "$BIN" get runs -o json | python3 -c '
import json, sys
runs = json.load(sys.stdin)["items"]
sys.exit(0 if all(r.get("status", {}).get("phase") in ("Succeeded", "Failed") for r in runs) else 1)
'; do sleep 0.2; done
done
"$BIN" get runs -o json | python3 -c '
import json, sys
from datetime import datetime
runs = json.load(sys.stdin)["items"]
by_name = {r["metadata"]["name"]: r for r in runs}
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
started = []
for parent in (r for r in runs if r["spec"]["pipelineRef"]["name"] == "parent"):
    exit_at = t(parent["status"]["attempts"][-1]["finishedAt"])
    (child_name,) = parent["status"]["downstream"]
    child = by_name[child_name]
    started.append((t(child["status"]["attempts"][0]["startedAt"]) - exit_at).total_seconds() * 1000)
def row(name, values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    print(f"{name:<42} {pick(0.5):8.0f} {pick(0.9):8.0f} {values[-1]:8.0f}")
print(f"{len(started)} chains, ms after the parent container exit   median      p90      max")
row("child container started", started)
'
