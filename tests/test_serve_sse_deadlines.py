"""Under ``serve``, an idle durable SSE response parks on its stream's Changed and the run's
deadline wheel (log/_deadlines.py): no cancel scope of its own. A write still wakes it, and its
recycle deadline (``sse_recycle``) still ends it. Real sockets, the real clock, under a deadline.
"""

from __future__ import annotations

import httpx
import trio
import trio.testing

from trio_streams import serve, serve_plan
from trio_streams.bench._httpclient import HTTPConnection
from trio_streams.log._deadlines import current_wheel
from trio_streams.web import TrioStreams, create_app

DEADLINE = 15
TEXT = {"Content-Type": "text/plain"}


async def test_an_idle_sse_response_waits_on_the_wheel_and_a_write_wakes_it() -> None:
    app = create_app(fast_paths=True)
    streams: TrioStreams = app.extensions["trio_streams"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            wheel = current_wheel()
            assert wheel is not None
            async with httpx.AsyncClient(base_url=url) as setup:
                assert (await setup.put("/v1/stream/s", headers=TEXT)).status_code == 201
                connection = HTTPConnection(url)
                try:
                    async with connection.stream("GET", "/v1/stream/s?offset=-1&live=sse") as (
                        status,
                        _,
                        body,
                    ):
                        assert status == 200
                        chunks = body.__aiter__()
                        seen = b""
                        while b"event: control" not in seen:
                            seen += await chunks.__anext__()
                        await streams.durable_live_reads.wait_value(1)
                        # Parked on the shared timer: one waiter in its recycle second's bucket.
                        assert sum(wheel.buckets.values()) == 1
                        assert (
                            await setup.post("/v1/stream/s", content=b"hello", headers=TEXT)
                        ).status_code == 204
                        while b"hello" not in seen:
                            seen += await chunks.__anext__()
                        await streams.durable_live_reads.wait_value(1)  # parked again
                        assert sum(wheel.buckets.values()) == 1
                finally:
                    await connection.aclose()
            await streams.durable_live_reads.wait_value(0)  # the client left: out of its bucket
            assert wheel.buckets == {}
            nursery.cancel_scope.cancel()


async def test_an_idle_sse_response_is_recycled_by_the_wheel() -> None:
    app = create_app(fast_paths=True, sse_recycle=1.0)
    streams: TrioStreams = app.extensions["trio_streams"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            async with httpx.AsyncClient(base_url=url) as setup:
                assert (await setup.put("/v1/stream/r", headers=TEXT)).status_code == 201
            connection = HTTPConnection(url)
            try:
                async with connection.stream("GET", "/v1/stream/r?offset=-1&live=sse") as (status, _, body):
                    assert status == 200
                    seen = b""
                    async for chunk in body:  # ends: the response is recycled
                        seen += chunk
            finally:
                await connection.aclose()
            assert seen.count(b"event: control") == 1
            await streams.durable_live_reads.wait_value(0)
            nursery.cancel_scope.cancel()


async def test_an_idle_run_event_stream_gets_its_heartbeats_from_the_wheel() -> None:
    app = create_app(fast_paths=True, heartbeat=1.0)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            wheel = current_wheel()
            assert wheel is not None
            run = {"producer": "demo", "input": {"tokens": 2, "rate": 0.001}}  # live, and silent
            async with httpx.AsyncClient(base_url=url) as setup:
                started = await setup.post("/v1/runs", json=run)
            assert started.status_code == 201
            path = f"/v1/runs/{started.json()['run_id']}/events"
            connection = HTTPConnection(url)
            try:
                async with connection.stream("GET", path) as (status, _, body):
                    assert status == 200
                    seen = b""
                    async for chunk in body:
                        seen += chunk
                        if seen.count(b": heartbeat") == 2:
                            break
                    # Between two: parked on the wheel (in a bucket), no scope of its own.
                    await trio.testing.wait_all_tasks_blocked()
                    assert sum(wheel.buckets.values()) == 1
            finally:
                await connection.aclose()
            async with httpx.AsyncClient(base_url=url) as setup:  # (no drain to sit out)
                assert (await setup.post(f"/v1/runs/{started.json()['run_id']}/cancel")).status_code == 200
            nursery.cancel_scope.cancel()
