"""In-process benchmarks of the hub, each beside raw memory channels.

Run:  python -m benchmarks.bench_hub            (full sizes, 3 rounds)
      python -m benchmarks.bench_hub --quick    (small sizes, 1 round; a smoke test)

Every scenario is measured ``--rounds`` times, hub and bare interleaved in
the same process so machine noise hits both alike; the table shows medians
and the ratio of the medians.

"Bare" is the same traffic over ``trio.open_memory_channel``: one channel per
subscriber, one ``send_nowait`` per event per subscriber, no log, no store.
Both sides build the same :class:`trio_streams.Event` (the JSON encoding of
the payload is part of the traffic, whoever carries it), both producers
checkpoint once per ``burst`` events, and "delivered" means the consumer read
the event's ``seq``. Hub subscribers read in batches (``receive_batch``), as
the SSE writer does.

The baseline the ratio is taken against is what a performance-minded channel
user writes: the consumer drains its channel in batches (``await receive()``
for the first event, then ``receive_nowait()`` until ``trio.WouldBlock``), so
it pays one wake-up per producer step, not one per event; each channel is
bounded by the hub's own log budget (``log_max_events``), and a producer that
finds one full waits in ``send``. A second, labelled baseline is the naive
consumer (``async for event in receive``: one schedule point per event), for
comparison with earlier figures.

Where trio itself is the bound (S = 1, one event per producer step: every
event is a schedule point on both sides), a last table puts the same bare
channels on asyncio queues beside the bare trio ones (``bare_asyncio``), so
the event loop's own cost is visible.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from trio_streams import TERMINAL_TYPES, Event, Hub, RunContext, open_hub

from .bare_asyncio import run_fanout_asyncio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: The hub configuration every scenario uses: logs big enough to keep a
#: 50,000-event run whole (what the replay figure measures).
HUB_OPTIONS: dict[str, Any] = {"log_max_events": 200_000, "log_max_bytes": 256 * 1024 * 1024}

#: Each bare channel's buffer: the same event budget as the hub's log.
BARE_BUFFER: int = HUB_OPTIONS["log_max_events"]

#: The baselines, in table order: consumers that drain in batches (the one
#: the ratio is taken against) and consumers that take one event per receive.
BATCH, SINGLE = "bare, drained in batches", "bare, one receive per event"

#: The same bare channels on asyncio queues, drained in batches (the event loop's cost).
ASYNCIO = "bare on asyncio queues, drained in batches"


@dataclass
class Measure:
    """One scenario's samples: seconds for ``work`` units, hub and the baselines."""

    name: str
    unit: str
    work: int
    hub: list[float] = field(default_factory=list)
    #: Seconds per baseline (``BATCH``, ``SINGLE``), one sample per round.
    bare: dict[str, list[float]] = field(default_factory=lambda: {BATCH: [], SINGLE: []})

    def rate(self, samples: list[float]) -> float:
        return self.work / statistics.median(samples) if samples else math.nan


async def drain(receive: trio.MemoryReceiveChannel[Event]) -> list[Event]:
    """What an expert channel consumer does: wait for one event, then take
    whatever else is already buffered without another schedule point.

    Raises ``trio.EndOfChannel`` once the channel is closed and empty.
    Cancellation: only while waiting for the first event; nothing is lost.
    """
    batch = [await receive.receive()]
    while True:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return batch


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


# -- fan-out: 1 run x N events to S subscribers --------------------------------


async def fanout_hub(events: int, subscribers: int, burst: int = 1) -> tuple[float, list[float]]:
    """Seconds to deliver ``events`` to each of ``subscribers``, and the
    publish->receive latencies (seconds) of every delivery. The producer
    checkpoints after every ``burst`` events."""
    published = [0.0] * (events + 2)
    latencies: list[float] = []
    release = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await release.wait()
        for i in range(events):
            published[i + 1] = time.perf_counter()
            ctx.emit_nowait("token", i)
            if (i + 1) % burst == 0:
                await trio.lowlevel.checkpoint()

    async with open_hub(**HUB_OPTIONS) as hub:
        run = await hub.start(produce)
        async with trio.open_nursery() as nursery:
            for _ in range(subscribers):
                await nursery.start(_hub_consumer, hub, run.id, published, latencies)
            start = time.perf_counter()
            release.set()
        elapsed = time.perf_counter() - start
    return elapsed, latencies


