#!/usr/bin/env python3
"""Runs a command and prints the seconds from start to its first output line (stdout or
stderr), then lets it finish. Used by the run benchmarks for both sides of a comparison.

usage: first-line.py [--expect TEXT] [--start-file PATH] COMMAND [ARG]...

With --expect, the first line (other than Flotilla's own `run/… created` notes) must be
TEXT or begin with TEXT and a space, and the command must exit 0: an error message printed quickly must not pass for a
fast start. With --start-file, the wall-clock start (seconds since the epoch) and the
`run/NAME` Flotilla printed are written to PATH, so the caller can compare the start with
the timestamp Docker gave the line (where the time goes: producing vs delivering it)."""
import subprocess
import sys
import time

args = sys.argv[1:]
expect = None
start_file = None
while args[:1] in (["--expect"], ["--start-file"]):
    if args[0] == "--expect":
        expect = args[1].encode()
    else:
        start_file = args[1]
    args = args[2:]

wall_start = time.time()
start = time.monotonic()
process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
first = None
first_line = b""
run_name = "-"
for line in process.stdout:
    if line.startswith(b"run/") and run_name == "-":
        run_name = line.split()[0].decode()[len("run/"):]
    if first is None and line.strip() and not line.startswith(b"run/"):
        first = time.monotonic() - start
        first_line = line.strip()
code = process.wait()
if first is None:
    sys.exit(f"no output from {args}")
if expect is not None and (first_line.split(b" ")[0] != expect or code != 0):
    sys.exit(f"{args}: first line {first_line!r}, exit {code}; expected {expect!r} and 0")
if start_file:
    with open(start_file, "w") as out:
        out.write(f"{wall_start:.6f} {run_name}\n")
print(f"{first:.4f}")
