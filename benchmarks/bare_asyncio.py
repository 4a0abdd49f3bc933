"""The bare fan-out baseline on asyncio: the cost of the event loop, beside trio's.

Where trio itself is the bound (one event per producer step, one subscriber:
every event is a schedule point on both sides), the hub cannot beat bare trio
channels by much; this row shows what the *same* bare traffic costs on
asyncio, so the event loop's share is visible (issue 14, "Targets").

Same traffic as ``bench_hub.fanout_bare``: the same ``Event.create`` per event
(its JSON encoding included), one bounded ``asyncio.Queue`` per subscriber
(``BARE_BUFFER``, as the trio channels), ``put_nowait`` and a wait in ``put``
only when a queue is full, the producer yielding once per ``burst`` events
(``asyncio.sleep(0)``, asyncio's bare checkpoint), consumers that drain in
batches (``get`` then ``get_nowait`` until ``QueueEmpty``) or take one event
per ``get``. Python 3.11's queues cannot be closed: a ``None`` after the last
event ends each consumer.
"""

from __future__ import annotations

import asyncio
import time

from trio_streams import Event


async def fanout_asyncio(
    events: int, subscribers: int, burst: int, *, batched: bool, buffer: int
) -> tuple[float, list[float]]:
    """Seconds to deliver ``events`` to each of ``subscribers``, and every
    delivery's publish->receive latency (seconds). Run it with ``asyncio.run``."""
    published = [0.0] * (events + 2)
    latencies: list[float] = []
    queues: list[asyncio.Queue[Event | None]] = [asyncio.Queue(buffer) for _ in range(subscribers)]

    async def consume(queue: asyncio.Queue[Event | None]) -> None:
        while True:
            batch = [await queue.get()]
            if batched:
                while True:
                    try:
                        batch.append(queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
            now = time.perf_counter()
            for event in batch:
                if event is None:
                    return
                latencies.append(now - published[event.seq])

    consumers = [asyncio.create_task(consume(queue)) for queue in queues]
    await asyncio.sleep(0)  # every consumer parks in get() before the first event
    start = time.perf_counter()
    for i in range(events):
        published[i + 1] = time.perf_counter()
        event = Event.create(i + 1, "token", i, time.time())
        for queue in queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                await queue.put(event)
        if (i + 1) % burst == 0:
            await asyncio.sleep(0)
    for queue in queues:
        await queue.put(None)
    await asyncio.gather(*consumers)
    return time.perf_counter() - start, latencies


def run_fanout_asyncio(
    events: int, subscribers: int, burst: int = 1, *, batched: bool = True, buffer: int = 200_000
) -> tuple[float, list[float]]:
    """:func:`fanout_asyncio` in a fresh asyncio loop (blocking; callable from
    inside ``trio.run``, which registers no asyncio loop)."""
    return asyncio.run(fanout_asyncio(events, subscribers, burst, batched=batched, buffer=buffer))
