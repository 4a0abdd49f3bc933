"""Durable Streams appends through the fast path, through Quart, and the two no-op baselines.

Run:  python -m benchmarks.bench_hot_paths              (3 rounds, 5 s per measurement)
      python -m benchmarks.bench_hot_paths --quick      (1 round, 2 s)

Servers, each in its own process on a free port, started once and measured
in interleaved rounds (every server once per round and concurrency):
  - ``serve, fast path``: ``python -m trio_streams serve`` (memory store);
  - ``serve, Quart path``: the same with ``TRIO_STREAMS_FAST_PATHS=0``
    (what ``serve`` did before: every request through Quart);
  - ``bare ASGI no-op``: ``hypercorn -k trio benchmarks.durable_ceiling:raw_app``;
  - ``Quart-Trio no-op``: ``hypercorn -k trio benchmarks.durable_ceiling:app``;
  - ``bare ASGI no-op, serve's Hypercorn``: the bare no-op under ``serve``'s own Hypercorn
    setup (``python -m benchmarks.durable_ceiling PORT``): one write per response, one
    idle-timer task per connection;
  - with ``--before PATH``: that checkout's ``serve``, fast path.

Load: autocannon (``npx --yes autocannon@7``), ``-c`` connections POSTing
64-byte ``application/octet-stream`` bodies to a fresh ``/v1/stream/<name>``
(created with a PUT just before) for ``--duration`` seconds. Prints medians
(requests/s, latency p50/p99), each path's ratio to the bare-ASGI no-op,
and the server's CPU time per request (user + system of the server
process and its children, from /proc, over each measurement: steadier
than requests/s on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from trio_streams.bench._server import read_all, sample_tree

from .bench_durable_stores import ROOT, autocannon, create, start_server

SERVERS = ("serve, fast path", "serve, Quart path", "bare ASGI no-op", "Quart-Trio no-op")
#: The bare no-op under serve's own Hypercorn setup (cli/_hypercorn.serve_hypercorn: one write
#: per response, one idle-timer task per connection): what the stack costs as serve runs it.
SHIMMED = "bare ASGI no-op, serve's Hypercorn"
BEFORE = "serve, fast path (--before)"
BASELINE = SERVERS[2]


def start_hypercorn(app: str | None) -> tuple[subprocess.Popen[str], str]:
    """``app`` under ``hypercorn -k trio``; ``None``: the bare no-op under serve's Hypercorn setup."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if app is None:
        command = [sys.executable, "-m", "benchmarks.durable_ceiling", str(port)]
    else:
        command = [sys.executable, "-m", "hypercorn", "-k", "trio", "--bind", f"127.0.0.1:{port}", app]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if re.search(r"Running on http://", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, f"http://127.0.0.1:{port}"
    raise RuntimeError(f"hypercorn did not start (exit {proc.wait()})")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants (hypercorn's worker is a child):
    the process tree ``trio-streams bench --server-pid`` sums, read the same way."""
    return sample_tree(read_all(), pid).cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int)
    parser.add_argument(
        "--before", type=Path, help="another checkout (e.g. main): its serve, fast path, in the same rounds"
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (2 if args.quick else 5)
    procs: dict[str, tuple[subprocess.Popen[str], str]] = {}
    try:
        procs[SERVERS[0]] = start_server(ROOT)
        os.environ["TRIO_STREAMS_FAST_PATHS"] = "0"
        procs[SERVERS[1]] = start_server(ROOT)
        del os.environ["TRIO_STREAMS_FAST_PATHS"]
        procs[SERVERS[2]] = start_hypercorn("benchmarks.durable_ceiling:raw_app")
        procs[SERVERS[3]] = start_hypercorn("benchmarks.durable_ceiling:app")
        procs[SHIMMED] = start_hypercorn(None)
        if args.before is not None:
            procs[BEFORE] = start_server(args.before)
        names = list(procs)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for round_ in range(rounds):
            for connections in (10, 75):
                for name in names:
                    url = create(procs[name][1])
                    before = cpu_seconds(procs[name][0].pid)
                    result = autocannon(url, connections, duration)
                    cpu = cpu_seconds(procs[name][0].pid) - before
                    result["cpu_us"] = 1e6 * cpu / (result["rps"] * duration)
                    if result["bad"]:
                        raise RuntimeError(f"{name}: {result['bad']} failed requests")
                    results.setdefault((name, connections), []).append(result)
                    print(
                        f"round {round_ + 1} c={connections} {name}: {result['rps']:,.0f} req/s", flush=True
                    )
                    time.sleep(0.5)
    finally:
        for proc, _url in procs.values():
            proc.terminate()
            proc.wait(10)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds} rounds x {duration} s, medians")
    print(
        "\n| server | c=10 req/s | c=75 req/s | p50 / p99 ms (c=75) | vs bare ASGI no-op (c=10 / c=75) "
        "| server CPU per request, µs (c=10 / c=75) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    median = {key: statistics.median(r["rps"] for r in values) for key, values in results.items()}
    for name in names:
        c75 = results[(name, 75)]
        p50 = statistics.median(r["p50"] for r in c75)
        p99 = statistics.median(r["p99"] for r in c75)
        ratio = " / ".join(f"{median[(name, c)] / median[(BASELINE, c)]:.2f}x" for c in (10, 75))
        rates = f"{median[(name, 10)]:,.0f} | {median[(name, 75)]:,.0f}"
        cpu_us = {c: statistics.median(r["cpu_us"] for r in results[(name, c)]) for c in (10, 75)}
        cpu_text = f"{cpu_us[10]:.0f} / {cpu_us[75]:.0f}"
        print(f"| {name} | {rates} | {p50:.0f} / {p99:.0f} | {ratio} | {cpu_text} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
