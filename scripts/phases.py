#!/usr/bin/env python3
"""Where the time of one run goes: the phases of sequential runs, in milliseconds after
the trigger, from Docker's event stream (create, start, die), the API (reply, first line
through the log's SSE follow, run recorded finished through a watch) and when the
process printed its line (the pipeline prints `<expect> <time.time_ns()>`). Used by
scripts/bench-runs.sh.

usage:
  phases.py flotilla --server URL --token TOKEN --pipeline NAME --expect TEXT
                     --label KEY=VALUE --samples N --out FILE [--haproxy-log FILE]
                     [--follow 0] [--lines N]
  phases.py docker   --label KEY=VALUE --samples N --expect TEXT --out FILE -- DOCKER-RUN-ARGS...
  phases.py table    NAME=FILE...
  phases.py scheduled --server URL --token TOKEN --schedule NAME --expect TEXT
                     --label KEY=VALUE --samples N --haproxy-log FILE

`scheduled` times the runs of an existing schedule from their slot instead: for the next
N runs it follows each log over SSE from when the run appears (created ahead of its
slot), and prints, per phase, ms after the slot: when the operator called `start`
(HAProxy log), Docker's start event, the first line printed and readable, and the
operator's own share (slot → start called, plus printed → readable).

`flotilla` triggers N runs one after another (POST …/runs), follows each run's log over
SSE from right after the reply (not with --follow 0), watches runs for the recorded end,
and checks that the log read right then holds the expected line (with --lines, exactly
N lines). `docker` runs
`docker run --name <unique> DOCKER-RUN-ARGS...` N times (the floor: the same image and
command without Flotilla) and reads its first output line from the CLI. Both write one
JSON object per sample to FILE; with --haproxy-log (the socket proxy's log), also when
the operator sent each run's `POST /containers/create` and how long Docker took to
answer it (HAProxy's request date and Tr). `table` prints medians and p90 per phase, one column per
FILE. Docker events are read with `docker events` from the default socket (the daemon's
own clock, the same as time.time() here).
"""
import http.client
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse

PHASES = [
    ("reply", "HTTP reply"),
    ("create_call", "container create called (proxy log)"),
    ("create", "container create (event)"),
    ("start", "container start (event)"),
    ("printed", "first line printed (the process's clock)"),
    ("first_line", "first line readable (API / docker CLI)"),
    ("die", "container die (event)"),
    ("recorded", "run recorded finished"),
]
DERIVED = [
    ("reply → create called", "reply", "create_call"),
    ("create called → create event", "create_call", "create"),
    ("printed → readable", "printed", "first_line"),
    ("die → recorded", "die", "recorded"),
]


class DockerEvents:
    """`docker events` for containers with one label, kept by container name."""

    def __init__(self, label):
        self.times = {}  # name -> {action: ns}
        self.cond = threading.Condition()
        self.process = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", f"label={label}",
             "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        import atexit
        atexit.register(self.close)  # also when a check fails (sys.exit)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)  # the stream is open before the first trigger

    def _read(self):
        for line in self.process.stdout:
            event = json.loads(line)
            attrs = event.get("Actor", {}).get("Attributes", {})
            name = attrs.get("flotilla.dev/run-name", attrs.get("name", ""))
            name = name.split("/", 1)[-1]
            with self.cond:
                self.times.setdefault(name, {}).setdefault(event.get("Action"), event["timeNano"])
                self.cond.notify_all()

    def wait(self, name, action, timeout=120):
        deadline = time.monotonic() + timeout
        with self.cond:
            while action not in self.times.get(name, {}):
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit(f"no {action} event for {name} within {timeout} s")
                self.cond.wait(left)
            return self.times[name][action]

    def close(self):
        self.process.terminate()


