"""Plain appends placed at the tail Redis has (two instances on one real Redis).

An append of data only (no producer, ``Stream-Seq`` or close) to a stream
without a deadline is committed without a version check: the script places
it at the stream's tail as it is then (``durable/redis/_plan.py``). These
tests run two :class:`RedisDurableStore` objects on one real redis-server --
as two ``serve --workers`` workers do -- and check that an instance whose view
another one moved commits in one script call and no load, answers the
offsets the data really has, and still refuses what it must: a stream closed,
soft-deleted or re-created elsewhere, a producer's retry decided on a view
whose writer state it does not know. Real clock, a trio deadline on each.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams.durable import CreateRequest, DurableStreamError, RedisDurableStore, StreamId
from trio_streams.durable._offsets import Offset
from trio_streams.durable._producers import ProducerClaim
from trio_streams.durable._stream import AppendOutcome, AppendRequest, ForkSpec
from trio_streams.durable.redis._layout import Keys, Meta
from trio_streams.durable.redis._plan import LUA_EXACT, plain_appends, plan_batch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.redis  # real redis-server processes

DEADLINE = 20
TEXT = "text/plain"
JSON = "application/json"


class Counted:
    """Counts a store's commit-script calls and meta loads from now on."""

    def __init__(self, store: RedisDurableStore) -> None:
        self.scripts = self.loads = 0
        inner_script, reader = store._script, store._data()
        inner_load = reader.load

        async def script(**kwargs: Any) -> Any:
            self.scripts += 1
            return await inner_script(**kwargs)

        async def load(ident: StreamId) -> Meta | None:
            self.loads += 1
            return await inner_load(ident)

        store._script = script
        reader.load = load  # type: ignore[method-assign]


@asynccontextmanager
async def two_stores(url: str, prefix: str) -> AsyncIterator[tuple[RedisDurableStore, RedisDurableStore]]:
    async with (
        RedisDurableStore().connect(url, prefix=prefix) as a,
        RedisDurableStore().connect(url, prefix=prefix) as b,
    ):
        yield a, b


async def appended(store: RedisDurableStore, name: str, body: bytes, content_type: str = TEXT) -> Offset:
    outcome = await store.append(name, AppendRequest(body, content_type))
    assert outcome.status == 204
    return outcome.next_offset


async def read_from(store: RedisDurableStore, name: str, offset: Offset | None = None) -> bytes:
    source = await store.open_read(name)
    found = await source.read(0 if offset is None else offset.position)
    return b"".join(piece for piece in found.pieces if isinstance(piece, bytes))


