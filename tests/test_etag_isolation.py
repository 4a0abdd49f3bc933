"""Durable Streams ETags tell a user nothing about other streams (a black-box finding).

ETags were ``"<incarnation>:<from>:<to>"``, the incarnation a counter of
every stream the store ever created, by anyone: with tokens on, alice could
create a stream, read its ETag, and learn how many streams the other users
created since her last one. Now the id is random per stream in memory and an
HMAC of the incarnation under the prefix's ``ds:etag-key`` in Redis (one
key per prefix, so every instance gives a stream one ETag).

What is asserted exactly: a stream's id is not a function of its incarnation
(two stores' first streams, incarnation 1 both, have different ids); no id
holds its incarnation's digits (Redis, the counter moved to 13 digits); ids
of one store are distinct; a stream read through two instances has one ETag,
a re-created one never its predecessor's; ``If-None-Match`` still gives a 304
(also across instances); a prefix written before ``ds:etag-key`` existed
reads on with keyed ETags.

Real Hypercorn servers and real redis-server processes: no mocks, no mock
clock; every test runs under a trio deadline.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio

from trio_streams.durable import CreateRequest, DurableStreamError, MemoryBackend, RedisDurableStore, StreamId
from trio_streams.durable._store import DurableStreamStore
from trio_streams.durable.redis._layout import Keys, etag_id
from trio_streams.log.redis import RedisStore

from .redis_support import unique_prefix
from .server_support import Server, running_server
from .test_durable_redis import two_instances

DEADLINE = 20
TOKENS = {"a-secret": "alice", "b-secret": "bob"}
ALICE = {"Authorization": "Bearer a-secret"}
BOB = {"Authorization": "Bearer b-secret"}
TEXT = {"Content-Type": "text/plain"}
#: An ETag: ``"<id>:<from>:<to>[:c]"``, the id 128 bits in url-safe base64.
ETAG = re.compile(r'^"([A-Za-z0-9_-]{22}):(\d+):(\d+)(:c)?"$')
#: Where the Redis tests move the incarnation counter: ids must not hold its 13 digits.
BASE = 4_096_000_000_000


def etag_id_of(response: httpx.Response) -> str:
    match = ETAG.match(response.headers["etag"])
    assert match is not None, response.headers["etag"]
    return match.group(1)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The server options that put runs and Durable Streams in memory, or in Redis."""
    if request.param == "memory":
        return {}
    return {"store": RedisStore(request.getfixturevalue("redis_url"), prefix=unique_prefix())}


async def incarnation(server: Server, name: str, owner: str) -> int:
    """The stream's incarnation (never shown to a client)."""
    store = server.streams.durable_store
    if isinstance(store, RedisDurableStore):
        meta = await store._load(StreamId(owner, name))
        assert meta is not None
        return meta.incarnation
    assert isinstance(store, DurableStreamStore)
    return store.open(name, owner=owner).incarnation


async def move_the_counter(server: Server) -> None:
    """Redis: the next stream's incarnation is ``BASE + 1`` (memory: nothing to do)."""
    store = server.streams.durable_store
    if isinstance(store, RedisDurableStore):
        await store._require().set(Keys(store.prefix).incarnation, str(BASE))


