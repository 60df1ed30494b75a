#!/usr/bin/env python3
"""Samples a process's CPU time and memory from /proc until it exits (or is killed).

usage: proc-sampler.py PID OUT [INTERVAL_SECONDS]

Writes one line per sample to OUT, flushed at once:
    <unix time, s> <utime+stime, s> <VmRSS kB> <VmHWM kB>
Used by the benchmarks to compute CPU % of one core over any window
(Δ cpu seconds / Δ wall seconds) and the memory along the way."""
import os
import sys
import time

pid, out_path = int(sys.argv[1]), sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
ticks = os.sysconf("SC_CLK_TCK")


def sample():
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces; the fields after ')' are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss, hwm


with open(out_path, "w") as out:
    next_at = time.time()
    while True:
        try:
            cpu, rss, hwm = sample()
        except (FileNotFoundError, ProcessLookupError):
            break
        out.write(f"{time.time():.3f} {cpu:.2f} {rss} {hwm}\n")
        out.flush()
        next_at += interval
        time.sleep(max(0.0, next_at - time.time()))
