"""Under ``serve`` (its Hypercorn setup, the fast paths), a client leaving a waiting read ends it.

There the read has no watcher task and no cancel scope of its own: the
connection's end cancels the request's task group (``cancel_on_over``,
trio_streams/cli/_one_write.py). Each read's cleanup must still run: the
live-read gauge back to 0, a run's last subscriber gone (it cancels, grace
0), the SSE gauge back to 0. Real sockets, the real clock, under a deadline.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_streams import serve, serve_plan
from trio_streams.bench._httpclient import HTTPConnection
from trio_streams.web import TrioStreams, create_app

DEADLINE = 20


async def _leave_after(url: str, path: str, until: bytes) -> None:
    """GET ``path``, read until ``until`` arrived (or the headers, if empty), then close the connection."""
    connection = HTTPConnection(url)
    try:
        async with connection.stream("GET", path) as (status, _headers, body):
            assert status == 200
            seen = b""
            if until:
                async for chunk in body:
                    seen += chunk
                    if until in seen:
                        break
    finally:
        await connection.aclose()


@pytest.mark.parametrize("kind", ["durable sse", "run events"])
async def test_a_client_leaving_a_stream_ends_it(kind: str) -> None:
    app = create_app(disconnect_grace=0, fast_paths=True)
    streams: TrioStreams = app.extensions["trio_streams"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            if kind == "durable sse":
                async with httpx.AsyncClient(base_url=url) as setup:
                    text = {"Content-Type": "text/plain"}
                    assert (await setup.put("/v1/stream/s", headers=text)).status_code == 201
                    assert (await setup.post("/v1/stream/s", content=b"x", headers=text)).status_code == 204
                async with trio.open_nursery() as client:
                    client.start_soon(_leave_after, url, "/v1/stream/s?offset=-1&live=sse", b"event: control")
                    await streams.durable_live_reads.wait_value(1)  # parked for more
                await streams.durable_live_reads.wait_value(0)
            else:
                run = {"producer": "demo", "on_disconnect": "cancel", "input": {"tokens": 100_000, "rate": 1}}
                async with httpx.AsyncClient(base_url=url) as setup:
                    started = await setup.post("/v1/runs", json=run)
                assert started.status_code == 201
                run_id = started.json()["run_id"]
                await _leave_after(url, f"/v1/runs/{run_id}/events", b"id: 1\n")
                info = await streams.hub.wait(run_id)
                assert info.status.value == "cancelled"
                assert streams.sse_streams_open == 0
            nursery.cancel_scope.cancel()


async def test_a_client_leaving_a_long_poll_ends_it() -> None:
    app = create_app(fast_paths=True)
    streams: TrioStreams = app.extensions["trio_streams"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            async with httpx.AsyncClient(base_url=url) as setup:
                put = await setup.put("/v1/stream/p", headers={"Content-Type": "text/plain"})
                assert put.status_code == 201
            poller = HTTPConnection(url)
            try:
                async with trio.open_nursery() as client:

                    async def poll() -> None:
                        await poller.request("GET", "/v1/stream/p?offset=-1&live=long-poll")

                    client.start_soon(poll)
                    await streams.durable_live_reads.wait_value(1)
                    client.cancel_scope.cancel()  # (the client gives up: its socket is closed below)
            finally:
                await poller.aclose()
            await streams.durable_live_reads.wait_value(0)
            nursery.cancel_scope.cancel()