async def _hub_consumer(
    hub: Hub,
    run_id: str,
    published: list[float],
    latencies: list[float],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with hub.subscribe(run_id) as subscription:
        task_status.started()
        while True:
            try:
                batch = await subscription.receive_batch()
            except trio.EndOfChannel:
                return
            now = time.perf_counter()
            # The terminal event is the last one and carries no latency; Gaps
            # and Heartbeats have no seq. (A class test per item, not
            # isinstance and the terminal property: the bare consumer's
            # channel carries events only, and it pays neither.)
            last = batch[-1]
            if last.__class__ is Event and last.type in TERMINAL_TYPES:
                batch = batch[:-1]
            for item in batch:
                if item.__class__ is Event:
                    latencies.append(now - published[item.seq])


async def fanout_bare(
    events: int, subscribers: int, burst: int = 1, *, batched: bool = True
) -> tuple[float, list[float]]:
    """The same traffic over one bounded memory channel per subscriber;
    consumers drain in batches (``batched``) or take one event per receive."""
    published = [0.0] * (events + 2)
    latencies: list[float] = []
    pairs = [trio.open_memory_channel[Event](BARE_BUFFER) for _ in range(subscribers)]

    async def consume(receive: trio.MemoryReceiveChannel[Event]) -> None:
        async with receive:
            if not batched:
                async for event in receive:
                    latencies.append(time.perf_counter() - published[event.seq])
                return
            while True:
                try:
                    batch = await drain(receive)
                except trio.EndOfChannel:
                    return
                now = time.perf_counter()
                for event in batch:
                    latencies.append(now - published[event.seq])

    async with trio.open_nursery() as nursery:
        for _, receive in pairs:
            nursery.start_soon(consume, receive)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        senders = [sender for sender, _ in pairs]
        for i in range(events):
            published[i + 1] = time.perf_counter()
            event = Event.create(i + 1, "token", i, time.time())
            for sender in senders:
                # Inline, not a helper coroutine: the bare side pays nothing per
                # send beyond send_nowait, and waits only if a channel is full.
                try:
                    sender.send_nowait(event)
                except trio.WouldBlock:
                    await sender.send(event)
            if (i + 1) % burst == 0:
                await trio.lowlevel.checkpoint()
        for sender in senders:
            await sender.aclose()
    return time.perf_counter() - start, latencies


# -- replay of a finished run --------------------------------------------------


async def replay_hub(events: int) -> float:
    """Seconds for one subscriber to read a finished ``events``-event run."""

    async def produce(ctx: RunContext) -> None:
        for i in range(events):
            ctx.emit_nowait("token", i)
        await trio.lowlevel.checkpoint()

    async with open_hub(**HUB_OPTIONS) as hub:
        run = await hub.start(produce)
        await hub.wait(run.id)
        start = time.perf_counter()
        seen = 0
        last: Any = None
        async with hub.subscribe(run.id) as subscription:
            while True:
                try:
                    batch = await subscription.receive_batch(4096)
                except trio.EndOfChannel:
                    break
                # As the bare consumer takes its batch's last seq: no walk.
                # A Gap would break the count check below.
                seen += len(batch)
                last = batch[-1]
        elapsed = time.perf_counter() - start
    assert seen == events + 1, (seen, events)
    assert isinstance(last, Event), last
    assert last.seq == events + 1, (last, events)
    return elapsed


async def replay_bare(events: int, *, batched: bool = True) -> float:
    """Reading the same events from a pre-filled memory channel, drained in
    batches (``batched``) or one event per receive."""
    sender, receive = trio.open_memory_channel[Event](events + 1)
    for i in range(events):
        sender.send_nowait(Event.create(i + 1, "token", i, time.time()))
    sender.close()
    start = time.perf_counter()
    seen = 0
    async with receive:
        if batched:
            while True:
                try:
                    seen = (await drain(receive))[-1].seq
                except trio.EndOfChannel:
                    break
        else:
            async for event in receive:
                seen = event.seq
    elapsed = time.perf_counter() - start
    assert seen == events
    return elapsed


# -- many concurrent runs -------------------------------------------------------


async def many_runs_hub(runs: int, events: int) -> float:
    """Seconds for ``runs`` concurrent runs of ``events`` each, one subscriber each."""
    release = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await release.wait()
        for i in range(events):
            await ctx.emit("token", i)

    async def follow(hub: Hub, run_id: str, *, task_status: trio.TaskStatus[None]) -> None:
        async with hub.subscribe(run_id) as subscription:
            task_status.started()
            last = 0
            while True:
                try:
                    batch = await subscription.receive_batch()
                except trio.EndOfChannel:
                    break
                for item in batch:
                    if isinstance(item, Event):
                        last = item.seq
            assert last == events + 1

    async with open_hub(max_runs=runs * 2, **HUB_OPTIONS) as hub:
        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                run = await hub.start(produce)
                await nursery.start(follow, hub, run.id)
            start = time.perf_counter()
            release.set()
        elapsed = time.perf_counter() - start
    return elapsed


async def many_runs_bare(runs: int, events: int, *, batched: bool = True) -> float:
    """The same over one channel pair per run, drained in batches or one by one."""
    release = trio.Event()

    async def produce(sender: trio.MemorySendChannel[Event]) -> None:
        async with sender:
            await release.wait()
            for i in range(events):
                event = Event.create(i + 1, "token", i, time.time())
                try:
                    sender.send_nowait(event)
                except trio.WouldBlock:
                    await sender.send(event)
                await trio.lowlevel.checkpoint()

    async def consume(receive: trio.MemoryReceiveChannel[Event]) -> None:
        last = 0
        async with receive:
            if batched:
                while True:
                    try:
                        last = (await drain(receive))[-1].seq
                    except trio.EndOfChannel:
                        break
            else:
                async for event in receive:
                    last = event.seq
        assert last == events

    async with trio.open_nursery() as nursery:
        for _ in range(runs):
            sender, receive = trio.open_memory_channel[Event](min(events, BARE_BUFFER))
            nursery.start_soon(produce, sender)
            nursery.start_soon(consume, receive)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        release.set()
    return time.perf_counter() - start


# -- paced latency ---------------------------------------------------------------


async def paced_latency_hub(runs: int, rate_per_run: float, seconds: float) -> list[float]:
    """Latencies at a steady aggregate rate: ``runs`` runs, one subscriber each,
    each emitting ``rate_per_run`` events/s for ``seconds``, their schedules
    evenly staggered (independent producers are not in phase)."""
    latencies: list[float] = []
    total = int(rate_per_run * seconds)
    begin = trio.current_time() + 0.05
    phase = iter(range(runs))

    async def produce(ctx: RunContext) -> None:
        start = begin + next(phase) / (runs * rate_per_run)
        for i in range(total):
            await trio.sleep_until(start + i / rate_per_run)
            ctx.emit_nowait("token", time.perf_counter())

    async def follow(hub: Hub, run_id: str, *, task_status: trio.TaskStatus[None]) -> None:
        async with hub.subscribe(run_id) as subscription:
            task_status.started()
            while True:
                try:
                    batch = await subscription.receive_batch()
                except trio.EndOfChannel:
                    return
                now = time.perf_counter()
                latencies.extend(
                    now - item.data for item in batch if isinstance(item, Event) and not item.terminal
                )

    async with open_hub(**HUB_OPTIONS) as hub, trio.open_nursery() as nursery:
        for _ in range(runs):
            run = await hub.start(produce)
            await nursery.start(follow, hub, run.id)
    return latencies


async def paced_latency_bare(runs: int, rate_per_run: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    total = int(rate_per_run * seconds)
    begin = trio.current_time() + 0.05

    async def produce(sender: trio.MemorySendChannel[Event], index: int) -> None:
        async with sender:
            start = begin + index / (runs * rate_per_run)
            for i in range(total):
                await trio.sleep_until(start + i / rate_per_run)
                event = Event.create(i + 1, "token", time.perf_counter(), time.time())
                try:
                    sender.send_nowait(event)
                except trio.WouldBlock:
                    await sender.send(event)

    async def consume(receive: trio.MemoryReceiveChannel[Event]) -> None:
        async with receive:
            while True:
                try:
                    batch = await drain(receive)
                except trio.EndOfChannel:
                    return
                now = time.perf_counter()
                latencies.extend(now - event.data for event in batch)

    async with trio.open_nursery() as nursery:
        for index in range(runs):
            sender, receive = trio.open_memory_channel[Event](min(total, BARE_BUFFER))
            nursery.start_soon(consume, receive)
            nursery.start_soon(produce, sender, index)
    return latencies


# -- memory ---------------------------------------------------------------------


async def memory_per_idle_run(runs: int) -> float:
    """Bytes traced per started run that is idle (blocked, no events yet)."""
    gate = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await gate.wait()

    async with open_hub(max_runs=runs * 2, **HUB_OPTIONS) as hub:
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(runs):
            await hub.start(produce)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.take_snapshot()
        gate.set()
    return _grown(before, after) / runs


async def memory_per_idle_subscriber(subscribers: int) -> tuple[float, float]:
    """Bytes traced per idle subscriber: (subscription state alone, with a
    task parked in ``receive_batch``)."""
    gate = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await gate.wait()

    async with open_hub(**HUB_OPTIONS) as hub:
        run = await hub.start(produce)
        await trio.testing.wait_all_tasks_blocked()
        # Subscription objects alone, entered but nobody reading.
        gc.collect()
        before = tracemalloc.take_snapshot()
        managers = [hub.subscribe(run.id) for _ in range(subscribers)]
        for manager in managers:
            await manager.__aenter__()
        gc.collect()
        after = tracemalloc.take_snapshot()
        state = _grown(before, after) / subscribers
        for manager in managers:
            await manager.__aexit__(None, None, None)
        del managers

        async def parked(*, task_status: trio.TaskStatus[None]) -> None:
            async with hub.subscribe(run.id) as subscription:
                task_status.started()
                async for _ in subscription:
                    pass

        async with trio.open_nursery() as nursery:
            gc.collect()
            before = tracemalloc.take_snapshot()
            for _ in range(subscribers):
                await nursery.start(parked)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.take_snapshot()
            gate.set()
        with_task = _grown(before, after) / subscribers
    return state, with_task


async def memory_per_idle_channel_consumer(consumers: int) -> float:
    """The bare comparison: a memory channel pair with a task parked on it."""
    keep: list[trio.MemorySendChannel[Event]] = []

    async def parked(
        receive: trio.MemoryReceiveChannel[Event], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        async with receive:
            async for _ in receive:
                pass

    async with trio.open_nursery() as nursery:
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(consumers):
            send, receive = trio.open_memory_channel[Event](64)
            keep.append(send)
            await nursery.start(parked, receive)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.take_snapshot()
        for send in keep:
            send.close()
    return _grown(before, after) / consumers


def _grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> float:
    return float(sum(stat.size_diff for stat in after.compare_to(before, "filename")))


# -- driver ---------------------------------------------------------------------


@dataclass
class Sizes:
    events: int
    subscribers: tuple[int, ...]
    bursts: tuple[int, ...]
    replay: int
    runs: int
    run_events: int
    paced_seconds: float
    idle: int
    rounds: int


FULL = Sizes(50_000, (1, 10, 100), (64, 1), 50_000, 1_000, 100, 3.0, 10_000, 3)
QUICK = Sizes(2_000, (1, 10), (64, 1), 5_000, 50, 20, 0.2, 200, 1)


async def interleaved(
    measure: Measure,
    rounds: int,
    hub: Callable[[], Awaitable[float]],
    bare: Callable[[bool], Awaitable[float]],
) -> None:
    """Per round: the hub, then each baseline (``bare(batched)``), back to back."""
    for _ in range(rounds):
        measure.hub.append(await hub())
        measure.bare[BATCH].append(await bare(True))
        measure.bare[SINGLE].append(await bare(False))


async def run_all(sizes: Sizes) -> dict[str, Any]:
    """Run every scenario; return the figures (also used by the smoke test)."""
    results: dict[str, Any] = {"fanout": [], "sizes": sizes}
    for burst in sizes.bursts:
        for subscribers in sizes.subscribers:
            work = sizes.events * subscribers
            measure = Measure(
                f"fan-out 1 run x {sizes.events:,} events, S={subscribers}, "
                f"{burst} event{'s' if burst > 1 else ''} per producer checkpoint",
                "deliveries/s",
                work,
            )
            hub_latency: list[float] = []
            bare_latency: dict[str, list[float]] = {BATCH: [], SINGLE: []}
            for _ in range(sizes.rounds):
                elapsed, latencies = await fanout_hub(sizes.events, subscribers, burst)
                if len(latencies) != work:
                    raise RuntimeError(f"hub delivered {len(latencies):,} of {work:,}")
                measure.hub.append(elapsed)
                hub_latency.extend(latencies)
                for name, batched in ((BATCH, True), (SINGLE, False)):
                    elapsed, latencies = await fanout_bare(sizes.events, subscribers, burst, batched=batched)
                    if len(latencies) != work:
                        raise RuntimeError(f"{name} delivered {len(latencies):,} of {work:,}")
                    measure.bare[name].append(elapsed)
                    bare_latency[name].extend(latencies)
            results["fanout"].append((measure, hub_latency, bare_latency))

    replay = Measure(f"replay of a finished {sizes.replay:,}-event run", "events/s", sizes.replay + 1)
    await interleaved(
        replay,
        sizes.rounds,
        lambda: replay_hub(sizes.replay),
        lambda batched: replay_bare(sizes.replay, batched=batched),
    )
    results["replay"] = replay

    many = Measure(
        f"{sizes.runs:,} concurrent runs x {sizes.run_events} events, 1 subscriber each",
        "deliveries/s",
        sizes.runs * sizes.run_events,
    )
    await interleaved(
        many,
        sizes.rounds,
        lambda: many_runs_hub(sizes.runs, sizes.run_events),
        lambda batched: many_runs_bare(sizes.runs, sizes.run_events, batched=batched),
    )
    results["many"] = many

    loop = Measure(
        f"fan-out 1 run x {sizes.events:,} events, S=1, 1 event per producer checkpoint",
        "deliveries/s",
        sizes.events,
    )
    loop.bare[ASYNCIO] = []
    for _ in range(sizes.rounds):
        elapsed, latencies = await fanout_hub(sizes.events, 1, 1)
        loop.hub.append(elapsed)
        elapsed, trio_latencies = await fanout_bare(sizes.events, 1, 1, batched=True)
        loop.bare[BATCH].append(elapsed)
        elapsed, asyncio_latencies = run_fanout_asyncio(sizes.events, 1, 1, buffer=BARE_BUFFER)
        loop.bare[ASYNCIO].append(elapsed)
        for name, got in (("hub", latencies), (BATCH, trio_latencies), (ASYNCIO, asyncio_latencies)):
            if len(got) != sizes.events:
                raise RuntimeError(f"{name} delivered {len(got):,} of {sizes.events:,}")
    results["loop"] = loop

    results["paced"] = [
        (
            runs,
            rate,
            await paced_latency_hub(runs, rate, sizes.paced_seconds),
            await paced_latency_bare(runs, rate, sizes.paced_seconds),
        )
        for runs, rate in ((1, 10_000), (10, 1_000))
    ]

    tracemalloc.start()
    try:
        results["memory"] = {
            "run": await memory_per_idle_run(sizes.idle // 10),
            "subscriber": await memory_per_idle_subscriber(sizes.idle),
            "bare_consumer": await memory_per_idle_channel_consumer(sizes.idle),
        }
    finally:
        tracemalloc.stop()
    return results


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(results: dict[str, Any]) -> str:
    sizes: Sizes = results["sizes"]
    lines = [
        f"Python {platform.python_version()}, trio {trio.__version__}, {platform.machine()}, "
        f"{sizes.rounds} round(s) interleaved, medians; ratio = hub rate / baseline rate.",
        "",
        f"| scenario | hub | {BATCH} | ratio | {SINGLE} | ratio "
        "| hub p50 / p99 ms | batches p50 / p99 ms | one by one p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for measure, hub_latency, bare_latency in results["fanout"]:
        lines.append(_row(measure, hub_latency, bare_latency))
    lines.append(_row(results["replay"]))
    lines.append(_row(results["many"]))
    loop: Measure = results["loop"]
    hub_rate, trio_rate, asyncio_rate = (
        loop.rate(samples) for samples in (loop.hub, loop.bare[BATCH], loop.bare[ASYNCIO])
    )
    lines += [
        "",
        f"| where trio is the bound | hub | {BATCH} (trio) | {ASYNCIO} | hub / trio | asyncio / trio |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {loop.name} | {hub_rate:,.0f} | {trio_rate:,.0f} | {asyncio_rate:,.0f} "
        f"| {hub_rate / trio_rate:.2f}x | {asyncio_rate / trio_rate:.2f}x |",
    ]
    lines += [
        "",
        "| paced (bare consumers drain in batches) | hub events | bare events "
        "| hub p50 / p99 ms | bare p50 / p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for runs, rate, hub_paced, bare_paced in results["paced"]:
        lines.append(
            f"| {runs} run{'s' if runs > 1 else ''} x {rate:,} events/s "
            f"({runs * rate:,} events/s aggregate) for {sizes.paced_seconds:g} s "
            f"| {len(hub_paced):,} | {len(bare_paced):,} "
            f"| {_percentiles(hub_paced)} | {_percentiles(bare_paced)} |"
        )
    memory = results["memory"]
    state, with_task = memory["subscriber"]
    lines += [
        "",
        "| memory (tracemalloc) | bytes |",
        "|---|---:|",
        f"| per idle run (task, scope, log, store entry) | {memory['run']:,.0f} |",
        f"| per idle subscriber: subscription state | {state:,.0f} |",
        f"| per idle subscriber: with its own task parked in receive | {with_task:,.0f} |",
        f"| bare: memory channel pair with a task parked on it | {memory['bare_consumer']:,.0f} |",
    ]
    return "\n".join(lines)


def _percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "-"
    return f"{ms(percentile(latencies, 0.5))} / {ms(percentile(latencies, 0.99))}"


def _row(
    measure: Measure,
    hub_latency: list[float] | None = None,
    bare_latency: dict[str, list[float]] | None = None,
) -> str:
    hub_rate = measure.rate(measure.hub)
    cells = [f"{hub_rate:,.0f} {measure.unit}"]
    for name in (BATCH, SINGLE):
        rate = measure.rate(measure.bare[name])
        cells += [f"{rate:,.0f} {measure.unit}", f"{hub_rate / rate:.2f}x"]
    latency = [_percentiles(hub_latency or [])]
    latency += [_percentiles((bare_latency or {}).get(name, [])) for name in (BATCH, SINGLE)]
    return f"| {measure.name} | {' | '.join(cells)} | {' | '.join(latency)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke test)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3; 1 with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    print(f"$ python -m benchmarks.bench_hub {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(report(trio.run(run_all, sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
