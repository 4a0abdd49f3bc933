"""The burst of issue 12 (item 4), and a throttling TCP proxy to slow Redis down.

A producer emits 25,000 events in one step (``emit_nowait``, no checkpoint),
more than a replay log keeps (``log_max_events`` 10,000); three subscribers
that were already following the run read it in 256-event batches with a
short pause between them. A subscriber behind the log's trimmed head reads
the store, and must get a ``Gap`` only for events that exist nowhere.

Run as a program it prints the gaps the subscribers were told about -- the
figure the report quotes, measured on any checkout::

    PYTHONPATH=. python tests/burst_support.py memory|redis|throttled

It imports only what every version of trio_streams has (the public API and
the ``RedisServer`` process helper), so it measures the code on PYTHONPATH.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from trio_streams import Event, Gap, open_hub

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_streams import Run, RunContext
    from trio_streams.runs._hub import Hub


class Burst:
    """The burst program: :meth:`run` it on a hub, then read the counts.

    Attributes:
        missed: per subscriber, the events its gaps said it missed.
        seqs: per subscriber, the seqs of the events it received, in order.
        caught_up: set once every subscriber has received the events up to
            ``caught_up_at`` (by default the whole burst), before the run ends.
    """

    def __init__(
        self,
        events: int = 25_000,
        *,
        readers: int = 3,
        batch: int = 256,
        pause: float = 0.001,
        caught_up_at: int | None = None,
    ) -> None:
        self.events = events
        self.caught_up_at = events if caught_up_at is None else caught_up_at
        self.batch = batch
        self.pause = pause
        self.missed = [0] * readers
        self.seqs: list[list[int]] = [[] for _ in range(readers)]
        self.caught_up = trio.Event()
        self._go = trio.Event()
        self._finish = trio.Event()

    async def producer(self, ctx: RunContext) -> None:
        await self._go.wait()
        for n in range(1, self.events + 1):
            ctx.emit_nowait("token", {"n": n})
        await self._finish.wait()
        ctx.result = self.events

    async def _read(
        self,
        hub: Hub,
        run_id: str,
        index: int,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        seqs = self.seqs[index]
        async with hub.subscribe(run_id) as subscription:
            task_status.started()
            while True:
                try:
                    batch = await subscription.receive_batch(self.batch)
                except trio.EndOfChannel:
                    return
                for item in batch:
                    if isinstance(item, Gap):
                        self.missed[index] += item.missed
                    elif isinstance(item, Event):
                        seqs.append(item.seq)
                if all(s and s[-1] >= self.caught_up_at for s in self.seqs):
                    self.caught_up.set()
                await trio.sleep(self.pause)

    async def run(
        self,
        hub: Hub,
        *,
        readers_hub: Hub | None = None,
        before: Callable[[Run], Awaitable[None]] | None = None,
        during: Callable[[Run], Awaitable[None]] | None = None,
    ) -> Run:
        """Start the run on ``hub``, subscribe the readers (on ``readers_hub``,
        another instance, if given), await ``before``, burst, await
        ``during``, let the run end; return once every reader has seen the end."""
        run = await hub.start(self.producer)
        async with trio.open_nursery() as nursery:
            for index in range(len(self.seqs)):
                await nursery.start(self._read, readers_hub or hub, run.id, index)
            if before is not None:
                await before(run)
            self._go.set()
            if during is not None:
                await during(run)
            self._finish.set()
        return run

    @property
    def complete(self) -> bool:
        """Every subscriber received every event, terminal included, once and in order."""
        return all(seqs == list(range(1, self.events + 2)) for seqs in self.seqs)


async def throttling_proxy(
    nursery: trio.Nursery, upstream_port: int, *, bytes_per_second: float, delay: float
) -> int:
    """A TCP proxy on a free port in front of ``127.0.0.1:upstream_port`` that
    slows every chunk down by ``delay`` plus its size at ``bytes_per_second``,
    in both directions (a slow, far-away Redis). Returns its port."""

    async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while chunk := await source.receive_some(16384):
                await trio.sleep(delay + len(chunk) / bytes_per_second)
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def handle(client: trio.SocketStream) -> None:
        try:
            async with (
                client,
                await trio.open_tcp_stream("127.0.0.1", upstream_port) as redis,
                trio.open_nursery() as pumps,
            ):
                pumps.start_soon(pump, client, redis)
                await pump(redis, client)
                pumps.cancel_scope.cancel()
        except OSError:
            pass

    listeners = await nursery.start(trio.serve_tcp, handle, 0)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _main(kind: str) -> None:
    from trio_streams import MemoryStore
    from trio_streams.log.redis import RedisStore
    from trio_streams.log.redis._server import RedisServer

    burst = Burst()
    if kind == "memory":
        async with open_hub(MemoryStore()) as hub:
            await burst.run(hub)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            server = RedisServer(Path(tmp))
            await server.start()
            try:
                async with trio.open_nursery() as nursery:
                    port = server.port
                    if kind == "throttled":
                        port = await throttling_proxy(nursery, port, bytes_per_second=2e6, delay=0.002)
                    store: Any = RedisStore(f"redis://127.0.0.1:{port}/0")
                    async with open_hub(store) as hub:
                        await burst.run(hub)
                    nursery.cancel_scope.cancel()
            finally:
                await server.stop()
    print(
        f"{kind}: gaps reported {sum(burst.missed)} events missed "
        f"(per subscriber {burst.missed}); every event once, in order: {burst.complete}"
    )


if __name__ == "__main__":
    trio.run(_main, sys.argv[1] if len(sys.argv) > 1 else "redis")
