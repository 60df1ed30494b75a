#!/usr/bin/env python3
"""Runs a command and prints the seconds from start to its first output line (stdout or
stderr), then lets it finish. Used by the run benchmarks for both sides of a comparison."""
import subprocess
import sys
import time

start = time.monotonic()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
first = None
for line in process.stdout:
    if first is None and line.strip() and not line.startswith(b"run/"):
        first = time.monotonic() - start
process.wait()
if first is None:
    sys.exit(f"no output from {sys.argv[1:]}")
print(f"{first:.4f}")
