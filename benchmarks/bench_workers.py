"""``serve --workers``: Durable Streams appends at 1 and 2 workers on the same kind of store.

Run:  python -m benchmarks.bench_workers              (3 rounds, 5 s per measurement)
      python -m benchmarks.bench_workers --quick      (1 round, 2 s)
      python -m benchmarks.bench_workers --before DIR (also DIR's checkout, both ways, same rounds)
      python -m benchmarks.bench_workers --half       (also 1 worker at half the connections)

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
runs on the same cores. Also per measurement: the commit-script calls
(``EVALSHA``, from ``INFO commandstats``) and meta loads (``HGETALL``) per
append -- one commit per batch, so their inverse is the batch size -- and the
busiest worker's share of the workers' CPU (how the kernel spread the
kept-alive connections: 0.5 is even, 1.0 all on one worker). A 2-worker
measurement whose busiest worker did more than 0.7 of it (the kernel put
nearly every connection on one worker, which then costs what one process
costs) is taken again, up to ``--split-retries`` times (default 3), so that
the medians are of split rounds. ``--half`` also loads each 1 worker with
half the connections -- what each of 2 workers sees -- which tells what a
worker pays for half the concurrency (smaller group commits, fewer requests
per wake) from what two processes on the cores cost.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .bench_durable_stores import ROOT, autocannon, create, start_server


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


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def redis_port(pid: int) -> int:
    """The port of the embedded redis-server below ``pid``."""
    for current in descendants(pid):
        try:
            if "redis-server" in Path(f"/proc/{current}/comm").read_text():
                command = Path(f"/proc/{current}/cmdline").read_text().replace("\0", " ")
                found = re.search(r":(\d+)", command)
                if found:
                    return int(found.group(1))
        except FileNotFoundError:
            continue
    raise RuntimeError("no embedded redis-server found")


def command_calls(port: int) -> dict[str, int]:
    """Redis's count of calls per command so far (``INFO commandstats``)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True, check=True
    ).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", out)}


def worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each Python process below the supervisor ``pid`` (the workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for current in descendants(pid)[1:]:
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except FileNotFoundError:
            continue
        if "redis-server" not in stat.partition("(")[2].partition(")")[0]:
            fields = stat.rpartition(")")[2].split()
            found[current] = (int(fields[11]) + int(fields[12])) / tick
    return found


SERVERS: dict[str, tuple[str, ...]] = {"1 worker": (), "2 workers": ("--workers", "2")}


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


#: A 2-worker measurement whose busiest worker did more than this share of the
#: workers' CPU did not split the connections (see ``--split-retries``).
SPLIT = 0.7


def measure(pid: int, base: str, connections: int, duration: int, per_connection: bool) -> dict[str, float]:
    """One load of ``connections`` on the server ``pid`` (at ``base``) and its costs per append."""
    urls = [create(base) for _ in range(connections)] if per_connection else [create(base)]
    port = redis_port(pid)
    before, calls, workers = cpu_by_kind(pid), command_calls(port), worker_cpu(pid)
    result = load(urls, connections, duration)
    after, calls_after, workers_after = cpu_by_kind(pid), command_calls(port), worker_cpu(pid)
    appends = result["rps"] * duration
    result["cpu_us"] = 1e6 * sum(after[k] - before[k] for k in after) / appends
    result["redis_us"] = 1e6 * (after["redis"] - before["redis"]) / appends
    for command in ("evalsha", "hgetall"):
        result[command] = (calls_after.get(command, 0) - calls.get(command, 0)) / appends
    spent = [workers_after[w] - workers.get(w, 0.0) for w in workers_after]
    total = sum(spent)
    result["busiest"] = max(spent) / total if len(spent) > 1 and total > 0 else 1.0
    return result


def measurements(
    servers: dict[str, tuple[Path, tuple[str, ...]]], connections: int, *, half: bool
) -> list[tuple[str, str, int]]:
    """What one round measures at ``connections``: (server, label, connections), every
    server at ``connections`` and, with ``half``, each 1 worker again at half of them."""
    found = []
    for name in servers:
        found.append((name, name, connections))
        if half and name.startswith("1 worker"):
            found.append((name, f"{name} at c/2", max(connections // 2, 1)))
    return found


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
    parser.add_argument(
        "--split-retries",
        type=int,
        default=3,
        metavar="N",
        help=f"measure a 2-worker server again (up to N times) when its busiest worker did more than "
        f"{SPLIT} of the workers' CPU: the kernel put (nearly) every connection on one worker, which "
        "then costs what one process costs (0: keep every measurement)",
    )
    parser.add_argument(
        "--half",
        action="store_true",
        help="also load each 1 worker with half the connections (what each of 2 workers gets): "
        "what a worker pays for seeing half the concurrency, apart from what two processes cost",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="another checkout (e.g. `git archive <commit>` unpacked): its 1 and 2 workers are served "
        "too, in the same interleaved rounds, each compared with its own 1 worker",
    )
    args = parser.parse_args()
    servers = {name: (ROOT, flags) for name, flags in SERVERS.items()}
    if args.before is not None:
        servers |= {f"{name}, before": (args.before.resolve(), flags) for name, flags in SERVERS.items()}
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (2 if args.quick else 5)
    procs: dict[str, tuple[subprocess.Popen[str], str]] = {}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
        try:
            for name, (repo, flags) in servers.items():
                data_dir = Path(scratch) / name.replace(" ", "-").replace(",", "")
                procs[name] = start_server(repo, *flags, "--data-dir", str(data_dir))
            for round_ in range(rounds):
                for connections in args.connections:
                    for name, label, conns in measurements(servers, connections, half=args.half):
                        proc, base = procs[name]
                        retries = args.split_retries if name.startswith("2 workers") else 0
                        for attempt in range(retries + 1):
                            result = measure(proc.pid, base, conns, duration, args.stream_per_connection)
                            if result["busiest"] <= SPLIT or attempt == retries:
                                break
                            print(
                                f"  {name}: busiest worker {result['busiest']:.2f}, measured again",
                                flush=True,
                            )
                        if result["bad"]:
                            raise RuntimeError(f"{name}: {result['bad']} failed requests")
                        results.setdefault((label, connections), []).append(result)
                        print(
                            f"round {round_ + 1} c={conns} {label}: {result['rps']:,.0f} req/s, "
                            f"{result['cpu_us']:.0f} µs CPU per append, {result['evalsha']:.2f} commits "
                            f"and {result['hgetall']:.2f} loads per append, "
                            f"busiest worker {result['busiest']:.2f}",
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
        "| of which redis-server | commits / loads per append | busiest worker's CPU share "
        "| vs 1 worker: req/s, CPU per append |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for connections in args.connections:
        for name, label, conns in measurements(servers, connections, half=args.half):
            # Each server against the 1 worker of its own checkout (this one, or --before's).
            single = results[(name.replace("2 workers", "1 worker"), connections)]
            base_rps = statistics.median(r["rps"] for r in single)
            base_cpu = statistics.median(r["cpu_us"] for r in single)
            runs = results[(label, connections)]
            rps = statistics.median(r["rps"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            redis = statistics.median(r["redis_us"] for r in runs)
            commits = statistics.median(r["evalsha"] for r in runs)
            loads = statistics.median(r["hgetall"] for r in runs)
            busiest = ", ".join(f"{r['busiest']:.2f}" for r in runs)
            ratios = ", ".join(f"{r['cpu_us'] / s['cpu_us']:.2f}x" for r, s in zip(runs, single, strict=True))
            print(
                f"| {label} | {conns} | {rps:,.0f} | {p50:.0f} / {p99:.0f} | {cpu:.0f} | {redis:.0f} "
                f"| {commits:.2f} / {loads:.2f} | {busiest} | {rps / base_rps:.2f}x, {cpu / base_cpu:.2f}x "
                f"(rounds {ratios}) |"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
