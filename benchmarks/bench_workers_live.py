"""Live runs followed over SSE: one process vs ``serve --workers 2``, on the same store.

Run:  python -m benchmarks.bench_workers_live                      (2 rounds; 50 runs x 200 and x 50 ev/s)
      python -m benchmarks.bench_workers_live --rounds 3 --load 50x200

Servers, each in its own process tree on a free port, started once and
measured in interleaved rounds (every server once per round and load):
  - ``1 process``: ``python -m trio_streams serve --data-dir D1`` (one process
    and the embedded redis-server it starts);
  - ``2 workers``: ``python -m trio_streams serve --workers 2 --data-dir D2``
    (the supervisor, two workers and the embedded redis-server): a subscriber
    that lands on the worker not running its run reads it through a mirror
    (``runs/_remote.py``: the run's Redis stream, followed);
  - with ``--memory`` also ``1 process, memory`` (no Redis at all).

Load: ``python -m trio_streams bench URL --runs R --tokens T --rate X
--server-pid PID`` (the demo producer, one SSE subscriber per run, latency
from the event's timestamp and from its scheduled time; server CPU of every
process of the tree). ``--load RxX`` is R runs at X events/s each, for
``--seconds`` (tokens = X * seconds). The load generator runs on the same
cores; the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bench_durable_stores import ROOT, start_server

SERVERS: dict[str, tuple[str, ...]] = {
    "1 process": ("--data-dir", "{dir}"),
    "2 workers": ("--workers", "2", "--data-dir", "{dir}"),
}
MEMORY: dict[str, tuple[str, ...]] = {"1 process, memory": ("--store", "memory")}


def bench(url: str, pid: int, runs: int, rate: float, seconds: float) -> dict[str, float]:
    """One ``trio-streams bench`` of ``runs`` runs at ``rate`` events/s each; its figures."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_streams",
                "bench",
                url,
                "--runs",
                str(runs),
                "--tokens",
                str(int(rate * seconds)),
                "--rate",
                str(rate),
                "--server-pid",
                str(pid),
                "--json",
                out.name,
                "--quiet",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if done.returncode not in (0, 3):  # 3: behind its schedule (reported, not an error)
            raise RuntimeError(f"trio-streams bench failed ({done.returncode}): {done.stdout}{done.stderr}")
        result = json.loads(Path(out.name).read_text())
    if any(result["violations"].values()):
        raise RuntimeError(f"stream violations: {result['violations']}")
    latency, scheduled = result["latency_seconds"], result["latency_from_schedule_seconds"]
    return {
        "achieved": result["pace"]["achieved_events_per_second"],
        "fraction": result["pace"]["achieved_fraction"],
        "p50": 1000 * latency["p50"],
        "p99": 1000 * latency["p99"],
        "sched_p99": 1000 * scheduled["p99"],
        "cpu": result["server"]["cpu_seconds"],
        "events": result["events"],
        "load": os.getloadavg()[0],
        "behind": float(done.returncode == 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="each run's length (default 10)")
    parser.add_argument(
        "--load", nargs="+", default=["50x200", "50x50"], help="RUNSxRATE, e.g. 50x200 (default 50x200 50x50)"
    )
    parser.add_argument("--memory", action="store_true", help="also one process on the memory store")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also DIR's checkout with --workers 2, in the same rounds"
    )
    args = parser.parse_args()
    loads = [tuple(map(float, spec.split("x"))) for spec in args.load]
    servers = {name: (ROOT, flags) for name, flags in {**SERVERS, **(MEMORY if args.memory else {})}.items()}
    if args.before is not None:
        servers["2 workers, before"] = (args.before.resolve(), SERVERS["2 workers"])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    procs = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-live-") as scratch:
        try:
            for name, (repo, flags) in servers.items():
                data_dir = str(Path(scratch) / name.replace(" ", "-").replace(",", ""))
                procs[name] = start_server(repo, *(flag.format(dir=data_dir) for flag in flags))
            for round_ in range(args.rounds):
                for spec, (runs, rate) in zip(args.load, loads, strict=True):
                    for name in servers:
                        proc, url = procs[name]
                        result = bench(url, proc.pid, int(runs), rate, args.seconds)
                        results.setdefault((name, spec), []).append(result)
                        print(
                            f"round {round_ + 1} {spec} {name}: {result['achieved']:,.0f}/s "
                            f"({result['fraction']:.0%}), p50 {result['p50']:.1f} ms, "
                            f"p99 {result['p99']:.1f} ms, "
                            f"CPU {result['cpu']:.1f} s, load {result['load']:.1f}",
                            flush=True,
                        )
                        time.sleep(1.0)
        finally:
            for proc, _url in procs.values():
                proc.terminate()
                proc.wait(60)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds, medians")
    print(
        "\n| load (runs x events/s) | server | achieved | latency p50 / p99 ms (rounds' p99) "
        "| p99 from the schedule | server CPU s per 10k events | load average |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in args.load:
        for name in servers:
            runs_ = results[(name, spec)]
            med = {key: statistics.median(r[key] for r in runs_) for key in runs_[0]}
            p99s = ", ".join(f"{r['p99']:.0f}" for r in runs_)
            per = statistics.median(1e4 * r["cpu"] / r["events"] for r in runs_)
            loads_seen = ", ".join(f"{r['load']:.1f}" for r in runs_)
            print(
                f"| {spec} | {name} | {med['achieved']:,.0f}/s ({med['fraction']:.0%}) "
                f"| {med['p50']:.1f} / {med['p99']:.1f} ({p99s}) | {med['sched_p99']:.1f} ms "
                f"| {per:.2f} | {loads_seen} |"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
