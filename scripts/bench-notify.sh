#!/usr/bin/env bash
# Benchmark of notifications (issue 15), run by `make bench`: SAMPLES (default 20)
# sequential failing runs, each notified to a local webhook receiver (Python's
# http.server) through a Notifier; prints median / p90 / max ms from the run's end (its
# container's exit, as recorded) to the receiver's arrival. Prints figures; fails only
# when something breaks.
#
# Environment: SAMPLES, PROXY_PORT (default 23795), FLOTILLA_BIN (a binary to measure
# instead of building the release one), KEEP=1 keeps the work dir, CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/release/flotilla}"
SAMPLES="${SAMPLES:-20}"
PORT="${PROXY_PORT:-23795}"
source "$ROOT/scripts/bench-lib.sh"
bench_build
bash "$ROOT/scripts/runner-image.sh" build >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench-notify.XXXXXX")"
INSTANCE="bench-notify-$$"
SERVER_PID=""
RECEIVER_PID=""
cleanup() {
    bench_stop_pipelines "$INSTANCE" "$PORT"
    # (errexit holds in traps: a failing wait must not skip the rest)
    if [[ -n "$RECEIVER_PID" ]]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    bench_remove_work
}
trap cleanup EXIT

# The receiver appends `<arrival unix time> <run>` per POST, and prints its port.
cat > "$WORK/receiver.py" <<'PY'
import http.server, json, sys, time
out = open(sys.argv[1], "a", buffering=1)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        at = time.time()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out.write(f"{at} {body.get('run')}\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
: > "$WORK/arrivals"
python3 "$WORK/receiver.py" "$WORK/arrivals" > "$WORK/receiver.port" &
RECEIVER_PID=$!
until [[ -s "$WORK/receiver.port" ]]; do sleep 0.1; done
HOOK_PORT="$(cat "$WORK/receiver.port")"

mkdir -p "$WORK/pipelines/fails"
printf 'import sys\nprint("failing", flush=True)\nsys.exit(2)\n' > "$WORK/pipelines/fails/main.py"
cat > "$WORK/pipelines/flotilla.yaml" <<YAML
apiVersion: flotilla.dev/v1alpha1
kind: Pipeline
metadata: { name: fails }
spec: { source: { path: fails } }
---
apiVersion: flotilla.dev/v1alpha1
kind: Notifier
metadata: { name: hook }
spec:
  selector: { matchLabels: {} }
  webhook: { url: "http://127.0.0.1:$HOOK_PORT/hook" }
YAML

bench_serve_pipelines "$INSTANCE" "$PORT"
until "$BIN" get notifier hook >/dev/null 2>&1 && "$BIN" get pipeline fails >/dev/null 2>&1; do sleep 0.2; done

log "==> $SAMPLES failing runs notified to a webhook"
for i in $(seq "$SAMPLES"); do
    "$BIN" run fails --wait >/dev/null 2>&1 || true
    until [[ "$(wc -l < "$WORK/arrivals")" -ge "$i" ]]; do sleep 0.05; done
done
"$BIN" get runs -o json | python3 -c '
import json, sys
from datetime import datetime
arrivals = {}
for line in open(sys.argv[1]):
    at, run = line.split()
    arrivals[run] = float(at)
latencies = []
for run in json.load(sys.stdin)["items"]:
    ended = datetime.fromisoformat(run["status"]["attempts"][-1]["finishedAt"].replace("Z", "+00:00"))
    latencies.append((arrivals[run["metadata"]["name"]] - ended.timestamp()) * 1000)
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"{len(latencies)} failing runs, ms from the container exit to the webhook   median      p90      max")
label = "notification received"
print(f"{label:<66} {pick(0.5):8.0f} {pick(0.9):8.0f} {latencies[-1]:8.0f}")
' "$WORK/arrivals"
