"""Live runs followed over SSE: one process vs ``serve --workers 2``, on the same store.

Run:  python -m benchmarks.bench_workers_live                      (2 rounds; 50 runs x 200 and x 50 ev/s)
      python -m benchmarks.bench_workers_live --rounds 3 --load 50x200
      python -m benchmarks.bench_workers_live --rounds 3 --load 50x200 --bench-workers 2 \
          --gc off 20000,20,10 --gc-profile         (the collector: untuned vs tuned, 2 workers)

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
cores (``--bench-workers N``: in N processes, so that one load-generator
process is not the bound); the load average is printed with every figure.

``--gc T1 T2 ...``: instead of the servers above, ``serve --workers 2`` once
per ``--gc-threshold`` value (``off``: the collector as Python sets it).
``--gc-profile``: every server process records each garbage collection's
generation and duration (``benchmarks/gc_probe/sitecustomize.py``); the
collections that ended inside a measurement are tabulated per server and
generation (count, p50 / p99 / max, time in pauses, a histogram).
``--mux-profile``: every server process records its runs writer's flushes
(queue wait, duration) and its shared read of followed runs (streams per
reply, each event's age on arrival): ``benchmarks/mux_probe/sitecustomize.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bench_durable_stores import ROOT
from .bench_durable_stores import start_server as start_durable_server

GC_PROBE = Path(__file__).resolve().parent / "gc_probe"
GC_DIR_ENV = "TRIO_STREAMS_BENCH_GC_DIR"
MUX_PROBE = Path(__file__).resolve().parent / "mux_probe"
MUX_DIR_ENV = "TRIO_STREAMS_BENCH_MUX_DIR"
BUCKETS_MS = (1.0, 5.0, 10.0, 20.0, 50.0, 100.0)

SERVERS: dict[str, tuple[str, ...]] = {
    "1 process": ("--data-dir", "{dir}"),
    "2 workers": ("--workers", "2", "--data-dir", "{dir}"),
}
MEMORY: dict[str, tuple[str, ...]] = {"1 process, memory": ("--store", "memory")}


def start_server(
    repo: Path, *extra: str, gc_dir: Path | None = None, mux_dir: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``serve`` from ``repo`` on a free port (its output drained); with ``gc_dir``,
    GC-probed; with ``mux_dir``, its flushes and shared reads probed (one probe at most)."""
    probe = (GC_PROBE, GC_DIR_ENV, gc_dir) if gc_dir is not None else (MUX_PROBE, MUX_DIR_ENV, mux_dir)
    path, variable, directory = probe
    if directory is None:
        return start_durable_server(repo, *extra)
    directory.mkdir(parents=True)
    env = {"PYTHONPATH": f"{path}{os.pathsep}{repo}", variable: str(directory)}
    return start_durable_server(repo, *extra, env=env)


def mux_stages(mux_dir: Path, windows: list[tuple[float, float]]) -> dict[str, list[float]]:
    """Per metric of ``benchmarks/mux_probe``, the values recorded inside ``windows`` (all processes)."""
    stages: dict[str, list[float]] = {}
    for path in mux_dir.glob("*.json"):
        doc = json.loads(path.read_text())
        for name in ("queue_ms", "flush_ms", "mirror_ms", "streams_per_reply"):
            times, values = doc[name]
            inside = [v for t, v in zip(times, values, strict=True) if any(a <= t <= b for a, b in windows)]
            stages.setdefault(name, []).extend(inside)
    return stages


