"""One owner's flush of R runs -> another instance's shared read of them: how long, how many replies.

Run:  python -m benchmarks.bench_mirror_wake --rounds 3 --before DIR

Each round runs, for this checkout and (``--before``) DIR's, one child
process on one fresh redis-server: two ``RedisStore`` s on one prefix, ``b``
following R runs (``store.follow``, so ``b``'s shared read holds R tails),
``a`` appending one event to every run at once (one flush) and, once ``b``
has them all, idling ``--pause`` (so the read blocks again), ``--flushes``
times. Per flush: the time from the append to the last run's delivery at
``b`` (and to the first), and the shared read's round trips for it
(``TailMux.reads``). No HTTP and no load generator: the mirror path alone,
in one process (so the two cores are less of a factor than in
``bench_workers_live``; the machine's load average is printed).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def child(url: str, runs: int, flushes: int, pause: float) -> dict[str, Any]:
    import secrets

    import trio

    from trio_streams.log._events import Event
    from trio_streams.log.redis import RedisStore

    prefix = f"wake{secrets.token_hex(4)}:"
    a, b = RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)
    ids = [f"r{i}" for i in range(runs)]
    state = {"seen": 0, "first": 0.0, "last": 0.0}
    everyone = trio.Event()

    def deliver(events: list[Any]) -> None:
        now = time.perf_counter()
        if not state["seen"]:
            state["first"] = now
        state["seen"] += 1
        if state["seen"] == runs:
            state["last"] = now
            everyone.set()

    out: dict[str, list[float]] = {"all_ms": [], "first_ms": [], "reads": []}
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        for run in ids:
            nursery.start_soon(b.follow, run, 0, deliver)
        mux: Any = b._remote.tails
        while mux is None or len(mux) < runs:
            await trio.sleep(0.01)
            mux = b._remote.tails
        await trio.sleep(0.2)
        for seq in range(1, flushes + 1):
            state["seen"] = 0
            everyone = trio.Event()
            reads = mux.reads
            start = time.perf_counter()
            for run in ids:
                a.append_nowait(run, Event.create(seq, "token", seq, time.time()))
            await everyone.wait()
            out["all_ms"].append(1000 * (state["last"] - start))
            out["first_ms"].append(1000 * (state["first"] - start))
            out["reads"].append(mux.reads - reads)
            await trio.sleep(pause)
        nursery.cancel_scope.cancel()  # everything was delivered, so durable
    return out


def run_child(tree: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", url, "--runs", str(args.runs)]
    command += ["--flushes", str(args.flushes), "--pause", str(args.pause)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=25, help="runs followed (default 25)")
    parser.add_argument("--flushes", type=int, default=300)
    parser.add_argument("--pause", type=float, default=0.005, help="idle seconds after each flush")
    parser.add_argument("--before", type=Path, metavar="DIR", help="also DIR's checkout, in the same rounds")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import trio

        print(json.dumps(trio.run(child, args.child, args.runs, args.flushes, args.pause)))
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_durable_stores import start_redis

    trees = {"this tree": ROOT}
    if args.before is not None:
        trees["before"] = args.before.resolve()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-mirror-wake-") as scratch:
        redis, url = start_redis(scratch)
        try:
            for round_ in range(args.rounds):
                for name, tree in trees.items():
                    result = run_child(tree, url, args)
                    results[name].append(result)
                    loads.append(os.getloadavg()[0])
                    all_ms = sorted(result["all_ms"])
                    print(
                        f"round {round_ + 1} {name}: all delivered p50 {statistics.median(all_ms):.2f} ms, "
                        f"replies per flush {statistics.fmean(result['reads']):.2f}, load {loads[-1]:.1f}",
                        flush=True,
                    )
        finally:
            redis.terminate()
            redis.wait(30)
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds x {args.flushes} "
        f"flushes of {args.runs} runs, load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        "\n| tree | last run delivered p50 / p90 / p99 ms | first run p50 ms | round trips per flush (mean) |"
    )
    print("|---|---:|---:|---:|")
    for name, rounds in results.items():
        pooled = sorted(v for r in rounds for v in r["all_ms"])
        first = statistics.median(v for r in rounds for v in r["first_ms"])
        reads = statistics.fmean(v for r in rounds for v in r["reads"])
        p90, p99 = (pooled[min(len(pooled) - 1, int(q * len(pooled)))] for q in (0.9, 0.99))
        last = f"{statistics.median(pooled):.2f} / {p90:.2f} / {p99:.2f}"
        print(f"| {name} | {last} | {first:.2f} | {reads:.2f} |")


if __name__ == "__main__":
    main()
