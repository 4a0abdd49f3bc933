"""What the /metrics instrumentation costs on the hottest path: an append, before and after.

Run:  python -m benchmarks.bench_metrics_cost --before /path/to/checkout/without/it

Two ``python -m trio_streams serve`` processes (memory store, the fast
paths), one from ``--before`` (a checkout without the histograms), one from
this tree, measured in interleaved rounds: autocannon (``npx --yes
autocannon@7``) POSTing 64-byte ``application/octet-stream`` bodies to a
fresh ``/v1/stream/<name>`` with ``-c`` connections. Prints medians of
requests/s and of the server's CPU time per request (user + system, from
/proc: steadier than requests/s on a shared machine), the ratio after /
before, and the median time of one ``GET /metrics`` on each.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from pathlib import Path

from .bench_durable_stores import ROOT, autocannon, create, start_server
from .bench_hot_paths import cpu_seconds


def scrape_ms(base: str, samples: int = 20) -> float:
    """The median wall time of one ``GET /metrics``, in milliseconds."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        assert response.status == 200
    conn.close()
    return 1e3 * statistics.median(times)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout without the instrumentation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the other checkout as it is
    servers = {"before": start_server(args.before.resolve()), "after": start_server(ROOT)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    scrapes: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                proc, base = servers[name]
                url = create(base)
                before = cpu_seconds(proc.pid)
                result = autocannon(url, args.connections, args.duration)
                result["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - before) / (result["rps"] * args.duration)
                if result["bad"]:
                    raise RuntimeError(f"{name}: {result['bad']} failed requests")
                results[name].append(result)
                scrapes[name].append(scrape_ms(base))
                rate, cpu_us = result["rps"], result["cpu_us"]
                print(f"round {round_ + 1} {name}: {rate:,.0f} req/s, {cpu_us:.0f} µs CPU/req", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    rps = {name: statistics.median(r["rps"] for r in values) for name, values in results.items()}
    cpu = {name: statistics.median(r["cpu_us"] for r in values) for name, values in results.items()}
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds x {args.duration} s")
    print(f"c={args.connections}, medians\n")
    print("| server | req/s | server CPU per request, µs | GET /metrics, ms |")
    print("|---|---:|---:|---:|")
    for name in servers:
        print(f"| {name} | {rps[name]:,.0f} | {cpu[name]:.0f} | {statistics.median(scrapes[name]):.2f} |")
    print(f"| after / before | {rps['after'] / rps['before']:.2f}x | {cpu['after'] / cpu['before']:.2f}x | |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