class RunWatch:
    """A watch on runs: when each one was first seen finished."""

    def __init__(self, server, token):
        url = urllib.parse.urlsplit(server)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        self.conn.request("GET", "/apis/flotilla.dev/v1alpha1/namespaces/default/runs?watch=true",
                          headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            sys.exit(f"watch: HTTP {self.response.status}")
        self.finished = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            line = self.response.readline()
            if not line:
                return
            now = time.time_ns()
            try:
                event = json.loads(line)
            except ValueError:
                continue
            obj = event.get("object", {})
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed", "Cancelled"):
                with self.cond:
                    self.finished.setdefault(obj["metadata"]["name"], (now, phase))
                    self.cond.notify_all()

    def wait(self, name, timeout=120):
        deadline = time.monotonic() + timeout
        with self.cond:
            while name not in self.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit(f"run {name} not recorded finished within {timeout} s")
                self.cond.wait(left)
            return self.finished[name]


def printed_ns(line, expect):
    """When the process printed its line: `hello` prints `hello <time.time_ns()>`. The
    stored stamp is the operator's arrival time for output read attached, and Docker's
    only for output read from its log, so neither tells when the line was printed."""
    found = re.search(re.escape(expect) + r" (\d{19})\b", line)
    return int(found.group(1)) if found else None


def first_line(url, path, auth, expect, name):
    """Follows a run's log over SSE to its end; returns when its first line came."""
    follow = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    follow.request("GET", path, headers=auth)
    stream = follow.getresponse()
    t_first = None
    while True:
        line = stream.readline()
        if not line:
            break
        if line.startswith(b"data:") and t_first is None:
            t_first = time.time_ns()
            text = line[5:].strip().decode()
            if expect not in text:
                sys.exit(f"run {name}: first line {text!r}, expected {expect!r}")
        if line.startswith(b"event: end"):
            break
    follow.close()
    return t_first


def flotilla(args):
    events = DockerEvents(args["label"])
    url = urllib.parse.urlsplit(args["server"])
    auth = {"Authorization": f"Bearer {args['token']}"}
    watch = RunWatch(args["server"], args["token"])
    api = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    body = json.dumps({"spec": {"pipelineRef": {"name": args["pipeline"]}}})
    base = "/apis/flotilla.dev/v1alpha1/namespaces/default/runs"
    samples = []
    for _ in range(int(args["samples"])):
        t0 = time.time_ns()
        api.request("POST", base, body=body, headers={**auth, "Content-Type": "application/json"})
        reply = api.getresponse()
        answer = reply.read()
        t_reply = time.time_ns()
        if reply.status != 201:
            sys.exit(f"POST runs: HTTP {reply.status}: {answer[:300]!r}")
        metadata = json.loads(answer)["metadata"]
        name, uid = metadata["name"], metadata["uid"]
        t_first = None
        if args.get("follow", "1") == "1":
            t_first = first_line(url, f"{base}/{name}/log?follow=true", auth, args["expect"], name)
        t_recorded, phase = watch.wait(name)
        if phase != "Succeeded":
            sys.exit(f"run {name} ended {phase}")
        # Every line stored when the end is recorded: the log read now holds the line
        # (and, with --lines N, N lines).
        api.request("GET", f"{base}/{name}/log", headers=auth)
        log = api.getresponse().read().decode()
        first = next((l for l in log.splitlines() if args["expect"] in l), None)
        if first is None:
            sys.exit(f"run {name}: recorded finished without its line stored: {log[:300]!r}")
        if args.get("lines") and log.count("\n") != int(args["lines"]):
            sys.exit(f"run {name}: {log.count(chr(10))} lines stored, expected {args['lines']}")
        sample = {
            "reply": t_reply, "first_line": t_first, "recorded": t_recorded,
            "printed": printed_ns(first, args["expect"]),
            "create": events.wait(name, "create"), "start": events.wait(name, "start"),
            "die": events.wait(name, "die"),
        }
        samples.append({k: (v - t0) / 1e6 if v is not None else None for k, v in sample.items()}
                       | {"name": name, "uid": uid, "t0": t0})
        time.sleep(0.2)  # let the finished run's clean-up pass before the next trigger
    events.close()
    if args.get("haproxy_log"):
        calls = create_calls(args["haproxy_log"])
        for s in samples:
            at = calls.get(f"flotilla-{s['uid']}-1")
            s["create_call"] = (at - s["t0"]) / 1e6 if at is not None else None
    write(args["out"], samples)


def proxy_requests(path, request):
    """Container name → when the first request matching `request` (a regular expression
    whose group 1 is the container name) reached the proxy, ns since the epoch, from
    HAProxy's httplog lines: `[30/Nov/2026:20:28:47.154] … "POST …"`. HAProxy writes
    local time with milliseconds."""
    import datetime
    import re
    calls = {}
    pattern = re.compile(r'\[([^\]]+)\] .*"' + request)
    with open(path, errors="replace") as log:
        for line in log:
            m = pattern.search(line)
            if m:
                at = datetime.datetime.strptime(m.group(1), "%d/%b/%Y:%H:%M:%S.%f").timestamp()
                calls.setdefault(m.group(2), int(at * 1e9))
    return calls


def create_calls(path):
    """Container name → when its create request reached the proxy."""
    return proxy_requests(path, r'POST \S*/containers/create\?name=([^ &"]+)')


def start_calls(path):
    """Container name → when its start request reached the proxy."""
    return proxy_requests(path, r'POST \S*/containers/([^/ ]+)/start')


def scheduled(args):
    events = DockerEvents(args["label"])
    url = urllib.parse.urlsplit(args["server"])
    auth = {"Authorization": f"Bearer {args['token']}"}
    base = "/apis/flotilla.dev/v1alpha1/namespaces/default/runs"
    wanted = int(args["samples"])
    watch = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    watch.request("GET", f"{base}?watch=true", headers=auth)
    response = watch.getresponse()
    if response.status != 200:
        sys.exit(f"watch: HTTP {response.status}")
    runs, followers, first, finished = {}, [], {}, {}

    def follow(name):
        first[name] = first_line(url, f"{base}/{name}/log?follow=true", auth, args["expect"], name)

    opened = time.time()
    while len(finished) < wanted:
        line = response.readline()
        if not line:
            sys.exit("the watch ended")
        now = time.time_ns()
        try:
            obj = json.loads(line).get("object", {})
        except ValueError:
            continue
        spec, status = obj.get("spec", {}), obj.get("status") or {}
        if (spec.get("scheduleRef") or {}).get("name") != args["schedule"]:
            continue
        name = obj["metadata"]["name"]
        if name not in runs:
            import datetime
            slot = datetime.datetime.fromisoformat(spec["slot"].replace("Z", "+00:00")).timestamp()
            # Its run and container are made up to the operator's lead (2 s) before the
            # slot: only slots whose create the event stream can have seen count.
            if slot < opened + 4 or len(runs) >= wanted:
                continue
            runs[name] = {"slot": int(slot * 1e9), "uid": obj["metadata"]["uid"]}
            thread = threading.Thread(target=follow, args=(name,), daemon=True)
            thread.start()
            followers.append(thread)
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled") and name not in finished:
            if status["phase"] != "Succeeded":
                sys.exit(f"run {name} ended {status['phase']}: {status.get('message')}")
            finished[name] = now
    for thread in followers:
        thread.join(60)
    calls = start_calls(args["haproxy_log"])
    samples = []
    for name, run in runs.items():
        api = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        api.request("GET", f"{base}/{name}/log", headers=auth)
        reply = api.getresponse()
        log = reply.read().decode()
        if reply.status != 200:
            sys.exit(f"log of {name}: HTTP {reply.status}: {log[:300]}")
        printed = next((l for l in log.splitlines() if args["expect"] in l), None)
        if printed is None:
            sys.exit(f"run {name}: no line {args['expect']!r} stored: {log[:300]!r}")
        t = run["slot"]
        sample = {
            "start_call": calls.get(f"flotilla-{run['uid']}-1"),
            "start": events.wait(name, "start"),
            "printed": printed_ns(printed, args["expect"]),
            "first_line": first.get(name),
            "create": events.times.get(name, {}).get("create"),
        }
        samples.append({k: (v - t) / 1e6 if v is not None else None for k, v in sample.items()})
    events.close()
    rows = [
        ("container create (event), before the slot when negative", lambda s: s["create"]),
        ("slot → start called (proxy log)", lambda s: s["start_call"]),
        ("start called → start event (Docker)", lambda s: s["start"] - s["start_call"]),
        ("start event → first line printed", lambda s: s["printed"] - s["start"]),
        ("first line printed → readable (API)", lambda s: s["first_line"] - s["printed"]),
        ("slot → first line readable", lambda s: s["first_line"]),
        ("Flotilla's share: slot → start called + printed → readable",
         lambda s: s["start_call"] + s["first_line"] - s["printed"]),
    ]
    print(f"\nscheduled runs, ms after their slot, median (p90) of {len(samples)} slots")
    for label, f in rows:
        values = []
        for sample in samples:
            try:
                values.append(f(sample))
            except TypeError:
                pass  # a phase not seen (no proxy log line)
        med, p90 = quantile(values, 0.5), quantile(values, 0.9)
        cell = "—" if med is None else f"{med:.1f} ({p90:.1f})"
        print(f"{label:<62}{cell:>20}")


def docker(args, command):
    events = DockerEvents(args["label"])
    samples = []
    for i in range(int(args["samples"])):
        name = f"floor-{time.time_ns()}-{i}"
        t0 = time.time_ns()
        process = subprocess.Popen(["docker", "run", "--name", name, *command],
                                   stdout=subprocess.PIPE)
        line = process.stdout.readline()
        t_first = time.time_ns()
        process.communicate()
        t_exit = time.time_ns()
        if args["expect"].encode() not in line or process.returncode != 0:
            sys.exit(f"docker run: first line {line!r}, exit {process.returncode}")
        sample = {
            "reply": None, "first_line": t_first, "recorded": t_exit,
            "create": events.wait(name, "create"), "start": events.wait(name, "start"),
            "die": events.wait(name, "die"),
        }
        sample["printed"] = printed_ns(line.decode(errors="replace"), args["expect"])
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        samples.append({k: (v - t0) / 1e6 if v is not None else None
                        for k, v in sample.items()} | {"name": name})
        time.sleep(0.2)
    events.close()
    write(args["out"], samples)


def write(path, samples):
    with open(path, "w") as out:
        json.dump(samples, out)


def quantile(values, q):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def table(columns):
    data = {}
    for column in columns:
        name, _, path = column.partition("=")
        with open(path) as f:
            data[name] = json.load(f)
    for sample_set in data.values():
        for s in sample_set:
            for label, a, b in DERIVED:
                s[label] = (s[b] - s[a]) if s.get(a) is not None and s.get(b) is not None else None
    names = list(data)
    count = max(len(v) for v in data.values())
    print(f"\nphases of one run, ms after the trigger, median (p90) of {count} sequential runs")
    print(f"{'phase':<42}" + "".join(f"{n:>20}" for n in names))
    rows = [(key, label) for key, label in PHASES] + [(label, label) for label, _, _ in DERIVED]
    for key, label in rows:
        cells = []
        for n in names:
            values = [s.get(key) for s in data[n]]
            med, p90 = quantile(values, 0.5), quantile(values, 0.9)
            cells.append("—" if med is None else f"{med:.1f} ({p90:.1f})")
        print(f"{label:<42}" + "".join(f"{c:>20}" for c in cells))


def parse(argv):
    args, rest = {}, []
    while argv:
        a = argv.pop(0)
        if a == "--":
            rest = argv
            break
        if a.startswith("--"):
            args[a[2:].replace("-", "_")] = argv.pop(0)
        else:
            rest.append(a)
    return args, rest


def main():
    mode, argv = sys.argv[1], sys.argv[2:]
    args, rest = parse(argv)
    if mode == "flotilla":
        flotilla(args)
    elif mode == "docker":
        docker(args, rest)
    elif mode == "table":
        table(rest)
    elif mode == "scheduled":
        scheduled(args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
