"""Durable Streams in Redis: restarts, several instances on one Redis, forks, TTLs, outages.

Real redis-server processes and real HTTP servers: no mocks, no mock clock;
every test runs under a trio deadline.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from trio_streams.durable import (
    CreateRequest,
    DurableStreamError,
    RedisDurableStore,
    StreamId,
)
from trio_streams.durable._stream import AppendRequest, ForkSpec
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._server import RedisServer

from .server_support import Server, running_server
from .test_durable_http import sse_events
from .test_serve_cli import serve_process as serve_process

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

pytestmark = pytest.mark.redis  # real redis-server processes


DEADLINE = 20
TEXT = {"Content-Type": "text/plain"}


@asynccontextmanager
async def instance(url: str, prefix: str, **options: object) -> AsyncIterator[Server]:
    """One server instance with its runs and Durable Streams in Redis at ``url``."""
    async with running_server(store=RedisStore(url, prefix=prefix), **options) as server:  # type: ignore[arg-type]
        assert isinstance(server.streams.durable_store, RedisDurableStore)
        yield server


@asynccontextmanager
async def two_instances(
    url: str, prefix: str, wall_clock: Callable[[], float] | None = None
) -> AsyncIterator[tuple[Server, Server, httpx.AsyncClient, httpx.AsyncClient]]:
    """Two server instances on one Redis, and a client of each; ``wall_clock``
    (shared by both) stands in for POSIX time in their Durable Streams stores."""

    def options() -> dict[str, object]:
        return {} if wall_clock is None else {"durable_streams": RedisDurableStore(wall_clock=wall_clock)}

    async with (
        instance(url, prefix, **options()) as a,
        instance(url, prefix, **options()) as b,
        httpx.AsyncClient(base_url=a.url) as on_a,
        httpx.AsyncClient(base_url=b.url) as on_b,
    ):
        yield a, b, on_a, on_b


async def test_offsets_and_data_survive_a_new_store_object(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as first:
            created, new = await first.create("s", CreateRequest("text/plain", body=b"hello"))
            assert new
            appended = await first.append("s", AppendRequest(b" world", "text/plain"))
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as second:
            head = await second.head("s")
            assert head.tail == appended.next_offset
            assert head.tail > created.tail
            source = await second.open_read("s")
            found = await source.read(0)
            assert b"".join(piece for piece in found.pieces if isinstance(piece, bytes)) == b"hello world"
            assert found.end == appended.next_offset
            middle = await source.read(created.tail.position)
            assert middle.pieces == [b" world"]
            again = await second.append("s", AppendRequest(b"!", "text/plain"))
            assert again.next_offset > appended.next_offset


async def test_two_instances_share_streams_and_a_long_poll_on_b_wakes_on_an_append_to_a(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            instance(redis_url, prefix, long_poll_timeout=15) as a,
            instance(redis_url, prefix, long_poll_timeout=15) as b,
            httpx.AsyncClient(base_url=a.url) as on_a,
            httpx.AsyncClient(base_url=b.url) as on_b,
        ):
            url = "/v1/stream/shared/x"
            created = await on_a.put(url, content=b"one", headers=TEXT)
            assert created.status_code == 201
            tail = created.headers["stream-next-offset"]
            assert (await on_b.put(url, headers=TEXT)).status_code == 200, "B sees A's stream"
            read = await on_b.get(url)
            assert (read.text, read.headers["stream-next-offset"]) == ("one", tail)
            results: list[httpx.Response] = []

            async def poll() -> None:
                results.append(await on_b.get(url, params={"offset": tail, "live": "long-poll"}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await b.streams.durable_live_reads.wait_value(1)  # B's long-poll is parked
                assert not results
                appended_at = trio.current_time()
                appended = await on_a.post(url, content=b"two", headers=TEXT)
                assert appended.status_code == 204
            (polled,) = results
            assert trio.current_time() - appended_at < 2.0, "woken by the append, not the 15 s timeout"
            assert (polled.status_code, polled.text) == (200, "two")
            assert polled.headers["stream-next-offset"] == appended.headers["stream-next-offset"]


async def test_sse_on_b_follows_appends_and_the_close_on_a(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            instance(redis_url, prefix) as a,
            instance(redis_url, prefix) as b,
            httpx.AsyncClient(base_url=a.url) as on_a,
        ):
            url = "/v1/stream/live"
            assert (await on_a.put(url, content=b"a", headers=TEXT)).status_code == 201
            events: list[tuple[str, str]] = []

            async def follow() -> None:
                events.extend(await sse_events(b.url, f"{url}?offset=-1&live=sse"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await b.streams.durable_live_reads.wait_value(1)  # B's SSE read "a" and waits
                await on_a.post(url, content=b"b", headers=TEXT)
                await on_a.post(url, headers={"Stream-Closed": "true"})
            data = "".join(value for event, value in events if event == "data")
            assert data == "ab"
            assert json.loads(events[-1][1])["streamClosed"] is True


async def test_idempotent_producer_retries_across_two_instances(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            url = "/v1/stream/produced"
            await on_a.put(url, headers={"Content-Type": "application/json"})

            def producer(seq: int, epoch: int = 0) -> dict[str, str]:
                return {
                    "Content-Type": "application/json",
                    "Producer-Id": "p1",
                    "Producer-Epoch": str(epoch),
                    "Producer-Seq": str(seq),
                }

            first = await on_a.post(url, content=b'{"n":0}', headers=producer(0))
            assert first.status_code == 200
            retried = await on_b.post(url, content=b'{"n":0}', headers=producer(0))
            assert retried.status_code == 204, "a retry on the other instance is a duplicate"
            assert retried.headers["stream-next-offset"] == first.headers["stream-next-offset"]
            gap = await on_b.post(url, content=b'{"n":2}', headers=producer(2))
            assert (gap.status_code, gap.headers["producer-expected-seq"]) == (409, "1")
            assert (await on_b.post(url, content=b'{"n":1}', headers=producer(1))).status_code == 200
            assert (await on_a.post(url, content=b'{"n":0}', headers=producer(0, epoch=1))).status_code == 200
            stale = await on_b.post(url, content=b'{"n":9}', headers=producer(2))
            assert (stale.status_code, stale.headers["producer-epoch"]) == (403, "1")
            read = await on_b.get(url)
            assert read.json() == [{"n": 0}, {"n": 1}, {"n": 0}]


async def test_concurrent_appends_from_two_instances_never_interleave(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (a, b, on_a, on_b):
            url = "/v1/stream/busy"
            await on_a.put(url, headers=TEXT)
            offsets: list[str] = []

            async def append(client: httpx.AsyncClient, text: str) -> None:
                response = await client.post(url, content=text.encode(), headers=TEXT)
                assert response.status_code == 204
                offsets.append(response.headers["stream-next-offset"])

            async with trio.open_nursery() as nursery:
                for i in range(60):
                    nursery.start_soon(append, on_a if i % 2 else on_b, f"<{i:02d}>")
            assert len(set(offsets)) == 60
            body = (await on_a.get(url)).text
            assert sorted(body[i : i + 4] for i in range(0, len(body), 4)) == [
                f"<{i:02d}>" for i in range(60)
            ]
            assert max(offsets) == (await on_b.head(url)).headers["stream-next-offset"]
            for server in (a, b):
                store = server.streams.durable_store
                assert isinstance(store, RedisDurableStore)
                assert store._writers == {}, "a stream's writer turn goes with its last writer"


async def test_stream_seq_is_checked_across_instances(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            url = "/v1/stream/seq"
            await on_a.put(url, headers=TEXT)
            assert (
                await on_a.post(url, content=b"x", headers={**TEXT, "Stream-Seq": "b"})
            ).status_code == 204
            regressed = await on_b.post(url, content=b"y", headers={**TEXT, "Stream-Seq": "a"})
            assert regressed.status_code == 409


async def test_ttl_expiry_is_shared(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        now = [time.time()]
        async with two_instances(redis_url, prefix, wall_clock=lambda: now[0]) as (_a, _b, on_a, on_b):
            url = "/v1/stream/short"
            assert (await on_a.put(url, headers={**TEXT, "Stream-TTL": "1"})).status_code == 201
            head = await on_b.head(url)
            assert (head.status_code, head.headers["stream-ttl"]) == (200, "1")
            now[0] += 1.2  # both instances' clock passes the deadline stored in Redis
            assert (await on_b.get(url)).status_code == 404
            assert (await on_a.head(url)).status_code == 404
            assert (await on_a.put(url, headers=TEXT)).status_code == 201, "the name is free again"


async def test_forks_across_instances_and_soft_delete(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            source = "/v1/stream/src"
            await on_a.put(source, content=b"abc", headers=TEXT)
            middle = (await on_a.post(source, content=b"def", headers=TEXT)).headers["stream-next-offset"]
            await on_a.post(source, content=b"ghi", headers=TEXT)
            fork = await on_b.put(
                "/v1/stream/fork",
                headers={
                    "Stream-Forked-From": source,
                    "Stream-Fork-Offset": middle,
                    "Stream-Fork-Sub-Offset": "1",
                },
            )
            assert fork.status_code == 201, fork.text
            assert (await on_a.post("/v1/stream/fork", content=b"!", headers=TEXT)).status_code == 204
            assert (await on_a.get("/v1/stream/fork")).text == "abcdefg!"
            part = await on_b.get("/v1/stream/fork", params={"offset": middle})
            assert part.text == "g!"
            assert (await on_b.delete(source)).status_code == 204
            assert (await on_a.get(source)).status_code == 410, "soft-deleted while the fork reads it"
            assert (await on_a.get("/v1/stream/fork")).text == "abcdefg!"
            assert (await on_a.delete("/v1/stream/fork")).status_code == 204
            assert (await on_b.get(source)).status_code == 404, "gone with its last fork"


async def test_redis_unreachable_is_a_503_with_a_message(tmp_path: Path, prefix: str) -> None:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        with trio.fail_after(DEADLINE):
            async with RedisDurableStore().connect(server.url, prefix=prefix, stream_timeout=2.0) as store:
                await store.create("s", CreateRequest("text/plain", body=b"x"))
                server.kill()
                await server.wait_exited()
                with pytest.raises(DurableStreamError, match="redis is unavailable") as head:
                    await store.head("s")
                assert head.value.status == 503
                with pytest.raises(DurableStreamError, match="redis is unavailable") as append:
                    await store.append("s", AppendRequest(b"y", "text/plain"))
                assert append.value.status == 503
    finally:
        await server.stop()


async def test_not_connected_is_a_503_json_error() -> None:
    from quart_trio import QuartTrio

    from trio_streams.web import durable_streams_blueprint

    app = QuartTrio(__name__)
    app.register_blueprint(durable_streams_blueprint(RedisDurableStore()), url_prefix="/v1/stream")
    with trio.fail_after(DEADLINE):
        async with app.test_app() as test_app:
            response = await test_app.test_client().get("/v1/stream/x")
            assert response.status_code == 503
            assert (await response.get_json())["error"]["code"] == "store_unavailable"


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_data_dir_streams_survive_a_restart_of_the_whole_server(serve_process, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with trio.fail_after(60):
        first = await serve_process("--data-dir", str(data_dir))
        async with httpx.AsyncClient(base_url=first.url) as client:
            url = "/v1/stream/kept"
            await client.put(url, content=b'{"a":1}', headers={"Content-Type": "application/json"})
            appended = await client.post(url, content=b"[2,3]", headers={"Content-Type": "application/json"})
            before = (await client.get(url)).json()
            tail = appended.headers["stream-next-offset"]
        first.process.send_signal(signal.SIGTERM)
        assert await first.process.wait() == 0

        second = await serve_process("--data-dir", str(data_dir))
        async with httpx.AsyncClient(base_url=second.url) as client:
            read = await client.get(url)
            assert (read.json(), read.headers["stream-next-offset"]) == (before, tail)
            assert before == [{"a": 1}, 2, 3]
            more = await client.post(url, content=b"4", headers={"Content-Type": "application/json"})
            assert more.headers["stream-next-offset"] > tail
            assert (await client.get(url, params={"offset": tail})).json() == [4]
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0


async def test_redis_key_ttls_back_up_deadlines_but_not_while_forks_read(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            client = store._require()
            meta, data = f"{prefix}ds:{{s}}:meta", f"{prefix}ds:{{s}}:data"
            await store.create("s", CreateRequest("text/plain", ttl=100, body=b"x"))
            for key in (meta, data):
                assert 100_000 < await client.pttl(key) <= 160_000  # deadline + EXPIRY_GRACE
            await store.create("f", CreateRequest(None, fork=ForkSpec("s", None, 0)))
            assert await client.pttl(meta) == -1, "a source that forks read must outlive its deadline"
            assert (await store.head("f")).ttl == 100, "a fork inherits its source's TTL"
            assert await client.pttl(f"{prefix}ds:{{f}}:meta") == -1, (
                "its source counts it: lookups expire it"
            )
            await store.delete("f")
            assert await client.pttl(meta) > 100_000, "its last fork gone, the backstop is back"
            await store.create("p", CreateRequest("text/plain"))
            assert await client.pttl(f"{prefix}ds:{{p}}:meta") == -1, "no TTL: kept"


async def test_a_cancelled_wait_leaves_nothing_behind(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest("text/plain", body=b"x"))
            source = await store.open_read("s")
            with trio.CancelScope() as scope:
                scope.cancel()  # before the first checkpoint
                await source.wait(1, trio.current_time() + 60)
            assert scope.cancelled_caught
            async with trio.open_nursery() as nursery:

                async def wait() -> None:
                    await source.wait(1, trio.current_time() + 60)

                nursery.start_soon(wait)
                await store._notifications.readers.wait_value(1)
                assert store._notifications.waiting(StreamId(None, "s")) == 1
                nursery.cancel_scope.cancel()
            assert store._notifications.idle
            assert store._active == 0


async def test_end_live_reads_wakes_waiters_at_once(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest("text/plain", body=b"x"))
            source = await store.open_read("s")
            results: list[bool] = []

            async def wait() -> None:
                results.append(await source.wait(1, trio.current_time() + 60))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await store._notifications.readers.wait_value(1)
                store.end_live_reads()
            assert results == [False], "waiting again is pointless"
            store.resume_live_reads()
            await store.append("s", AppendRequest(b"y", "text/plain"))
            assert await source.wait(1, trio.current_time() + 60), "data past the position: no wait"
            assert source.tail().position == 2


async def test_redis_down_under_a_server_is_a_503_json_error_not_a_traceback(
    tmp_path: Path, prefix: str
) -> None:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        with trio.fail_after(DEADLINE):
            async with (
                instance(server.url, prefix) as a,
                httpx.AsyncClient(base_url=a.url) as client,
            ):
                assert (await client.put("/v1/stream/s", content=b"x", headers=TEXT)).status_code == 201
                server.kill()
                await server.wait_exited()
                for response in (
                    await client.get("/v1/stream/s"),
                    await client.post("/v1/stream/s", content=b"y", headers=TEXT),
                    await client.put("/v1/stream/t", headers=TEXT),
                    await client.get("/v1/stream/s", params={"offset": "-1", "live": "long-poll"}),
                ):
                    assert response.status_code == 503, response.text
                    assert response.headers["content-type"] == "application/json"
                    assert response.json()["error"]["code"] == "store_unavailable"
                    assert response.headers["retry-after"] == "1"
                await server.start()  # back on the same port: served again
                assert (await client.get("/v1/stream/s")).text == "x"
    finally:
        await server.stop()


# On a Redis Cluster Durable Streams are in Redis (they used to stay in memory):
# tests/test_durable_redis_cluster.py.
