"""Appends over HTTP with 1,000 glob subscriptions against none (issue 16: target >= 0.9x).

Run:  python -m benchmarks.bench_subscriptions_http            (5 interleaved rounds, 5 s each)
      python -m benchmarks.bench_subscriptions_http --quick    (2 rounds, 2 s)

Four ``trio-streams serve`` processes (memory store), started once, measured
in turn every round by bench_durable's load generator (its own process,
raw HTTP/1.1 on kept-alive connections, ``--concurrency`` connections each
appending ``--size``-byte messages to its own one-segment stream):

- ``bare``: ``serve`` without ``--subscriptions``;
- ``none``: ``serve --subscriptions``, no subscription;
- ``1000 globs, no match``: 990 ``tenant<i>/*`` and 10 ``*/x<i>`` pull-wake
  subscriptions (none matches the generator's streams);
- ``1000 globs, 1 match``: 999 of those and ``*``, which matches every
  stream (its wake goes out with the first append and stays in flight,
  unclaimed, as with a busy worker).

Besides appends/s (wall clock: on a loaded machine, mostly how much of the
2 cores the server got), the server's CPU time per append is reported
(``/proc/<pid>/stat`` around each measurement, over every append the
streams hold): what matching costs, whatever the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request
from typing import TYPE_CHECKING, Any

from benchmarks.bench_durable import ROOT, Server, free_port
from trio_streams.bench._server import read_all, sample_tree

if TYPE_CHECKING:
    from collections.abc import Callable

CASES: list[tuple[str, bool, Callable[[int], str] | None]] = [
    ("bare", False, None),
    ("none", True, None),
    ("1000 globs, no match", True, lambda i: f"*/x{i}" if i % 100 == 99 else f"tenant{i}/*"),
    (
        "1000 globs, 1 match",
        True,
        lambda i: "*" if i == 0 else f"*/x{i}" if i % 100 == 99 else f"tenant{i}/*",
    ),
]


def _call(method: str, url: str, document: object = None) -> int:
    body = None if document is None else json.dumps(document).encode()
    call = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(call, timeout=30) as answer:
        return int(answer.status)


def start(subscriptions: bool, pattern: Callable[[int], str] | None) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "trio_streams", "serve", f"--bind=127.0.0.1:{port}"]
    command += ["--log-level=warning", *(["--subscriptions"] if subscriptions else [])]
    server = Server("trio-streams", command, port)
    base = f"http://127.0.0.1:{port}/v1/stream"
    if pattern is not None:
        _call("PUT", f"{base}/wake/pool")
        for i in range(1000):
            config = {"type": "pull-wake", "pattern": pattern(i), "wake_stream": "wake/pool"}
            _call("PUT", f"{base}/__ds/subscriptions/s{i}", config)
    return server


def cpu_seconds(pid: int) -> float:
    return sample_tree(read_all(), pid).cpu_seconds


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench_durable", "--generate=append", f"--port={server.port}"]
    command += [f"--seconds={args.seconds}", f"--concurrency={args.concurrency}", f"--size={args.size}"]
    before = cpu_seconds(server.process.pid)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, check=True, timeout=args.seconds * 4 + 60)
    cpu = cpu_seconds(server.process.pid) - before
    document: dict[str, Any] = json.loads(result.stdout)
    if document["errors"]:
        raise RuntimeError(f"{document['errors']} failed appends")
    load = os.getloadavg()[0]
    return {"appends_per_second": document["appends_per_second"], "cpu": cpu, "load": load}


def total_appends(server: Server, before: int) -> int:
    """How many appends the server took since ``before`` (its appends counter)."""
    return appends_counter(server) - before


def appends_counter(server: Server) -> int:
    """The server's count of Durable Streams appends (from /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("trio_streams_durable_append_duration_seconds_count"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, 2.0
    servers = {name: start(subscriptions, pattern) for name, subscriptions, pattern in CASES}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu_per_append: dict[str, list[float]] = {name: [] for name in servers}
    loads: list[float] = []
    try:
        for _ in range(args.rounds):
            for name, server in servers.items():
                # The CPU is over every append of the run (warm-up included: the
                # generator's own count is of the measured window only).
                counted = appends_counter(server)
                result = measure(server, args)
                appends = total_appends(server, counted)
                rates[name].append(result["appends_per_second"])
                cpu_per_append[name].append(result["cpu"] / appends * 1e6)
                loads.append(result["load"])
    finally:
        for server in servers.values():
            server.stop()
    bare_rate = statistics.median(rates["bare"])
    none_rate = statistics.median(rates["none"])
    none_cpu = statistics.median(cpu_per_append["none"])
    print(
        f"{args.rounds} interleaved rounds of {args.seconds:g} s, {args.concurrency} connections, "
        f"{args.size}-byte appends; load average (1 min) {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        "| case | appends/s (median) | vs none | server CPU µs/append (median) | vs none | vs bare (rate) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in servers:
        rate = statistics.median(rates[name])
        cpu = statistics.median(cpu_per_append[name])
        print(
            f"| {name} | {rate:,.0f} | {rate / none_rate:.2f}x | {cpu:.0f} | {none_cpu / cpu:.2f}x |"
            f" {rate / bare_rate:.2f}x |"
        )


if __name__ == "__main__":
    main()
