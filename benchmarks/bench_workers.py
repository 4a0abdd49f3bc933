"""``serve --workers``: Durable Streams appends at 1 and 2 workers on the same kind of store.

Run:  python -m benchmarks.bench_workers              (3 rounds, 5 s per measurement)
      python -m benchmarks.bench_workers --quick      (1 round, 2 s)

Servers, each in its own process tree on a free port, started once and
measured in interleaved rounds (every server once per round and concurrency):
  - ``1 worker``: ``python -m trio_streams serve --data-dir D1`` (one process
    and the embedded redis-server it starts);
  - ``2 workers``: ``python -m trio_streams serve --workers 2 --data-dir D2``
    (the supervisor, two workers and the embedded redis-server).
Both use an embedded, persistent redis-server (append-only files in a fresh
scratch directory): the same store, so the ratio is the workers' cost alone.

Load: autocannon (``npx --yes autocannon@7``), ``-c`` connections POSTing
64-byte ``application/octet-stream`` bodies to a fresh ``/v1/stream/<name>``
for ``--duration`` seconds, as ``bench_hot_paths`` does. Prints medians of
requests/s and latency, and the server's CPU time per append: user + system
of every process of the server (supervisor, workers, redis-server), from
/proc, over each measurement, and the redis-server's part of it (Redis is
single-threaded: its part bounds what more cores can give). The load tool
runs on the same cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .bench_durable_stores import ROOT, autocannon, create, start_server

if TYPE_CHECKING:
    import subprocess


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of ``pid`` and its descendants: ``redis`` (the
    redis-server, single-threaded: its share bounds the whole server) and ``python``."""
    totals = {"redis": 0.0, "python": 0.0}
    pending = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rpartition(")")[2].split()
            kind = "redis" if "redis-server" in stat.partition("(")[2].partition(")")[0] else "python"
            totals[kind] += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return totals


SERVERS = {"1 worker": (), "2 workers": ("--workers", "2")}


def load(urls: list[str], connections: int, duration: int) -> dict[str, float]:
    """autocannon on one URL with ``connections``, or one ``-c 1`` autocannon per URL at
    once (requests/s summed, failures summed, the median p50 and the worst p99)."""
    if len(urls) == 1:
        return autocannon(urls[0], connections, duration)
    with ThreadPoolExecutor(len(urls)) as pool:
        parts = list(pool.map(lambda url: autocannon(url, 1, duration), urls))
    return {
        "rps": sum(part["rps"] for part in parts),
        "p50": statistics.median(part["p50"] for part in parts),
        "p99": max(part["p99"] for part in parts),
        "bad": sum(part["bad"] for part in parts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int)
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 75])
    parser.add_argument(
        "--stream-per-connection",
        action="store_true",
        help="one autocannon process (-c 1) per connection, each on a stream of its own: a kept-alive "
        "connection stays on one worker, so no stream is appended to by two workers",
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (2 if args.quick else 5)
    procs: dict[str, tuple[subprocess.Popen[str], str]] = {}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
        try:
            for name, flags in SERVERS.items():
                data_dir = Path(scratch) / name.replace(" ", "-")
                procs[name] = start_server(ROOT, *flags, "--data-dir", str(data_dir))
            for round_ in range(rounds):
                for connections in args.connections:
                    for name in SERVERS:
                        proc, base = procs[name]
                        if args.stream_per_connection:
                            urls = [create(base) for _ in range(connections)]
                        else:
                            urls = [create(base)]
                        before = cpu_by_kind(proc.pid)
                        result = load(urls, connections, duration)
                        after = cpu_by_kind(proc.pid)
                        appends = result["rps"] * duration
                        result["cpu_us"] = 1e6 * sum(after[k] - before[k] for k in after) / appends
                        result["redis_us"] = 1e6 * (after["redis"] - before["redis"]) / appends
                        if result["bad"]:
                            raise RuntimeError(f"{name}: {result['bad']} failed requests")
                        results.setdefault((name, connections), []).append(result)
                        print(
                            f"round {round_ + 1} c={connections} {name}: {result['rps']:,.0f} req/s, "
                            f"{result['cpu_us']:.0f} µs CPU per append",
                            flush=True,
                        )
                        time.sleep(0.5)
        finally:
            for proc, _url in procs.values():
                proc.terminate()
                proc.wait(60)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds} rounds x {duration} s, medians")
    print(
        "\n| server | c | req/s | p50 / p99 ms | server CPU per append, µs (all processes) "
        "| of which redis-server | vs 1 worker: req/s, CPU per append |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for connections in args.connections:
        single = results[("1 worker", connections)]
        base_rps = statistics.median(r["rps"] for r in single)
        base_cpu = statistics.median(r["cpu_us"] for r in single)
        for name in SERVERS:
            runs = results[(name, connections)]
            rps = statistics.median(r["rps"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            redis = statistics.median(r["redis_us"] for r in runs)
            print(
                f"| {name} | {connections} | {rps:,.0f} | {p50:.0f} / {p99:.0f} | {cpu:.0f} | {redis:.0f} "
                f"| {rps / base_rps:.2f}x, {cpu / base_cpu:.2f}x |"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
