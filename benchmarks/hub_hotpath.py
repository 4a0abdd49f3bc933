"""Issue 14 item 4's side-by-side figures: the hub's per-event cost.

Run:  python -m benchmarks.hub_hotpath [EVENTS] [ROUNDS]      (20,000 and 3 by default)

Prints three groups of lines, each a median of ``ROUNDS`` interleaved rounds:

- ``fanout``: ``bench_hub.fanout_hub`` against ``bench_hub.fanout_bare``
  (channels drained in batches) at S = 1 / 10 / 100 and 64 / 1 events per
  producer step, and their ratio;
- ``loop``: where trio itself is the bound (S = 1, one event per step): the
  hub, the bare trio channels and the same bare channels on asyncio queues
  (``bare_asyncio``), all drained in batches;
- ``replay``: one subscriber reading a finished 50,000-event run
  (``bench_hub.replay_hub``) against a pre-filled channel drained in
  batches (``replay_bare``);
- ``paced``: 10 runs x 1,000 events/s for 3 s, one subscriber each, the
  p99 publish->receive latency of every round, hub and bare channels;
- ``publish``: microseconds per event of a run with no subscriber, from the
  first emit to the run's end (64 events per step);
- ``sse``: S readers of one run each encoding what ``receive_batch`` gives
  them as the runs SSE writer does, one encoding per writer
  (``encode_batch``) against one shared (``SharedBatches``).

To compare two trees, run it once with each on ``PYTHONPATH``, alternating,
from a directory that holds no ``trio_streams`` of its own.
"""

from __future__ import annotations

import statistics
import sys
import time

import trio
import trio.testing

from trio_streams import RunContext, open_hub
from trio_streams.protocol._sse import encode_batch

try:
    from trio_streams.protocol._sse import SharedBatches
except ImportError:  # a tree from before issue 14 item 4: each writer encodes its own
    SharedBatches = None  # type: ignore[assignment,misc]

from .bare_asyncio import run_fanout_asyncio
from .bench_hub import (
    BARE_BUFFER,
    HUB_OPTIONS,
    fanout_bare,
    fanout_hub,
    paced_latency_bare,
    paced_latency_hub,
    percentile,
    replay_bare,
    replay_hub,
)

#: The replay row's run (issue 14: "a finished 50,000-event run").
REPLAY_EVENTS = 50_000


async def publish_only(events: int, burst: int = 64) -> float:
    """Seconds from the first emit of ``events`` (``burst`` per step) to the run's end."""
    release = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await release.wait()
        for i in range(events):
            ctx.emit_nowait("token", i)
            if (i + 1) % burst == 0:
                await trio.lowlevel.checkpoint()

    async with open_hub(**HUB_OPTIONS) as hub:
        run = await hub.start(produce)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        release.set()
        info = await hub.wait(run.id)
        elapsed = time.perf_counter() - start
    if info.last_seq != events + 1:
        raise RuntimeError(f"published {info.last_seq - 1:,} of {events:,}")
    return elapsed


async def sse_writers(events: int, readers: int, *, shared: bool, burst: int = 64) -> float:
    """Seconds for ``readers`` writers to encode every event of one run; checks every byte stream."""
    release = trio.Event()
    encoder = SharedBatches() if SharedBatches is not None else None
    streams: list[list[bytes]] = [[] for _ in range(readers)]

    async def produce(ctx: RunContext) -> None:
        await release.wait()
        for i in range(events):
            ctx.emit_nowait("token", {"text": f"tok{i}"})
            if (i + 1) % burst == 0:
                await trio.lowlevel.checkpoint()

    async with open_hub(**HUB_OPTIONS) as hub:
        run = await hub.start(produce)

        async def write(stream: list[bytes], *, task_status: trio.TaskStatus[None]) -> None:
            async with hub.subscribe(run.id) as subscription:
                task_status.started()
                while True:
                    try:
                        items = await subscription.receive_batch()
                    except trio.EndOfChannel:
                        return
                    if shared and encoder is not None:
                        stream.append(encoder.encode(items))
                    else:
                        stream.append(encode_batch(items))

        async with trio.open_nursery() as nursery:
            for stream in streams:
                await nursery.start(write, stream)
            start = time.perf_counter()
            release.set()
        elapsed = time.perf_counter() - start
    first = b"".join(streams[0])
    if first.count(b"\nevent: token\n") != events or any(b"".join(s) != first for s in streams):
        raise RuntimeError("a writer did not send every event")
    return elapsed


