"""What matching appends against subscriptions costs: appends/s with 1,000 glob subscriptions vs none.

Run:  python -m benchmarks.bench_subscriptions            (5 interleaved rounds of 20,000 appends)
      python -m benchmarks.bench_subscriptions --quick    (3 rounds of 5,000)
      python -m benchmarks.bench_subscriptions --instructions   (callgrind: instructions per append)

In process, on the memory store (HTTP would hide the matching cost under
the ~0.3 ms per request of the server), one trio run, appends of 64 bytes:

- ``bare``: the memory store's backend, no subscription machinery;
- ``none``: the same behind ``SubscribedBackend`` with no subscription;
- ``1000 globs, no match``: 990 subscriptions ``tenant<i>/*`` and 10
  ``*/x<i>`` (wildcard first: the index's shared bucket), appending to
  ``other/s`` (matches none);
- ``1000 globs, 1 match``: the same, appending to ``tenant7/s`` (one
  pull-wake subscription matches; its wake is in flight after the first
  append, as with a busy worker).

Prints appends/s (wall clock) and CPU time per append (``time.process_time``,
less sensitive to other processes on the machine), medians over rounds, and
their ratios to ``none``. ``--instructions`` runs each case under
``valgrind --tool=callgrind`` twice (``--small`` and ``--large`` appends;
interleaved) and reports the difference per append: instructions, which no
load on the machine changes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import trio
import trio.testing

from trio_streams.durable import DurableStreamStore
from trio_streams.durable._backend import as_backend
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import with_subscriptions
from trio_streams.durable._sub_config import parse_config

BODY = b"x" * 64
TYPE = "application/octet-stream"


async def measure(appends: int, subscriptions: int | None, target: str) -> tuple[float, float]:
    """(appends/s, CPU seconds per append) of ``appends`` appends to ``target``."""
    store = DurableStreamStore(max_bytes=1024**3)
    backend = as_backend(store) if subscriptions is None else with_subscriptions(as_backend(store))
    async with trio.open_nursery() as nursery:
        if subscriptions is not None:
            registry = backend.registry  # type: ignore[attr-defined]
            await nursery.start(registry.serve)
            await backend.create("wake/pool", CreateRequest(content_type="application/json"))
            for i in range(subscriptions):
                pattern = f"*/x{i}" if i % 100 == 99 else f"tenant{i}/*"
                config = {"type": "pull-wake", "pattern": pattern, "wake_stream": "wake/pool"}
                await registry.put(None, f"s{i}", parse_config(config), "http://localhost/cb")
        await backend.create(target, CreateRequest(content_type=TYPE))
        request = AppendRequest(BODY, TYPE)
        await backend.append(target, request)  # (the first wake, out of the measurement)
        await trio.testing.wait_all_tasks_blocked()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(appends):
            await backend.append(target, request)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return appends / elapsed, cpu / appends


CASES = [
    ("bare", None, "other/s"),
    ("none", 0, "other/s"),
    ("1000 globs, no match", 1000, "other/s"),
    ("1000 globs, 1 match", 1000, "tenant7/s"),
]


def instructions(case: str, appends: int) -> int:
    """Instructions callgrind counts for a whole process that runs ``case`` ``appends`` times."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    run = subprocess.run(
        [
            *valgrind,
            sys.executable,
            "-m",
            "benchmarks.bench_subscriptions",
            "--case",
            case,
            "--appends",
            str(appends),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    assert found, run.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--small", type=int, default=2_000, help="--instructions: the short run's appends")
    parser.add_argument("--large", type=int, default=10_000, help="--instructions: the long run's appends")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--appends", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = {name: (subscriptions, target) for name, subscriptions, target in CASES}
    if args.case is not None:  # one run, for --instructions
        trio.run(measure, args.appends, *cases[args.case])
        return
    if args.instructions:
        counts: dict[str, list[int]] = {name: [] for name in cases}
        for appends in (args.small, args.large):
            for name in cases:
                counts[name].append(instructions(name, appends))
        per = {name: (large - small) / (args.large - args.small) for name, (small, large) in counts.items()}
        print(f"| case | instructions/append ({args.large:,} - {args.small:,} appends) | vs none |")
        print("|---|---:|---:|")
        for name in cases:
            print(f"| {name} | {per[name]:,.0f} | {per['none'] / per[name]:.2f}x |")
        return
    rounds, appends = (3, 5_000) if args.quick else (5, 20_000)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (subscriptions, target) in cases.items():
            rate, cpu = trio.run(measure, appends, subscriptions, target)
            rates[name].append(rate)
            cpus[name].append(cpu)
    none_rate, none_cpu = statistics.median(rates["none"]), statistics.median(cpus["none"])
    print(f"| case | appends/s (median of {rounds}) | vs none | CPU µs/append (median) | vs none |")
    print("|---|---:|---:|---:|---:|")
    for name in cases:
        rate, cpu = statistics.median(rates[name]), statistics.median(cpus[name])
        print(f"| {name} | {rate:,.0f} | {rate / none_rate:.2f}x | {cpu * 1e6:.2f} | {none_cpu / cpu:.2f}x |")


if __name__ == "__main__":
    main()