def print_mux_table(rows: dict[str, dict[str, list[float]]]) -> None:
    """Each server's stages: p50 / p90 / p99 (streams per reply: also the mean and the replies)."""
    labels = {
        "queue_ms": "owner: an event's wait for its flush, ms",
        "flush_ms": "owner: one flush, ms",
        "mirror_ms": "other worker: published -> the shared read delivers it, ms",
        "streams_per_reply": "other worker: streams per reply of the shared read",
    }
    print("\nStages (benchmarks/mux_probe), p50 / p90 / p99, all rounds and server processes")
    print("\n| stage | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name, label in labels.items():
        cells = []
        for stages in rows.values():
            values = sorted(stages.get(name, []))
            if not values:
                cells.append("-")
                continue
            p90, p99 = (values[min(len(values) - 1, int(q * len(values)))] for q in (0.9, 0.99))
            cell = f"{statistics.median(values):.2f} / {p90:.2f} / {p99:.2f}"
            if name == "streams_per_reply":
                cell += f" (mean {statistics.fmean(values):.2f}, {len(values):,} replies)"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")


def gc_pauses(gc_dir: Path, windows: list[tuple[float, float]]) -> dict[int, list[float]]:
    """Per generation, the durations (ms) of the collections of ``gc_dir``'s processes inside ``windows``."""
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for path in gc_dir.glob("*.json"):
        for end, generation, seconds in json.loads(path.read_text())["collections"]:
            if any(start <= end <= stop for start, stop in windows):
                pauses[generation].append(1000 * seconds)
    return pauses


def print_gc_table(rows: dict[str, dict[int, list[float]]], rounds: int) -> None:
    """The GC pauses of each server: per generation, over all its measurements."""
    labels = [f"< {BUCKETS_MS[0]:g}"] + [f"{a:g}-{b:g}" for a, b in itertools.pairwise(BUCKETS_MS)]
    labels.append(f">= {BUCKETS_MS[-1]:g}")
    print(f"\nGC pauses inside the measurements ({rounds} rounds, all server processes)")
    print(
        "\n| server | gen | collections per round | p50 / p99 / max ms | pause s per round | "
        + " | ".join(f"{label} ms" for label in labels)
        + " |"
    )
    print("|---|---:|---:|---:|---:|" + "---:|" * len(labels))
    for name, pauses in rows.items():
        for generation, durations in pauses.items():
            if not durations:
                print(f"| {name} | {generation} | 0 | - | 0 |" + " 0 |" * len(labels))
                continue
            ordered = sorted(durations)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            counts = [0] * len(labels)
            for ms in durations:
                counts[sum(ms >= edge for edge in BUCKETS_MS)] += 1
            print(
                f"| {name} | {generation} | {len(durations) / rounds:,.0f} "
                f"| {statistics.median(ordered):.2f} / {p99:.2f} / {ordered[-1]:.1f} "
                f"| {sum(durations) / 1000 / rounds:.3f} | " + " | ".join(map(str, counts)) + " |"
            )


def bench(
    url: str, pid: int, runs: int, rate: float, seconds: float, bench_workers: int = 1
) -> dict[str, float]:
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
                "--workers",
                str(bench_workers),
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
        "max": 1000 * latency["max"],
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
    parser.add_argument(
        "--bench-workers", type=int, default=1, metavar="N", help="load-generator processes (default 1)"
    )
    parser.add_argument(
        "--gc",
        nargs="+",
        metavar="THRESHOLD",
        help="serve --workers 2 once per --gc-threshold value (off: untuned) instead of the default servers",
    )
    parser.add_argument(
        "--gc-profile", action="store_true", help="record every server process's GC pauses (see above)"
    )
    parser.add_argument(
        "--mux-profile",
        action="store_true",
        help="record the flushes and the shared reads (benchmarks/mux_probe; not with --gc-profile)",
    )
    args = parser.parse_args()
    if args.gc_profile and args.mux_profile:
        parser.error("--gc-profile and --mux-profile each load a sitecustomize: one at a time")
    loads = [tuple(map(float, spec.split("x"))) for spec in args.load]
    chosen = {**SERVERS, **(MEMORY if args.memory else {})}
    if args.gc:
        chosen = {
            f"2 workers, gc {value}": (*SERVERS["2 workers"], "--gc-threshold", value) for value in args.gc
        }
    servers = {name: (ROOT, flags) for name, flags in chosen.items()}
    if args.before is not None:
        servers["2 workers, before"] = (args.before.resolve(), SERVERS["2 workers"])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    procs = {}
    windows: dict[str, list[tuple[float, float]]] = {}
    gc_rows: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-live-") as scratch:

        def slug(name: str) -> str:
            return name.replace(" ", "-").replace(",", "")

        try:
            for name, (repo, flags) in servers.items():
                data_dir = str(Path(scratch) / slug(name))
                gc_dir = Path(scratch) / f"gc-{slug(name)}" if args.gc_profile else None
                mux_dir = Path(scratch) / f"mux-{slug(name)}" if args.mux_profile else None
                procs[name] = start_server(
                    repo, *(flag.format(dir=data_dir) for flag in flags), gc_dir=gc_dir, mux_dir=mux_dir
                )
            for round_ in range(args.rounds):
                for spec, (runs, rate) in zip(args.load, loads, strict=True):
                    for name in servers:
                        proc, url = procs[name]
                        uptime = Path("/proc/loadavg").read_text().split()[:3]
                        started = time.time()
                        result = bench(url, proc.pid, int(runs), rate, args.seconds, args.bench_workers)
                        windows.setdefault(name, []).append((started, time.time()))
                        results.setdefault((name, spec), []).append(result)
                        print(
                            f"round {round_ + 1} {spec} {name}: {result['achieved']:,.0f}/s "
                            f"({result['fraction']:.0%}), p50 {result['p50']:.1f} ms, "
                            f"p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms, "
                            f"CPU {result['cpu']:.1f} s, load before {' '.join(uptime)}, "
                            f"after {result['load']:.1f}",
                            flush=True,
                        )
                        time.sleep(1.0)
        finally:
            for proc, _url in procs.values():
                proc.terminate()
                proc.wait(60)
        if args.gc_profile:
            for name in servers:
                gc_rows[name] = gc_pauses(Path(scratch) / f"gc-{slug(name)}", windows.get(name, []))
        mux_rows = {
            name: mux_stages(Path(scratch) / f"mux-{slug(name)}", windows.get(name, []))
            for name in (servers if args.mux_profile else ())
        }
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds, medians")
    print(
        "\n| load (runs x events/s) | server | achieved | latency p50 / p99 ms (rounds' p99) "
        "| max ms | p99 from the schedule | server CPU s per 10k events | load average |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for spec in args.load:
        for name in servers:
            runs_ = results[(name, spec)]
            med = {key: statistics.median(r[key] for r in runs_) for key in runs_[0]}
            p99s = ", ".join(f"{r['p99']:.0f}" for r in runs_)
            per = statistics.median(1e4 * r["cpu"] / r["events"] for r in runs_)
            loads_seen = ", ".join(f"{r['load']:.1f}" for r in runs_)
            print(
                f"| {spec} | {name} | {med['achieved']:,.0f}/s ({med['fraction']:.0%}) "
                f"| {med['p50']:.1f} / {med['p99']:.1f} ({p99s}) | {med['max']:.1f} "
                f"| {med['sched_p99']:.1f} ms "
                f"| {per:.2f} | {loads_seen} |"
            )

    if gc_rows:
        print_gc_table(gc_rows, args.rounds)
    if mux_rows:
        print_mux_table(mux_rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
