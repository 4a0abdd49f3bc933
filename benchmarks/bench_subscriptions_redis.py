"""What matching appends against subscriptions costs on the Redis store: CPU per append, 1,000 globs vs none.

Run:  python -m benchmarks.bench_subscriptions_redis           (5 interleaved rounds of 3,000 appends)
      python -m benchmarks.bench_subscriptions_redis --quick   (2 rounds of 500)

In process, a ``RedisDurableStore`` on a ``redis-server`` of its own (no
persistence: the matching's cost, not the disk's), the subscriptions'
state in that Redis too (``RedisSubscriptionState``, as ``serve`` runs
them). The cases are :mod:`benchmarks.bench_subscriptions`'s, each on a
fresh key prefix. With the Redis state an append's request only looks the
stream up in the instance's pattern index and notes the match; one
background task applies the notes (a ``LOAD`` and a ``SAVE`` per
subscription per batch of notes). That task runs in this process, so its
CPU is in the figure: CPU time (``time.process_time``) of this process per
append, and redis-server's (``/proc/<pid>/stat``) beside it, medians over
rounds, and their ratios to ``none``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import trio
import trio.testing

from trio_streams.durable import RedisDurableStore
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import with_subscriptions
from trio_streams.durable._sub_config import parse_config
from trio_streams.log.redis._server import RedisServer

from .bench_subscriptions import BODY, CASES, TYPE

TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(
    url: str, pid: int, prefix: str, appends: int, subscriptions: int | None, target: str
) -> tuple[float, float, float]:
    """(appends/s, CPU s per append here, redis-server CPU s per append) of ``appends`` to ``target``."""
    store = RedisDurableStore()
    async with store.connect(url, prefix=prefix), trio.open_nursery() as nursery:
        backend = store if subscriptions is None else with_subscriptions(store)
        if subscriptions is not None:
            registry = backend.registry  # type: ignore[union-attr]
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
        started, cpu, redis_cpu = time.perf_counter(), time.process_time(), server_cpu(pid)
        for _ in range(appends):
            await backend.append(target, request)
        # The notes applied too: their work is the subscriptions' share of these appends.
        await trio.testing.wait_all_tasks_blocked()
        elapsed = time.perf_counter() - started
        cpu, redis_cpu = time.process_time() - cpu, server_cpu(pid) - redis_cpu
        nursery.cancel_scope.cancel()
    return appends / elapsed, cpu / appends, redis_cpu / appends


async def main(rounds: int, appends: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-subs-redis-") as tmp:
        server = RedisServer(Path(tmp), appendonly=False)
        await server.start()
        assert server.process is not None
        pid = server.process.pid
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in CASES}
        try:
            for round_ in range(rounds):
                for n, (name, subscriptions, target) in enumerate(CASES):
                    prefix = f"b{round_}c{n}:"
                    sample = await measure(server.url, pid, prefix, appends, subscriptions, target)
                    samples[name].append(sample)
        finally:
            await server.stop()
    medians = {
        name: [statistics.median(s[i] for s in runs) for i in range(3)] for name, runs in samples.items()
    }
    none = medians["none"]
    print("| case | appends/s | vs none | CPU µs/append | vs none | redis-server CPU µs/append | vs none |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (rate, cpu, redis_cpu) in medians.items():
        print(
            f"| {name} | {rate:,.0f} | {rate / none[0]:.2f}x | {cpu * 1e6:.1f} | {none[1] / cpu:.2f}x"
            f" | {redis_cpu * 1e6:.1f} | {none[2] / redis_cpu:.2f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--appends", type=int)
    args = parser.parse_args()
    rounds, appends = (2, 500) if args.quick else (5, 3_000)
    trio.run(main, args.rounds or rounds, args.appends or appends)
