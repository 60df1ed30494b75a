#!/usr/bin/env python3
"""N concurrent followers of one run's log over server-sent events; checks that every
follower receives every line, once and in order.

usage: sse-followers.py URL TOKEN FOLLOWERS [PROCESSES] [TIMEOUT_SECONDS]

URL is `http://HOST:PORT/…/runs/NAME/log?follow=true`. The followers are spread over
PROCESSES worker processes (default 4), each running asyncio over raw sockets. They
speak HTTP/1.0 so the body is the plain event stream up to the close (no chunked
encoding to undo), and count events in bulk: per read, the number of `id:` fields and
the first and last id (`<attempt>-<line>`). Ids must continue the previous read's and
span exactly as many events as were counted, so any lost or repeated line shows up.
Delivery lag is sampled from the last event of each read: receive time minus the
Docker timestamp at the start of the line.

Prints one JSON object: per-follower counts and errors, and the lag percentiles."""
import asyncio
import datetime
import json
import multiprocessing
import re
import sys
import time
from urllib.parse import urlsplit

ID = re.compile(rb"\nid: (\d+)-(\d+)\n")


def parse_stamp(data: bytes) -> float | None:
    try:
        text = data.split(b" ", 1)[0].decode()
        return datetime.datetime.fromisoformat(text[:26] + "+00:00").timestamp()
    except (ValueError, IndexError):
        return None


async def follow(url: str, token: str, deadline: float) -> dict:
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    result = {"lines": 0, "errors": [], "end": None, "lags": [], "first_at": None, "done_at": None}
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80, limit=1 << 20)
    except OSError as e:
        result["errors"].append(f"connect: {e}")
        return result
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline - time.time())
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError) as e:
        result["errors"].append(f"no response head: {e!r}")
        writer.close()
        return result
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        result["errors"].append(f"status {status.decode(errors='replace')}")
        writer.close()
        return result
    buffer = b"\n"  # so that the first `id:` also follows a newline
    last_line = 0
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            result["errors"].append("timed out before the end event")
            break
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 16), remaining)
        except asyncio.TimeoutError:
            result["errors"].append("timed out before the end event")
            break
        if not chunk:
            result["errors"].append("connection closed before the end event")
            break
        now = time.time()
        if result["first_at"] is None:
            result["first_at"] = now
        buffer += chunk
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            continue
        block, buffer = buffer[: cut + 2], buffer[cut + 1 :]  # keep one "\n" as a separator
        count = block.count(b"\nid: ")
        if count:
            first = ID.search(block)
            last = ID.search(block, block.rfind(b"\nid: "))
            first_line, last_line_here = int(first.group(2)), int(last.group(2))
            if first_line != last_line + 1:
                result["errors"].append(f"after line {last_line} came {first_line}")
            if last_line_here - first_line + 1 != count:
                result["errors"].append(
                    f"{count} events carried ids {first_line}..{last_line_here}"
                )
            last_line = last_line_here
            result["lines"] += count
            data = block.rfind(b"\ndata: ")
            if data >= 0:
                stamp = parse_stamp(block[data + 7 : data + 60])
                if stamp is not None:
                    result["lags"].append(now - stamp)
        end = block.find(b"event: end\n")
        if end >= 0:
            line_end = block.find(b"\n", block.find(b"data: ", end))
            result["end"] = block[block.find(b"data: ", end) + 6 : line_end].decode()
            result["done_at"] = now
            break
    writer.close()
    return result


def worker(args) -> list:
    url, token, count, deadline = args

    async def main():
        return await asyncio.gather(*(follow(url, token, deadline) for _ in range(count)))

    return asyncio.run(main())


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))]


if __name__ == "__main__":
    url, token, followers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
    started = time.time()
    deadline = started + timeout
    shares = [followers // processes + (1 if i < followers % processes else 0) for i in range(processes)]
    with multiprocessing.Pool(processes) as pool:
        results = [r for part in pool.map(worker, [(url, token, n, deadline) for n in shares if n]) for r in part]
    lags = [lag for r in results for lag in r["lags"]]
    counts = [r["lines"] for r in results]
    print(
        json.dumps(
            {
                "followers": len(results),
                "lines_min": min(counts),
                "lines_max": max(counts),
                "counts": counts,
                "with_errors": sum(1 for r in results if r["errors"]),
                "errors": [e for r in results for e in r["errors"]][:20],
                "ended": sum(1 for r in results if r["end"] is not None),
                "end": next((r["end"] for r in results if r["end"]), None),
                "lag_p50_s": percentile(lags, 50),
                "lag_p99_s": percentile(lags, 99),
                "lag_max_s": max(lags) if lags else None,
                "first_event_s": min((r["first_at"] for r in results if r["first_at"]), default=started) - started,
                "last_end_s": max((r["done_at"] for r in results if r["done_at"]), default=time.time()) - started,
            }
        )
    )