async def main(events: int, rounds: int) -> None:
    for burst in (64, 1):
        for readers in (1, 10, 100):
            hub: list[float] = []
            bare: list[float] = []
            for _ in range(rounds):
                elapsed, latencies = await fanout_hub(events, readers, burst)
                assert len(latencies) == events * readers
                hub.append(elapsed)
                elapsed, latencies = await fanout_bare(events, readers, burst, batched=True)
                assert len(latencies) == events * readers
                bare.append(elapsed)
            h, b = (events * readers / statistics.median(t) for t in (hub, bare))
            print(
                f"fanout S={readers} B={burst}: hub {h:,.0f}/s, bare {b:,.0f}/s, ratio {h / b:.2f}",
                flush=True,
            )
    samples: dict[str, list[float]] = {"hub": [], "trio": [], "asyncio": []}
    for _ in range(rounds):
        for name, measure in (
            ("hub", lambda: fanout_hub(events, 1, 1)),
            ("trio", lambda: fanout_bare(events, 1, 1, batched=True)),
        ):
            elapsed, latencies = await measure()
            assert len(latencies) == events
            samples[name].append(elapsed)
        elapsed, latencies = run_fanout_asyncio(events, 1, 1, buffer=BARE_BUFFER)
        assert len(latencies) == events
        samples["asyncio"].append(elapsed)
    h, t, a = (events / statistics.median(samples[name]) for name in ("hub", "trio", "asyncio"))
    print(
        f"loop S=1 B=1: hub {h:,.0f}/s, bare trio {t:,.0f}/s, bare asyncio {a:,.0f}/s, "
        f"hub/trio {h / t:.2f}, asyncio/trio {a / t:.2f}",
        flush=True,
    )
    replays: dict[str, list[float]] = {"hub": [], "bare": []}
    for _ in range(rounds):
        replays["hub"].append(await replay_hub(REPLAY_EVENTS))
        replays["bare"].append(await replay_bare(REPLAY_EVENTS))
    h, b = (REPLAY_EVENTS / statistics.median(replays[name]) for name in ("hub", "bare"))
    print(f"replay {REPLAY_EVENTS:,} events: hub {h:,.0f}/s, bare {b:,.0f}/s, ratio {h / b:.2f}", flush=True)
    p99s: dict[str, list[float]] = {"hub": [], "bare": []}
    for _ in range(rounds):
        for name, paced in (("hub", paced_latency_hub), ("bare", paced_latency_bare)):
            latencies = await paced(10, 1000.0, 3.0)
            if len(latencies) != 30_000:
                raise RuntimeError(f"paced {name}: {len(latencies):,} of 30,000 events delivered")
            p99s[name].append(percentile(latencies, 0.99) * 1e3)
    print(
        "paced 10 runs x 1,000 events/s for 3 s, p99 ms per round: "
        f"hub {' / '.join(f'{v:.2f}' for v in p99s['hub'])} (median {statistics.median(p99s['hub']):.2f}), "
        f"bare {' / '.join(f'{v:.2f}' for v in p99s['bare'])} (median {statistics.median(p99s['bare']):.2f})",
        flush=True,
    )
    seconds = statistics.median([await publish_only(events) for _ in range(rounds)])
    print(f"publish S=0 B=64: {seconds / events * 1e6:.2f} us per event", flush=True)
    for readers in (1, 10, 100):
        own: list[float] = []
        shared: list[float] = []
        for _ in range(rounds):
            own.append(await sse_writers(events, readers, shared=False))
            shared.append(await sse_writers(events, readers, shared=True))
        o, s = (events * readers / statistics.median(t) for t in (own, shared))
        print(f"sse S={readers} B=64: own encoding {o:,.0f}/s, shared {s:,.0f}/s, {s / o:.2f}x", flush=True)


if __name__ == "__main__":
    trio.run(
        main, int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else 3
    )
