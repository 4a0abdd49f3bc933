"""``on_conflict="rollback"`` across instances: the old run on A, the rollback through B.

Two hubs in one process stand for two servers on one Redis (each its own
RedisStore: connections, instance id, lease). Real Redis: the real clock,
ordered by events and observable state; deadlines only guard against hangs.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams import RunNotFound, RunStatus, open_hub
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore
from trio_streams.testing import Script

from .redis_support import unique_prefix

if TYPE_CHECKING:
    from trio_streams import Hub

pytestmark = pytest.mark.redis  # real redis-server processes


class Ticker:
    """Emits a token every ``interval`` until cancelled, keeping a partial result."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.emitted = 0
        self.first = trio.Event()

    async def __call__(self, ctx: Any) -> None:
        while True:
            self.emitted += 1
            ctx.result = {"tokens": self.emitted}
            await ctx.emit("token", {"n": self.emitted})
            self.first.set()
            await trio.sleep(self.interval)


class SlowDeleteStore(RedisStore):
    """A RedisStore whose delete of a run takes 2 s longer (the new run must
    wait for it), and which pauses 2 s after releasing a key (the old run must
    have left this instance's memory before)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        release = self._claims.release

        async def release_then_pause(*args: Any, **kwargs: Any) -> None:
            await release(*args, **kwargs)
            await trio.sleep(2)

        self._claims.release = release_then_pause  # type: ignore[method-assign]

    async def _delete(self, run_id: str, owner: str | None) -> None:
        await trio.sleep(2)
        await super()._delete(run_id, owner)


async def _gone_in_redis(store: RedisStore, run_id: str, owner: str | None) -> dict[str, Any]:
    """What Redis still has of a run: every answer is falsy once it is deleted.

    (Its events stream is left to expire after ``lease_ttl``; it is checked
    for a deadline instead.)
    """
    client, keys = store.client, store.keys
    found: dict[str, Any] = {
        "meta": await client.exists([keys.meta(run_id)]),
        "lease": await client.exists([keys.lease(run_id)]),
        "runs": await client.zscore(keys.runs, run_id),
        "running": await client.zscore(keys.running, run_id),
    }
    if owner is not None:
        found["owner_runs"] = await client.zscore(keys.owner_runs(owner), run_id)
        found["owner_live"] = await client.zscore(keys.owner_live(owner), run_id)
    ttl = await client.pttl(keys.events(run_id))
    found["events_without_deadline"] = ttl == -1
    return found


async def _assert_gone(hub: Hub, run_id: str) -> None:
    with pytest.raises(RunNotFound):
        await hub.get_info(run_id)
    with pytest.raises(RunNotFound):
        await hub.cancel(run_id)
    with pytest.raises(RunNotFound):
        async with hub.subscribe(run_id, after=1):  # a Last-Event-ID reconnect
            pass
    assert run_id not in {info.run_id for info in await hub.list_runs()}


async def test_the_old_run_on_a_is_rolled_back_through_b(redis_url, prefix) -> None:
    with trio.fail_after(20):
        store_a = SlowDeleteStore(redis_url, prefix=prefix)
        store_b = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store_a, grace_period=60) as a, open_hub(store_b, grace_period=60) as b:
            ticker = Ticker()
            old = await a.start(ticker, key="conv", owner="alice")
            await ticker.first.wait()
            found_at_start: list[Any] = []

            async def new_producer(ctx: Any) -> str:
                # The new run starts only once the old one is gone, everywhere.
                found_at_start.append(
                    (
                        await store_b.get_run(old.id),
                        await store_a.get_run(old.id),
                        a.get(old.id),
                        await _gone_in_redis(store_b, old.id, "alice"),
                    )
                )
                return "fresh"

            on_a: list[Any] = []
            on_b: list[Any] = []

            async def follow(hub: Hub, into: list[Any], subscribed: trio.Event) -> None:
                async with hub.subscribe(old.id) as sub:
                    subscribed.set()
                    into.extend([item async for item in sub])

            async with trio.open_nursery() as nursery:
                for hub, into in ((a, on_a), (b, on_b)):
                    subscribed = trio.Event()
                    nursery.start_soon(follow, hub, into, subscribed)
                    await subscribed.wait()
                new = await b.start(new_producer, key="conv", owner="alice", on_conflict="rollback")
            new_info = await b.wait(new.id)
            assert (new_info.status, new_info.result) == (RunStatus.DONE, "fresh")
            [(stored_b, stored_a, in_memory_a, redis_left)] = found_at_start
            assert (stored_b, stored_a, in_memory_a) == (None, None, None)
            assert not any(redis_left.values()), redis_left
            # Both subscribers: tokens in order, then the terminal, then the end; no Gap.
            for items in (on_a, on_b):
                assert all(isinstance(item, Event) for item in items)
                assert [item.seq for item in items] == list(range(1, len(items) + 1))
                assert [item.type for item in items[:-1]] == ["token"] * (len(items) - 1)
                assert items[-1].type == "cancelled"
                assert items[-1].data["reason"] == "rolled_back"
                assert items[-1].data["result"] == {"tokens": items[-1].seq - 1}
            assert len(on_a) == len(on_b)
            for hub in (a, b):
                await _assert_gone(hub, old.id)
            assert await store_b.key_holder_of("alice", "conv") is None  # released after the new run


class NeverDeletes(RedisStore):
    """An owner that stores a rolled-back run's end and then never deletes it
    (as if it died right there): its key is not released either."""

    async def delete_run(self, run_id: str) -> None:
        await trio.sleep_forever()


async def test_a_rolled_back_holder_whose_owner_never_deletes_it_is_healed_after_a_lease(
    redis_url, prefix
) -> None:
    with trio.fail_after(30):
        store_a = NeverDeletes(redis_url, prefix=prefix, lease_ttl=1.0)
        store_b = RedisStore(redis_url, prefix=prefix, lease_ttl=1.0)
        # A gives up on the delete after store_timeout (its finalize is bounded), key still held.
        async with open_hub(store_a, store_timeout=3) as a, open_hub(store_b) as b:
            ticker = Ticker()
            old = await a.start(ticker, key="k")
            await ticker.first.wait()
            new = await b.start(Script().emit(), key="k", on_conflict="rollback")
            # The key heals once B has seen the finished holder keep it for a lease.
            assert (await b.wait(new.id)).status is RunStatus.DONE
            kept = await store_b.get_run(old.id)
            assert kept is not None
            assert (kept.status, kept.reason) == (RunStatus.CANCELLED, "rolled_back")
            assert a.get(old.id) is None  # it left A's memory before the delete began


async def test_bobs_rollback_on_b_never_touches_alices_run_on_a(redis_url, prefix) -> None:
    with trio.fail_after(20):
        async with (
            open_hub(RedisStore(redis_url, prefix=prefix)) as a,
            open_hub(RedisStore(redis_url, prefix=prefix)) as b,
        ):
            ticker = Ticker()
            alices = await a.start(ticker, key="k", owner="alice")
            bobs = await b.start(ticker, key="k", owner="bob", on_conflict="rollback")
            assert bobs.status is RunStatus.RUNNING
            await b.cancel(bobs.id)
            assert (await b.wait(bobs.id)).reason == "cancelled"
            assert (await b.get_info(alices.id)).status is RunStatus.RUNNING
            assert alices.status is RunStatus.RUNNING
            await a.cancel(alices.id)
            assert (await a.wait(alices.id)).reason == "cancelled"


ROLLBACKS = 50


async def test_simultaneous_rollbacks_of_one_key_leave_exactly_one_live_run(redis_url) -> None:
    await _simultaneous_rollbacks(redis_url)


async def test_simultaneous_rollbacks_on_a_cluster_leave_exactly_one_live_run(redis_cluster) -> None:
    await _simultaneous_rollbacks(redis_cluster.url, cluster=True)


async def _simultaneous_rollbacks(url: str, **options: Any) -> None:
    """An old run on A, then 50 rollbacks of its key at once, alternating
    between A and B: the last one in the key's FIFO survives; every other run
    (the old one and 49 of the new) ends ``cancelled``/``rolled_back`` and is
    deleted; no two producers ever run at once."""
    with trio.fail_after(60):
        prefix = unique_prefix()
        stores = [RedisStore(url, prefix=prefix, **options) for _ in range(2)]
        active = 0
        counts: Counter[str] = Counter()
        started: dict[str, trio.Event] = {}
        stop = trio.Event()

        async def producer(ctx: Any) -> None:
            nonlocal active
            active += 1
            counts["ran"] += 1
            counts["double"] += active > 1
            try:
                started.setdefault(ctx.run_id, trio.Event()).set()
                await stop.wait()
            finally:
                active -= 1

        hub_options: dict[str, Any] = {"grace_period": 60, "max_queued_per_key": 2 * ROLLBACKS}
        async with open_hub(stores[0], **hub_options) as a, open_hub(stores[1], **hub_options) as b:
            hubs = (a, b)
            old = await a.start(producer, key="k")
            await started.setdefault(old.id, trio.Event()).wait()
            runs: list[tuple[Hub, Any]] = [(a, old)]

            async def rollback(hub: Hub) -> None:
                runs.append((hub, await hub.start(producer, key="k", on_conflict="rollback")))

            async with trio.open_nursery() as nursery:
                for n in range(ROLLBACKS):
                    nursery.start_soon(rollback, hubs[n % 2])
            assert len(runs) == ROLLBACKS + 1
            # Every run but one ends: wait for those, whichever they are.
            ended: list[Any] = []
            all_but_one = trio.Event()

            async def wait_end(run: Any) -> None:
                ended.append(await run.wait())
                if len(ended) == ROLLBACKS:
                    all_but_one.set()

            async with trio.open_nursery() as nursery:
                for _hub, run in runs:
                    nursery.start_soon(wait_end, run)
                await all_but_one.wait()
                live = [(hub, run) for hub, run in runs if run.id not in {i.run_id for i in ended}]
                assert len(live) == 1
                [(survivor_hub, survivor)] = live
                await started.setdefault(survivor.id, trio.Event()).wait()
                assert (await survivor_hub.get_info(survivor.id)).status is RunStatus.RUNNING
                assert await stores[0].key_holder_of(None, "k") == survivor.id
                assert active == 1
                stop.set()
            assert {(i.status, i.reason) for i in ended[:ROLLBACKS]} == {(RunStatus.CANCELLED, "rolled_back")}
            assert counts["double"] == 0, counts
            # The 50 rolled-back runs are gone from both instances; the survivor stays.
            for info in ended[:ROLLBACKS]:
                for hub in hubs:
                    await _assert_gone(hub, info.run_id)
            for hub in hubs:
                assert (await hub.get_info(survivor.id)).status is RunStatus.DONE
