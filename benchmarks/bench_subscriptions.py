"""What matching appends against subscriptions costs: appends/s with 1,000 glob subscriptions vs none.

Run:  python -m benchmarks.bench_subscriptions            (5 interleaved rounds of 20,000 appends)
      python -m benchmarks.bench_subscriptions --quick    (3 rounds of 5,000)

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

Prints appends/s (median over rounds) and the ratio to ``bare``.
"""

from __future__ import annotations

import argparse
import statistics
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


async def measure(appends: int, subscriptions: int | None, target: str) -> float:
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
        started = time.perf_counter()
        for _ in range(appends):
            await backend.append(target, request)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return appends / elapsed


CASES = [
    ("bare", None, "other/s"),
    ("none", 0, "other/s"),
    ("1000 globs, no match", 1000, "other/s"),
    ("1000 globs, 1 match", 1000, "tenant7/s"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, appends = (3, 5_000) if args.quick else (5, 20_000)
    results: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _ in range(rounds):
        for name, subscriptions, target in CASES:
            results[name].append(trio.run(measure, appends, subscriptions, target))
    bare = statistics.median(results["bare"])
    print(f"| case | appends/s (median of {rounds}) | vs bare |")
    print("|---|---:|---:|")
    for name, _, _ in CASES:
        median = statistics.median(results[name])
        print(f"| {name} | {median:,.0f} | {median / bare:.2f}x |")


if __name__ == "__main__":
    main()
