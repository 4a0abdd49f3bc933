"""A *frozen* Redis (SIGSTOP: it accepts, never answers): requests fail fast, then recover.

Before the connection layer had a health state, every request paid the
whole stream timeout again (a keyed start two store timeouts, a Durable
Streams PUT three stream timeouts). Now the first request that meets the
freeze fails within about one stream timeout, later ones at once (503 with
``Retry-After``), until the probe sees Redis answer after SIGCONT.

Real redis-server processes, the real clock; each bound is a trio deadline
(the test fails with ``TooSlowError`` when a request is not fast enough).
"""

from __future__ import annotations

import logging
import signal
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from trio_streams.durable import CreateRequest, DurableStreamError, RedisDurableStore
from trio_streams.log.redis import RedisStore, RedisUnavailable
from trio_streams.log.redis._server import RedisServer

from .redis_support import eventually, unique_prefix
from .server_support import Server, running_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.redis  # real redis-server processes

#: The stores' stream timeout in these tests: the first failure's bound.
TIMEOUT = 3.0
#: A request that fails fast answers well within this.
FAST = 1.0
TEXT = {"Content-Type": "text/plain"}
KEYED = {"producer": "demo", "key": "k", "input": {"tokens": 0}}
UNKEYED = {"producer": "demo", "input": {"tokens": 3}}


@asynccontextmanager
async def frozen_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own, to freeze (SIGSTOP); thawed (SIGCONT)
    on the way out, whatever happens, then stopped."""
    server = RedisServer(tmp_path / "redis", appendonly=False)
    await server.start()
    try:
        yield server
    finally:
        thaw(server)
        await server.stop()


def freeze(server: RedisServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)


def thaw(server: RedisServer) -> None:
    if server.process is not None and server.process.returncode is None:
        server.process.send_signal(signal.SIGCONT)


@asynccontextmanager
async def serving(
    redis: RedisServer, *, lease_ttl: float = 10.0, **options: object
) -> AsyncIterator[tuple[Server, RedisStore, httpx.AsyncClient]]:
    store = RedisStore(
        redis.url,
        prefix=unique_prefix(),
        connect_timeout=TIMEOUT,
        stream_timeout=TIMEOUT,
        lease_ttl=lease_ttl,
    )
    async with (
        running_server(store=store, **options) as server,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        try:
            yield server, store, client
        finally:
            # Before the hub drains: a failing test must not wait it out on a frozen Redis.
            thaw(redis)


def up(store: RedisStore) -> bool:
    """Whether the store's connection is healthy (a call: mypy would narrow the property)."""
    return store.connection.healthy


