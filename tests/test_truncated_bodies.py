"""A client that leaves half-way through its request body: nothing of it is used.

Found by a black-box pass: with ``Content-Length: 100`` and 16 bytes sent,
then the connection closed, ``serve``'s fast path appended the 16 bytes to
the Durable Stream (a message the client never finished sending) and
started a run from the partial body. Hypercorn tells the app
``http.disconnect`` before the body is complete; that is not the body's end.

Real ``serve`` (embedded, real Hypercorn and sockets) on the real clock, each
test under a deadline; both of serve's request paths (its own fast paths,
and Quart's with ``TRIO_STREAMS_FAST_PATHS=0``).
"""

from __future__ import annotations

import re

import httpx
import pytest
import trio

from trio_streams import serve, serve_plan

DEADLINE = 30
FLAGS = ["--bind", "127.0.0.1:0", "--shutdown-grace=0.5s", "--finalize-timeout=1s"]
TEXT = {"Content-Type": "text/plain"}


async def _send_half_and_leave(url: str, head: bytes, part: bytes) -> None:
    """Send ``head`` (declaring more than ``part``) and ``part``, then close our side; read to EOF."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(head + part)
        await stream.send_eof()
        while await stream.receive_some():
            pass


async def _handled(client: httpx.AsyncClient, method: str, route: str) -> int:
    """How many ``method`` requests to ``route`` the app has finished (any status), from /metrics."""
    text = (await client.get("/metrics")).text
    head = f'trio_streams_http_request_duration_seconds_count{{method="{method}",route="{route}",'
    pattern = re.compile("^" + re.escape(head) + r'status="\d+"[^}]*\} (\S+)$', re.MULTILINE)
    return sum(int(float(count)) for count in pattern.findall(text))


async def _until_handled(client: httpx.AsyncClient, method: str, route: str, count: int) -> None:
    # A condition polled (the app's own end of the request), not a time; each
    # scrape is a round trip to the server, so no sleep is needed between them.
    while await _handled(client, method, route) < count:
        pass


@pytest.fixture(params=["fast", "quart"])
def request_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "quart":
        monkeypatch.setenv("TRIO_STREAMS_FAST_PATHS", "0")
    return str(request.param)


async def test_a_truncated_append_appends_nothing(request_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, serve_plan(FLAGS))
            async with httpx.AsyncClient(base_url=urls[0]) as client:
                assert (await client.put("/v1/stream/t", headers=TEXT)).status_code == 201
                await _send_half_and_leave(
                    urls[0],
                    b"POST /v1/stream/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 100\r\n\r\n",
                    b"HALF-OF-THE-BODY",
                )
                await _until_handled(client, "POST", "/v1/stream/<path:stream_name>", 1)
                read = await client.get("/v1/stream/t", params={"offset": "-1"})
                assert (read.status_code, read.content) == (200, b"")
                # The stream still takes whole appends.
                assert (await client.post("/v1/stream/t", content=b"whole", headers=TEXT)).status_code == 204
                read = await client.get("/v1/stream/t", params={"offset": "-1"})
                assert read.content == b"whole"
            nursery.cancel_scope.cancel()


async def test_a_truncated_start_starts_no_run(request_path: str) -> None:
    body = b'{"producer": "demo", "input": {"tokens": 2}}'
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, serve_plan(FLAGS))
            async with httpx.AsyncClient(base_url=urls[0]) as client:
                await _send_half_and_leave(
                    urls[0],
                    b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % (len(body) + 10),
                    body,
                )
                await _until_handled(client, "POST", "/v1/runs", 1)
                assert (await client.get("/v1/runs")).json() == {"runs": []}
            nursery.cancel_scope.cancel()
