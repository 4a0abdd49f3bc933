"""One shared XREAD for every run an instance follows (``log/redis/_tails.py``).

Two hubs in one process stand for two servers on one real redis-server (as
``serve --workers`` runs them): runs started on ``a`` are followed from ``b``
through mirrors, whose live tails ``b`` reads in one ``XREAD BLOCK``. Real
clock, trio deadlines; conditions are waited for, never times.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams import open_hub
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_streams import Hub
    from trio_streams.log.redis._tails import TailMux

pytestmark = pytest.mark.redis  # real redis-server processes

DEADLINE = 20


@asynccontextmanager
async def two_hubs(url: str, prefix: str, **options: Any) -> AsyncIterator[tuple[Hub, Hub, RedisStore]]:
    a = RedisStore(url, prefix=prefix)
    b = RedisStore(url, prefix=prefix, **options)
    async with open_hub(a, grace_period=0) as hub_a, open_hub(b, grace_period=0) as hub_b:
        yield hub_a, hub_b, b


def shared_read(store: RedisStore) -> TailMux:
    tails = store._remote.tails
    assert tails is not None, "a single Redis: followed runs share one read"
    return tails


class Gated:
    """A producer that emits ``count`` tokens, each once its gate opens (so a test
    knows what a follower has seen)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.gates = [trio.Event() for _ in range(count)]

    async def __call__(self, ctx: Any) -> None:
        for n, gate in enumerate(self.gates, start=1):
            await gate.wait()
            await ctx.emit("token", {"n": n})
        ctx.result = {"tokens": self.count}


async def test_the_runs_an_instance_follows_share_one_read_and_leave_it_when_done(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_hubs(redis_url, prefix) as (a, b, store_b):
            producers = [Gated(3) for _ in range(5)]
            runs = [await a.start(p) for p in producers]
            received: dict[str, list[Event]] = {run.id: [] for run in runs}
            first = {run.id: trio.Event() for run in runs}

            async def follow(run_id: str) -> None:
                async with b.subscribe(run_id) as sub:
                    async for item in sub:
                        assert isinstance(item, Event)
                        received[run_id].append(item)
                        first[run_id].set()

            async with trio.open_nursery() as nursery:
                for run in runs:
                    nursery.start_soon(follow, run.id)
                for producer in producers:
                    producer.gates[0].set()
                for run in runs:
                    await first[run.id].wait()
                # Every mirror registers its tail in the shared read. (Waited for: a run's
                # first event can reach its subscriber from the store, through the
                # subscription's catch-up, before its mirror's tail has registered.)
                while True:  # a condition, polled (under the test's deadline)
                    if len(shared_read(store_b)) == 5:
                        break
                    await trio.sleep(0.01)
                for producer in producers:
                    for gate in producer.gates[1:]:
                        gate.set()
            for run in runs:
                events = received[run.id]
                assert [e.seq for e in events] == [1, 2, 3, 4]
                assert [e.type for e in events] == ["token", "token", "token", "done"]
            assert len(shared_read(store_b)) == 0, "a tail leaves the read with its run's end"


async def test_a_run_followed_while_the_read_blocks_is_read_at_once(redis_url: str, prefix: str) -> None:
    # The read blocks for a minute (cut at the client's 10 s timeout): without the
    # wake-up a second run would wait that long, past the 7 s deadline below.
    async with two_hubs(redis_url, prefix, follow_block=60.0) as (a, b, store_b):
        with trio.fail_after(DEADLINE):
            quiet, busy = Gated(2), Gated(2)
            quiet_run = await a.start(quiet)
            busy_run = await a.start(busy)
            async with trio.open_nursery() as nursery:
                started = trio.Event()

                async def hold_quiet() -> None:
                    async with b.subscribe(quiet_run.id) as sub:
                        async for _item in sub:
                            started.set()  # its tail is in the read (registered before any delivery)

                quiet.gates[0].set()
                nursery.start_soon(hold_quiet)
                await started.wait()
                # Its first event may come from the catch-up read, before the tail
                # joins the shared read: wait for that (bounded by the deadline).
                while len(shared_read(store_b)) != 1:  # noqa: ASYNC110 (no event to wait on: polled)
                    await trio.sleep(0.005)
                busy.gates[0].set()
                with trio.fail_after(7):
                    async with b.subscribe(busy_run.id) as sub:
                        seen = []
                        async for item in sub:
                            assert isinstance(item, Event)
                            seen.append(item.seq)
                            if len(seen) == 1:
                                busy.gates[1].set()  # emitted after this tail was registered
                assert seen == [1, 2, 3]
                quiet.gates[1].set()