def assert_unavailable(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["Retry-After"] == "1"


async def test_keyed_starts_fail_fast_while_redis_is_frozen_and_recover(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with (
            frozen_redis(tmp_path) as redis,
            serving(redis, store_timeout=10) as (_, store, client),
        ):
            assert (await client.post("/v1/runs", json=KEYED)).status_code == 201
            freeze(redis)
            # The first meets the freeze: one stream timeout (not two store timeouts).
            with trio.fail_after(TIMEOUT + 1.5):
                assert_unavailable(
                    await client.post("/v1/runs", json={**KEYED, "key": "a"}), "keys_unavailable"
                )
            assert not up(store)
            assert not store.statistics().answering
            for key in ("b", "c", "d"):
                with trio.fail_after(FAST):
                    assert_unavailable(
                        await client.post("/v1/runs", json={**KEYED, "key": key}), "keys_unavailable"
                    )
            with trio.fail_after(FAST):  # unkeyed runs go on, in memory
                assert (await client.post("/v1/runs", json=UNKEYED)).status_code == 201
            with trio.fail_after(FAST):
                assert (await client.get("/healthz")).status_code == 503
            thaw(redis)

            async def served() -> bool:
                return (await client.post("/v1/runs", json={**KEYED, "key": "e"})).status_code == 201

            with trio.fail_after(TIMEOUT + 5):
                await eventually(served, interval=0.1)
            assert up(store)
    stopped = [r for r in caplog.records if "stopped answering" in r.getMessage()]
    assert len(stopped) == 1, "one line when Redis stops answering"
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.name == "coredis" and r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info is not None]


async def test_a_keyed_start_whose_store_timeout_fires_first_still_fails_once_not_twice(tmp_path) -> None:
    """store_timeout == stream_timeout (the defaults' shape): the hub gives up on
    the claim first; its withdrawal then fails fast instead of waiting again.
    (A long lease: no background command meets the freeze within the bound.)"""
    with trio.fail_after(60):
        async with (
            frozen_redis(tmp_path) as redis,
            serving(redis, lease_ttl=120, store_timeout=TIMEOUT) as (_, store, client),
        ):
            assert (await client.post("/v1/runs", json=KEYED)).status_code == 201
            freeze(redis)
            with trio.fail_after(TIMEOUT + 1.5):
                assert_unavailable(
                    await client.post("/v1/runs", json={**KEYED, "key": "a"}), "keys_unavailable"
                )
            assert not up(store)
            with trio.fail_after(FAST):
                assert_unavailable(
                    await client.post("/v1/runs", json={**KEYED, "key": "b"}), "keys_unavailable"
                )


async def test_an_unkeyed_start_waits_one_stream_timeout_at_most(tmp_path) -> None:
    with trio.fail_after(60):
        async with (
            frozen_redis(tmp_path) as redis,
            serving(redis, store_timeout=10) as (_, store, client),
        ):
            assert (await client.post("/v1/runs", json=UNKEYED)).status_code == 201
            freeze(redis)
            with trio.fail_after(TIMEOUT + 1.5):
                first = await client.post("/v1/runs", json=UNKEYED)
            assert first.status_code == 201, first.text
            with trio.fail_after(FAST):
                assert (await client.post("/v1/runs", json=UNKEYED)).status_code == 201
            thaw(redis)

            async def done() -> bool:
                try:
                    info = await store.get_run(first.json()["run_id"])
                except RedisUnavailable:
                    return False  # until the probe has seen Redis answer
                return info is not None and info.status.finished

            # The write-behind buffer goes out once Redis answers: nothing was lost.
            with trio.fail_after(TIMEOUT + 10):
                await eventually(done, interval=0.1)


async def test_durable_streams_beside_the_runs_fail_fast_while_redis_is_frozen(tmp_path) -> None:
    with trio.fail_after(60):
        async with frozen_redis(tmp_path) as redis, serving(redis) as (server, store, client):
            assert isinstance(server.streams.durable_store, RedisDurableStore)
            assert (await client.put("/v1/stream/s", content=b"x", headers=TEXT)).status_code == 201
            freeze(redis)
            with trio.fail_after(TIMEOUT + 1.5):  # was three stream timeouts
                assert_unavailable(await client.put("/v1/stream/t", headers=TEXT), "store_unavailable")
            for request in (
                client.put("/v1/stream/u", headers=TEXT),
                client.post("/v1/stream/s", content=b"y", headers=TEXT),
                client.get("/v1/stream/s"),
                client.post("/v1/runs", json=KEYED),  # the runs share the connection's health
            ):
                with trio.fail_after(FAST):
                    response = await request
                assert response.status_code == 503, response.text
            thaw(redis)

            async def served() -> bool:
                return (await client.put("/v1/stream/t", headers=TEXT)).status_code == 201

            with trio.fail_after(TIMEOUT + 5):
                await eventually(served, interval=0.1)
            assert (await client.get("/v1/stream/s")).text == "x"
            assert store.statistics().answering
            assert store.statistics().outages == 1


async def test_a_durable_store_of_its_own_fails_fast_while_redis_is_frozen(tmp_path) -> None:
    with trio.fail_after(60):
        async with frozen_redis(tmp_path) as redis:
            store = RedisDurableStore()
            async with store.connect(redis.url, prefix=unique_prefix(), stream_timeout=TIMEOUT):
                await store.create("s", CreateRequest("text/plain", body=b"x"))
                freeze(redis)
                with trio.fail_after(TIMEOUT + 1.5), pytest.raises(DurableStreamError) as first:
                    await store.create("t", CreateRequest("text/plain"))
                assert first.value.status == 503
                for _ in range(3):
                    with trio.fail_after(FAST), pytest.raises(DurableStreamError) as later:
                        await store.head("s")
                    assert later.value.status == 503
                thaw(redis)

                async def served() -> bool:
                    try:
                        await store.head("s")
                    except DurableStreamError:
                        return False
                    return True

                with trio.fail_after(TIMEOUT + 5):
                    await eventually(served, interval=0.1)


async def test_the_run_store_fails_fast_while_redis_is_frozen(tmp_path) -> None:
    """The store itself (no HTTP): reads raise RedisUnavailable, fast after the first."""
    with trio.fail_after(60):
        async with frozen_redis(tmp_path) as redis:
            store = RedisStore(redis.url, prefix=unique_prefix(), stream_timeout=TIMEOUT)
            async with trio.open_nursery() as nursery:
                await store.start(nursery)
                try:
                    assert await store.get_run("nope") is None
                    freeze(redis)
                    with trio.fail_after(TIMEOUT + 1.5), pytest.raises(RedisUnavailable):
                        await store.get_run("nope")
                    with trio.fail_after(FAST), pytest.raises(RedisUnavailable):
                        await store.list_runs()
                    with trio.fail_after(FAST), pytest.raises(RedisUnavailable):
                        await store.ping()
                    thaw(redis)

                    async def healthy() -> bool:
                        await trio.lowlevel.checkpoint()
                        return store.connection.healthy

                    with trio.fail_after(TIMEOUT + 5):
                        await eventually(healthy, interval=0.05)
                    assert await store.get_run("nope") is None
                finally:
                    await store.aclose()