async def test_alices_etags_tell_nothing_of_the_streams_bob_created(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            await move_the_counter(server)
            assert (await client.put("/v1/stream/first", content=b"x", headers={**ALICE, **TEXT})).is_success
            for n in range(5):
                created = await client.put(f"/v1/stream/b{n}", content=b"x", headers={**BOB, **TEXT})
                assert created.status_code == 201
            assert (await client.put("/v1/stream/second", content=b"x", headers={**ALICE, **TEXT})).is_success
            first = await incarnation(server, "first", "alice")
            second = await incarnation(server, "second", "alice")
            assert second - first == 6, "the counter did count bob's streams: shown, it would tell"
            ids = []
            for name, inc in (("first", first), ("second", second)):
                read = await client.get(f"/v1/stream/{name}", headers=ALICE)
                assert (read.status_code, read.text) == (200, "x")
                ids.append(etag_id_of(read))
                assert ids[-1] != str(inc)
                if isinstance(server.streams.durable_store, RedisDurableStore):
                    assert str(inc) not in ids[-1], "(13 digits: in memory they are 1 and 7)"
            assert ids[0] != ids[1]


async def test_a_stores_ids_are_distinct_and_hold_no_incarnation(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store._require().set(Keys(prefix).incarnation, str(BASE))
            ids = []
            for n in range(20):
                await store.create(f"s{n}", CreateRequest("text/plain"), owner="alice" if n % 2 else None)
                source = await store.open_read(f"s{n}", owner="alice" if n % 2 else None)
                assert source.incarnation == BASE + n + 1
                assert re.fullmatch(r"[A-Za-z0-9_-]{22}", source.etag_id)
                assert str(source.incarnation) not in source.etag_id
                ids.append(source.etag_id)
            assert len(set(ids)) == len(ids)
    memory = DurableStreamStore()
    backend = MemoryBackend(memory)
    sources = []
    for n in range(20):
        memory.create(f"s{n}", CreateRequest("text/plain"))
        sources.append(await backend.open_read(f"s{n}"))
    assert len({source.etag_id for source in sources}) == len(sources)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", source.etag_id) for source in sources)


async def test_the_same_incarnation_in_two_stores_has_two_ids(redis_url: str) -> None:
    """An id is not a function of the incarnation: each store's first stream is incarnation 1."""
    with trio.fail_after(DEADLINE):
        ids = []
        for prefix in (unique_prefix(), unique_prefix()):
            async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
                await store.create("a", CreateRequest("text/plain"))
                source = await store.open_read("a")
                assert source.incarnation == 1
                ids.append(source.etag_id)
        for _ in range(2):
            memory = DurableStreamStore()
            memory.create("a", CreateRequest("text/plain"))
            assert memory.open("a").incarnation == 1
            ids.append((await MemoryBackend(memory).open_read("a")).etag_id)
        assert len(set(ids)) == 4, ids


async def test_one_stream_has_one_id_in_every_store_on_its_prefix(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            RedisDurableStore().connect(redis_url, prefix=prefix) as a,
            RedisDurableStore().connect(redis_url, prefix=prefix) as b,
        ):
            await a.create("s", CreateRequest("text/plain", body=b"x"))
            on_a, on_b = await a.open_read("s"), await b.open_read("s")
            assert on_a.etag_id == on_b.etag_id
            key = await a._require().get(Keys(prefix).etag_key)
            assert isinstance(key, bytes)
            assert len(key) == 32
            assert on_a.etag_id == etag_id(key, on_a.incarnation), "keyed with the prefix's one key"
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as later:
            assert (await later.open_read("s")).etag_id == on_a.etag_id, "and after a restart"


def test_not_connected_is_still_a_503() -> None:
    store = RedisDurableStore()
    with pytest.raises(DurableStreamError) as refused:
        store._etag_id(1)
    assert refused.value.status == 503


async def test_a_re_created_stream_never_has_its_predecessors_etag(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/again"
            etags = []
            for _ in range(3):
                assert (await client.put(url, content=b"same", headers={**ALICE, **TEXT})).status_code == 201
                read = await client.get(url, headers=ALICE)
                assert read.text == "same"
                etags.append(read.headers["etag"])
                assert (await client.delete(url, headers=ALICE)).status_code == 204
            assert len(set(etags)) == 3, "the same data, offsets and name: only the id tells them apart"


async def test_if_none_match_still_gives_a_304(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/cached"
            assert (await client.put(url, content=b"hello", headers={**ALICE, **TEXT})).status_code == 201
            read = await client.get(url, headers=ALICE)
            assert read.status_code == 200
            cached = await client.get(url, headers={**ALICE, "If-None-Match": read.headers["etag"]})
            assert (cached.status_code, cached.content) == (304, b"")
            assert cached.headers["etag"] == read.headers["etag"]
            assert (await client.post(url, content=b"!", headers={**ALICE, **TEXT})).status_code == 204
            moved = await client.get(url, headers={**ALICE, "If-None-Match": read.headers["etag"]})
            assert (moved.status_code, moved.text) == (200, "hello!")


@pytest.mark.redis
async def test_an_etag_from_one_instance_is_a_304_on_the_other(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_, _, on_a, on_b):
            url = "/v1/stream/shared"
            assert (await on_a.put(url, content=b"hello", headers=TEXT)).status_code == 201
            read_a, read_b = await on_a.get(url), await on_b.get(url)
            assert read_a.headers["etag"] == read_b.headers["etag"]
            for client, other in ((on_a, read_b), (on_b, read_a)):
                cached = await client.get(url, headers={"If-None-Match": other.headers["etag"]})
                assert cached.status_code == 304


@pytest.mark.redis
async def test_a_prefix_written_before_the_etag_key_reads_on_with_keyed_etags(
    redis_url: str, prefix: str
) -> None:
    """Streams carry no new field: a prefix of the previous release (no ``ds:etag-key``)
    gets its key at the first start, and its streams keyed ETags; the old ones
    (``"r<incarnation>:..."``) then just miss: a 200, once."""
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("old", CreateRequest("text/plain", body=b"kept"))
            await store._require().delete([Keys(prefix).etag_key])  # as the previous release left it
        async with two_instances(redis_url, prefix) as (a, _, on_a, on_b):
            durable = a.streams.durable_store
            assert isinstance(durable, RedisDurableStore)
            key = await durable._require().get(Keys(prefix).etag_key)
            assert isinstance(key, bytes)
            assert len(key) == 32, "made at the first start"
            read = await on_a.get("/v1/stream/old")
            assert read.text == "kept"
            meta = await durable._load(StreamId(None, "old"))
            assert meta is not None
            assert etag_id_of(read) == etag_id(key, meta.incarnation)
            assert (await on_b.get("/v1/stream/old")).headers["etag"] == read.headers["etag"]
            before = f'"r{meta.incarnation}:0:4"'
            assert (await on_a.get("/v1/stream/old", headers={"If-None-Match": before})).status_code == 200
