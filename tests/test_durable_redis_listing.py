"""Listing a namespace's Durable Streams in Redis with their tails (subscriptions' backfill).

Real redis-server processes (one Redis and a 3-master Cluster), real clock,
a trio deadline; and end to end through HTTP: a pattern subscription made on
a Redis store links the streams that already exist, at their tails.
"""

from __future__ import annotations

import time

import httpx
import pytest
import trio

from trio_streams.durable import CreateRequest, RedisDurableStore
from trio_streams.durable._stream import AppendRequest
from trio_streams.durable.redis._layout import Keys
from trio_streams.durable.redis._listing import glob_escape, meta_key_family, name_of
from trio_streams.log.redis import RedisStore

from .redis_support import SyncCluster, eventually
from .server_support import running_server

pytestmark = pytest.mark.redis

DEADLINE = 30
TEXT = "text/plain"
#: Names that a careless key parser or an unescaped MATCH would get wrong.
ODD = ["plain", "a/b/c", "star*name", "q?[x]", "brace}:meta", "pct%7B", "u:{x"]


async def fill(store: RedisDurableStore, now: list[float]) -> dict[str | None, dict[str, str]]:
    """Streams in three namespaces (some deleted, one expired); what each listing must be."""
    want: dict[str | None, dict[str, str]] = {None: {}, "alice": {}, "al/ice": {}}
    for owner in want:
        for name in ODD:
            meta, _ = await store.create(name, CreateRequest(TEXT, body=b"ab"), owner=owner)
            outcome = await store.append(name, AppendRequest(b"cde", TEXT), owner=owner)
            want[owner][name] = str(outcome.next_offset)
            assert meta.tail != outcome.next_offset
        await store.create("gone", CreateRequest(TEXT), owner=owner)
        await store.delete("gone", owner=owner)
        await store.create("short-lived", CreateRequest(TEXT, ttl=5), owner=owner)
    now[0] += 6  # every "short-lived" stream is past its deadline (still in Redis)
    return want


async def check_listing(store: RedisDurableStore, want: dict[str | None, dict[str, str]]) -> None:
    for owner, streams in want.items():
        listed = await store.list_tails(owner=owner)
        assert len(listed) == len(streams), f"{owner}: each stream once"
        assert {name: str(tail) for name, tail in listed} == streams, owner
    assert await store.list_tails(owner="nobody") == []


async def test_list_tails_on_one_redis(redis_url: str, prefix: str) -> None:
    now = [time.time()]  # real: Redis key TTLs (the backstop) are absolute times
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore(wall_clock=lambda: now[0]).connect(redis_url, prefix=prefix) as store:
            await check_listing(store, await fill(store, now))


async def test_list_tails_on_a_cluster_scans_every_master(redis_cluster: SyncCluster, prefix: str) -> None:
    now = [time.time()]  # real: Redis key TTLs (the backstop) are absolute times
    with trio.fail_after(DEADLINE):
        store = RedisDurableStore(wall_clock=lambda: now[0])
        async with store.connect(redis_cluster.url, prefix=prefix, cluster=True):
            want = await fill(store, now)
            await check_listing(store, want)


def test_key_family_parsing_is_exact() -> None:
    keys = Keys("p*:")
    head, tail = meta_key_family(keys, "al/ice")
    assert head == "p*:ds:u:{al%2Fice/"
    assert name_of(f"{head}x%7By}}:meta", head, tail, "al/ice") == "x{y"
    assert name_of(f"{head}x}}:data", head, tail, "al/ice") is None
    shared_head, shared_tail = meta_key_family(keys, None)
    assert name_of("p*:ds:{brace}:meta}:meta", shared_head, shared_tail, None) == "brace}:meta"
    assert name_of("p*:ds:u:{a/b}:meta", shared_head, shared_tail, None) is None
    assert glob_escape("p*:[a]?\\") == "p\\*:\\[a\\]\\?\\\\"


async def test_a_pattern_subscription_on_redis_links_existing_streams_at_their_tails(
    redis_url: str, prefix: str
) -> None:
    """Through HTTP: streams exist first; the subscription sees no pending work
    (they are linked at their tails), then a new append wakes it."""
    sub = {"type": "pull-wake", "pattern": "jobs/*", "wake_stream": "wake/pool", "lease_ttl_ms": 5000}
    with trio.fail_after(DEADLINE):
        store = RedisStore(redis_url, prefix=prefix)
        async with (
            running_server(store=store, durable_subscriptions=True) as server,  # type: ignore[arg-type]
            httpx.AsyncClient(base_url=server.url + "/v1/stream/") as client,
        ):
            tails = {}
            for name in ("jobs/a", "jobs/b", "other/c"):
                created = await client.put(name, content=b"history", headers={"Content-Type": TEXT})
                tails[name] = created.headers["Stream-Next-Offset"]
            await client.put("wake/pool", headers={"Content-Type": "application/json"})
            assert (await client.put("__ds/subscriptions/s1", json=sub)).status_code == 201
            members = (await client.get("__ds/subscriptions/s1")).json()["streams"]
            assert {m["path"]: m["link_type"] for m in members} == {"jobs/a": "glob", "jobs/b": "glob"}
            idle = await client.post("__ds/subscriptions/s1/claim", json={"worker": "w1"})
            assert (idle.status_code, "NO_PENDING_WORK") == (409, idle.json()["error"]["code"]), idle.text
            appended = await client.post("jobs/a", content=b"new", headers={"Content-Type": TEXT})
            claims: list[httpx.Response] = []

            async def claimed_once() -> bool:  # the wake is made in the registry's nursery
                claims.append(await client.post("__ds/subscriptions/s1/claim", json={"worker": "w1"}))
                return claims[-1].status_code != 409

            await eventually(claimed_once)
            claimed = claims[-1]
            assert claimed.status_code == 200, claimed.text
            streams = {s["path"]: s for s in claimed.json()["streams"]}
            assert streams["jobs/a"]["tail_offset"] == appended.headers["Stream-Next-Offset"]
            assert streams["jobs/a"]["has_pending"]
            assert not streams["jobs/b"]["has_pending"], "linked at its tail: its history is not pending"
