"""Durable Streams on a real 3-master Redis Cluster: streams, forks and reads across slots.

Every script call names one stream's keys (its hash tag, one slot); a fork
reaches its source by reference, and notifications go to their own slot
after the commit. Real redis-server processes, real clock, a trio deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from coredis._utils import hash_slot

from trio_streams.durable import CreateRequest, DurableStreamError, RedisDurableStore
from trio_streams.durable._stream import AppendRequest, ForkSpec
from trio_streams.log.redis import RedisStore

from .server_support import running_server

if TYPE_CHECKING:
    from .redis_support import SyncCluster

pytestmark = pytest.mark.redis

DEADLINE = 30
TEXT = "text/plain"


def slot(name: str) -> int:
    return hash_slot(f"ds:{{{name}}}:meta".encode())


async def read_all(store: RedisDurableStore, name: str) -> bytes:
    source = await store.open_read(name)
    found = await source.read(0)
    return b"".join(piece for piece in found.pieces if isinstance(piece, bytes))


async def test_streams_forks_and_deletes_across_slots(redis_cluster: SyncCluster, prefix: str) -> None:
    source, fork, fork2 = "src", "fork", "fork-of-fork"
    assert len({slot(source), slot(fork), slot(fork2)}) == 3, "three streams, three slots"
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_cluster.url, prefix=prefix, cluster=True) as store:
            created, new = await store.create(source, CreateRequest(TEXT, body=b"abc"))
            assert new
            middle = await store.append(source, AppendRequest(b"def", TEXT))
            await store.append(source, AppendRequest(b"ghi", TEXT))
            forked, _ = await store.create(
                fork, CreateRequest(None, fork=ForkSpec(source, middle.next_offset, 1))
            )
            assert forked.tail.position == 7
            await store.append(fork, AppendRequest(b"!", TEXT))
            await store.create(fork2, CreateRequest(None, fork=ForkSpec(fork, None, 0)))
            await store.append(fork2, AppendRequest(b"?", TEXT))
            assert await read_all(store, source) == b"abcdefghi"
            assert await read_all(store, fork) == b"abcdefg!"
            assert await read_all(store, fork2) == b"abcdefg!?", "read through two sources on two slots"
            assert (await store.head(source)).forks == 1
            await store.delete(source)
            with pytest.raises(DurableStreamError) as soft:
                await store.head(source)
            assert soft.value.status == 410, "soft-deleted while its fork reads it"
            await store.delete(fork)  # soft too: fork2 reads it
            assert await read_all(store, fork2) == b"abcdefg!?"
            await store.delete(fork2)  # the last one: the chain goes with it
            for name in (source, fork, fork2):
                with pytest.raises(DurableStreamError) as gone:
                    await store.head(name)
                assert gone.value.status == 404
            assert created.tail.position == 3


async def test_a_long_poll_on_one_instance_wakes_on_an_append_on_another(
    redis_cluster: SyncCluster, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            RedisDurableStore().connect(redis_cluster.url, prefix=prefix, cluster=True) as a,
            RedisDurableStore().connect(redis_cluster.url, prefix=prefix, cluster=True) as b,
        ):
            created, _ = await a.create("live", CreateRequest(TEXT))
            source = await b.open_read("live")
            woken: list[bool] = []

            async def wait() -> None:
                # No deadline of its own (a timed-out wait also says True): only the
                # notification ends it, and a lost one fails the test within 10 s.
                with trio.fail_after(10):
                    woken.append(await source.wait(created.tail.position, float("inf")))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await trio.testing.wait_all_tasks_blocked()
                await a.append("live", AppendRequest(b"news", TEXT))
            assert woken == [True]
            assert (await source.read(created.tail.position)).pieces == [b"news"]


async def test_concurrent_appends_from_two_instances_on_a_cluster(
    redis_cluster: SyncCluster, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            RedisDurableStore().connect(redis_cluster.url, prefix=prefix, cluster=True) as a,
            RedisDurableStore().connect(redis_cluster.url, prefix=prefix, cluster=True) as b,
        ):
            await a.create("busy", CreateRequest(TEXT))

            async def append(store: RedisDurableStore, i: int) -> None:
                await store.append("busy", AppendRequest(f"<{i:02d}>".encode(), TEXT))

            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(append, a if i % 2 else b, i)
            data = await read_all(b, "busy")
            assert sorted(data[i : i + 4] for i in range(0, len(data), 4)) == [
                f"<{i:02d}>".encode() for i in range(40)
            ]


async def test_served_on_a_cluster_durable_streams_are_in_redis(
    redis_cluster: SyncCluster, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        first = RedisStore(redis_cluster.url + "?cluster=yes", prefix=prefix)
        second = RedisStore(redis_cluster.url + "?cluster=yes", prefix=prefix)
        async with (
            running_server(store=first) as a,
            running_server(store=second) as b,
            httpx.AsyncClient(base_url=a.url) as on_a,
            httpx.AsyncClient(base_url=b.url) as on_b,
        ):
            assert isinstance(a.streams.durable_store, RedisDurableStore)
            headers = {"Content-Type": TEXT}
            assert (await on_a.put("/v1/stream/s", content=b"x", headers=headers)).status_code == 201
            assert (await on_b.post("/v1/stream/s", content=b"y", headers=headers)).status_code == 204
            assert (await on_a.get("/v1/stream/s")).text == "xy", "shared by both instances"