async def test_an_instance_whose_view_the_other_moved_appends_in_one_call_and_no_load(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("s", CreateRequest(TEXT))
            await appended(b, "s", b"b0")  # b has a view now (its own commit)
            on_a, on_b = Counted(a), Counted(b)
            offsets = []
            for i in range(1, 11):
                # Each append follows the other instance's: every view is stale.
                offsets.append(await appended(a if i % 2 else b, "s", f"<{i:02d}>".encode()))
            assert (on_a.scripts, on_b.scripts) == (5, 5), "one script call per append, none failed"
            assert (on_a.loads, on_b.loads) == (0, 0), "neither loaded the stream it had a view of"
            assert offsets == [Offset(1 + i, 2 + 4 * i) for i in range(1, 11)]
            assert await read_from(a, "s") == b"b0" + b"".join(f"<{i:02d}>".encode() for i in range(1, 11))
            for i, offset in enumerate(offsets[:-1], start=2):
                assert await read_from(b, "s", offset) == b"".join(
                    f"<{j:02d}>".encode() for j in range(i, 11)
                )
            loaded = await a._load(StreamId(None, "s"))
            assert loaded is not None
            for store in (a, b):
                view = store._local.view(StreamId(None, "s"))
                assert view is not None
                assert (view.version, view.tail) in {
                    (loaded.version, loaded.tail),
                    (str(int(loaded.version) - 1), offsets[-2]),
                }


async def test_concurrent_batches_from_two_instances_get_the_offsets_their_data_has(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("j", CreateRequest(JSON))
            answers: dict[tuple[int, int], Offset] = {}

            async def burst(store: RedisDurableStore, who: int) -> None:
                async def one(i: int) -> None:
                    body = b"[" + b",".join(b'{"w":%d,"i":%d}' % (who, i) for _ in range(i % 3 + 1)) + b"]"
                    answers[who, i] = await appended(store, "j", body, JSON)

                async with trio.open_nursery() as nursery:
                    for i in range(30):
                        nursery.start_soon(one, i)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(burst, a, 0)
                nursery.start_soon(burst, b, 1)
            assert len(set(answers.values())) == 60
            assert max(answers.values()).position == 2 * sum(i % 3 + 1 for i in range(30))
            source = await a.open_read("j")
            everything = [message for piece in (await source.read(0)).pieces for message in piece]
            assert len(everything) == max(answers.values()).position
            # Each answer is the offset just after that append's own messages.
            for (who, i), offset in answers.items():
                assert offset.position >= i % 3 + 1
                before = everything[offset.position - (i % 3 + 1) : offset.position]
                assert all(piece == b'{"w":%d,"i":%d}' % (who, i) for piece in before)


async def test_a_stream_closed_elsewhere_refuses_a_plain_append(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("c", CreateRequest(TEXT))
            tail = await appended(a, "c", b"x")
            closed = await b.append("c", AppendRequest(b"", close=True))
            assert closed.closed
            with pytest.raises(DurableStreamError) as refused:
                await a.append("c", AppendRequest(b"late", TEXT))
            assert refused.value.status == 409
            assert refused.value.headers["Stream-Closed"] == "true"
            assert await read_from(b, "c") == b"x"
            assert (await b.head("c")).tail == tail


async def test_a_stream_recreated_elsewhere_is_decided_on_its_new_incarnation(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("r", CreateRequest(TEXT))
            await appended(a, "r", b"old")
            await b.delete("r")
            await b.create("r", CreateRequest(JSON))
            with pytest.raises(DurableStreamError) as refused:
                await a.append("r", AppendRequest(b"text", TEXT))
            assert refused.value.status == 409, "the new stream holds JSON"
            assert await a.append("r", AppendRequest(b'{"n":1}', JSON)) == AppendOutcome(
                204, Offset(1, 1), False
            )
            assert (await b.head("r")).tail == Offset(1, 1)


async def test_a_stream_soft_deleted_elsewhere_refuses_a_plain_append(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("src", CreateRequest(TEXT))
            await appended(a, "src", b"x")
            await b.create("fork", CreateRequest(TEXT, fork=ForkSpec("src", None, 0)))
            await b.delete("src")  # the fork reads it: soft-deleted
            with pytest.raises(DurableStreamError) as refused:
                await a.append("src", AppendRequest(b"y", TEXT))
            assert refused.value.status == 410
            assert await read_from(b, "fork") == b"x"


async def test_a_producer_retry_after_a_placed_append_is_decided_on_the_stream_not_the_view(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("p", CreateRequest(TEXT))
            await appended(b, "p", b"b")  # b's view: no producers
            first = await a.append("p", AppendRequest(b"p0", TEXT, producer=ProducerClaim("p", 0, 0)))
            assert first.status == 200
            await appended(b, "p", b"plain")  # placed after a's write: b's view is partial
            view = b._local.view(StreamId(None, "p"))
            assert view is not None
            assert view.partial
            assert view.producers == {}
            on_b = Counted(b)
            retry = await b.append("p", AppendRequest(b"p0", TEXT, producer=ProducerClaim("p", 0, 0)))
            assert retry.status == 204, "a duplicate: b loaded the producer state a wrote"
            assert on_b.loads == 1
            assert await read_from(a, "p") == b"bp0plain"


async def test_alternating_appends_to_a_ttl_stream_are_checked_by_version(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_stores(redis_url, prefix) as (a, b):
            await a.create("t", CreateRequest(TEXT, ttl=3600))
            for i in range(6):
                await appended(a if i % 2 else b, "t", b"%d" % i)
            assert await read_from(a, "t") == b"012345"
            assert (await b.head("t")).deadline is not None


def test_plain_appends_are_only_data_to_an_open_stream_without_a_deadline() -> None:
    keys = Keys("p:")
    meta = Meta(name="s", version="3", incarnation=1, content_type=TEXT, config="", tail=Offset(2, 10))
    plain = [AppendRequest(b"abc", TEXT), AppendRequest(b"de", TEXT)]
    spec = plain_appends(keys, meta, plain, plan_batch(keys, meta, plain, 0.0))
    assert spec == {"i": "1", "k": keys.data(meta.stream_id), "n": [3, 2], "t": 5}
    for request in (
        AppendRequest(b"x", TEXT, producer=ProducerClaim("p", 0, 0)),
        AppendRequest(b"x", TEXT, stream_seq="a"),
        AppendRequest(b"x", TEXT, close=True),
    ):
        batch = [plain[0], request]
        assert plain_appends(keys, meta, batch, plan_batch(keys, meta, batch, 0.0)) is None
    for other in (
        Meta(
            name="s",
            version="3",
            incarnation=1,
            content_type=TEXT,
            config="",
            tail=Offset(2, 10),
            ttl=5,
            deadline=9.0,
        ),
        Meta(
            name="s", version="3", incarnation=1, content_type=TEXT, config="", tail=Offset(2, LUA_EXACT - 4)
        ),
        Meta(
            name="s", version="3", incarnation=1, content_type=TEXT, config="", tail=Offset(LUA_EXACT - 1, 10)
        ),
    ):
        assert plain_appends(keys, other, plain, plan_batch(keys, other, plain, 0.0)) is None
