"""The hot routes straight from ASGI (``FastPaths``) answer exactly as through Quart.

Each scenario runs twice, over real Hypercorn servers: once with the app
behind :class:`~trio_streams.web._asgi_routes.FastPaths`, once through
Quart alone, each on a fresh app with the same options; the responses
(status, headers but ``Date``/``Server``, body; run ids, ETag ids and
times normalized) and the counters behind /metrics must be the same.

Real I/O: no mock clock; every test runs under a trio deadline.
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import h11
import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio
from quart import request
from quart_trio import QuartTrio

from trio_streams.bench._httpclient import HTTPConnection
from trio_streams.cli._server import _with_fast_paths
from trio_streams.web import TrioStreams, create_app
from trio_streams.web._asgi_routes import FastPaths

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

DEADLINE = 30
#: For tests whose failure is a hang (a lost disconnect, a body waited for).
QUICK_DEADLINE = 10
RUN_ID = re.compile(r"[A-Za-z0-9_-]{16}")
#: A Durable Streams ETag's id: random per stream (each app has its own store).
ETAG_ID = re.compile(r'^"[A-Za-z0-9_-]{22}:')
TOKENS = {"alice-secret": "alice", "bob-secret": "bob"}
ALICE = {"Authorization": "Bearer alice-secret"}
BOB = {"Authorization": "Bearer bob-secret"}
#: Headers that differ between any two servers (or with the clock), not between paths.
VOLATILE = {"date", "server", "stream-cursor"}


@asynccontextmanager
async def serving(app: QuartTrio, *, fast: bool) -> AsyncIterator[tuple[str, TrioStreams]]:
    """``app`` on Hypercorn at 127.0.0.1:<free port>, behind FastPaths if ``fast``."""
    streams: TrioStreams = app.extensions["trio_streams"]
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 2
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        await streams.stop()

    asgi: Any = FastPaths(app) if fast else app
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: hypercorn.trio.serve(
                asgi, config, shutdown_trigger=shutdown_trigger, task_status=task_status
            )
        )
        try:
            yield urls[0], streams
        finally:
            stop.set()


#: JSON fields that are times (they differ between the two runs, not between paths):
#: ``streamCursor`` is the current 20 s slot, so the runs may straddle a boundary.
VOLATILE_JSON = {"ts", "streamCursor"}


def _normalize_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: None if k.endswith("_at") or k in VOLATILE_JSON else _normalize_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalize_json(v) for v in value]
    if isinstance(value, str):
        return RUN_ID.sub("RUN", value)
    return value


def observed(response: httpx.Response, base: str) -> tuple[int, list[tuple[str, str]], Any]:
    """What must be equal across the two paths (see the module docstring)."""
    headers = sorted(
        (name, RUN_ID.sub("RUN", ETAG_ID.sub('"ID:', value).replace(base, "BASE")))
        for name, value in response.headers.items()
        if name not in VOLATILE
    )
    body: Any = response.content
    if response.headers.get("content-type", "").startswith("application/json") and body:
        # Times vary in length: the length must be right, not the same.
        assert response.headers["content-length"] == str(len(body))
        headers = [(n, "N" if n == "content-length" else v) for n, v in headers]
        body = _normalize_json(json.loads(body))
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        body = _normalize_json(sse_messages(body.decode()))
    return response.status_code, headers, body


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The SSE messages of ``text``: their fields (data parsed as JSON when it is)."""
    messages = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        if "data" in fields:
            with suppress(ValueError):
                fields["data"] = json.loads(fields["data"])
        if fields:
            messages.append(fields)
    return messages


async def both_paths(
    scenario: Callable[[httpx.AsyncClient, TrioStreams], Awaitable[list[httpx.Response]]],
    **options: Any,
) -> None:
    """Run ``scenario`` on each path (fresh app each time) and compare everything observed."""
    results = []
    for fast in (True, False):
        with trio.fail_after(DEADLINE):
            async with (
                serving(create_app(**options), fast=fast) as (url, streams),
                httpx.AsyncClient(base_url=url) as client,
            ):
                responses = await scenario(client, streams)
                seen = [observed(r, url) for r in responses]
                counters = {k: v for k, v in streams.counters.items() if v}
                results.append((seen, counters, streams.sse_streams_open))
    fast_result, quart_result = results
    for index, (a, b) in enumerate(zip(fast_result[0], quart_result[0], strict=True)):
        assert a == b, f"response {index}: fast path {a} != Quart {b}"
    assert fast_result[1:] == quart_result[1:]


async def test_durable_streams_operations_answer_alike() -> None:
    async def scenario(client: httpx.AsyncClient, streams: TrioStreams) -> list[httpx.Response]:
        text = {"Content-Type": "text/plain"}

        async def chunked() -> AsyncIterator[bytes]:
            yield b"chunk-one "
            yield b"chunk-two"

        out = [
            await client.put("/v1/stream/a", headers=text),
            await client.put("/v1/stream/a", headers=text),  # 200: matched
            await client.post("/v1/stream/a", content=b"hello ", headers=text),
            await client.post("/v1/stream/a", content=chunked(), headers=text),
            await client.post("/v1/stream/a", content=b"{}", headers={"Content-Type": "application/json"}),
            await client.get("/v1/stream/a?offset=-1"),
            await client.head("/v1/stream/a"),
            await client.options("/v1/stream/a", headers={"Access-Control-Request-Headers": "X-Thing"}),
            await client.get("/v1/stream/a?offset=nonsense"),
            await client.get("/v1/stream/missing?offset=-1"),
            await client.get("/v1/stream/__ds/x"),
        ]
        etag = out[5].headers["etag"]
        out.append(await client.get("/v1/stream/a?offset=-1", headers={"If-None-Match": etag}))
        tail = out[5].headers["stream-next-offset"]
        # A long-poll that times out, one that gets data appended while it waits.
        out.append(await client.get(f"/v1/stream/a?offset={tail}&live=long-poll"))
        async with trio.open_nursery() as nursery:
            polled: list[httpx.Response] = []

            async def poll() -> None:
                polled.append(await client.get(f"/v1/stream/a?offset={tail}&live=long-poll"))

            nursery.start_soon(poll)
            await streams.durable_live_reads.wait_value(1)
            out.append(await client.post("/v1/stream/a", content=b" more", headers=text))
        out.extend(polled)
        # SSE to the end of one recycle period (short in this app).
        out.append(await client.get("/v1/stream/a?offset=-1&live=sse"))
        out.append(await client.delete("/v1/stream/a"))
        out.append(await client.get("/v1/stream/a?offset=-1"))
        return out

    await both_paths(scenario, long_poll_timeout=0.2, sse_recycle=0.3)


async def test_runs_start_and_events_answer_alike() -> None:
    async def scenario(client: httpx.AsyncClient, streams: TrioStreams) -> list[httpx.Response]:
        out = [
            await client.post("/v1/runs", content=b"{not json"),
            await client.post("/v1/runs", json={"producer": "nope"}),
            await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 5, "rate": None}}),
        ]
        run_id = out[-1].json()["run_id"]
        await streams.hub.wait(run_id)
        out.append(await client.get(f"/v1/runs/{run_id}/events"))
        out.append(await client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "3"}))
        out.append(await client.get(f"/v1/runs/{run_id}/events?after=99"))
        out.append(await client.get("/v1/runs/AAAAAAAAAAAAAAAA/events"))
        key = {"producer": "demo", "key": "k", "input": {"tokens": 1, "rate": None}}
        idem = {"Idempotency-Key": "once"}
        out.append(await client.post("/v1/runs", json=key, headers=idem))
        out.append(await client.post("/v1/runs", json=key, headers=idem))  # 200: the same run
        out.append(await client.get("/v1/nothing"))  # Quart's 404 on both
        return out

    await both_paths(scenario)


async def test_owners_and_tokens_answer_alike() -> None:
    async def scenario(client: httpx.AsyncClient, streams: TrioStreams) -> list[httpx.Response]:
        text = {"Content-Type": "text/plain", **ALICE}
        out = [
            await client.put("/v1/stream/mine", headers={"Content-Type": "text/plain"}),  # 401
            await client.put("/v1/stream/mine", headers={"Content-Type": "text/plain", "Authorization": "x"}),
            await client.put("/v1/stream/mine", headers=text),
            await client.post("/v1/stream/mine", content=b"x", headers=text),
            await client.get("/v1/stream/mine?offset=-1", headers=BOB),  # another owner's: 404
            await client.post("/v1/runs", json={"producer": "demo"}),  # 401
            await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 1}}, headers=ALICE),
        ]
        run_id = out[-1].json()["run_id"]
        out.append(await client.get(f"/v1/runs/{run_id}/events", headers=BOB))  # 404
        out.append(await client.get(f"/v1/stream/runs/{run_id}?offset=-1", headers=BOB))  # 404
        return out

    await both_paths(scenario, auth=TOKENS)


async def test_bodies_over_the_limits_answer_alike() -> None:
    async def scenario(client: httpx.AsyncClient, streams: TrioStreams) -> list[httpx.Response]:
        text = {"Content-Type": "text/plain"}

        def chunks(total: int) -> Callable[[], AsyncIterator[bytes]]:
            async def body() -> AsyncIterator[bytes]:
                for _ in range(total // 100):
                    yield b"x" * 100

            return body

        out = [await client.put("/v1/stream/b", headers=text)]
        # Declared too large (refused before reading), chunked over the route's
        # limit but within the app's: the connection goes on after each.
        out.append(await client.post("/v1/stream/b", content=b"x" * 700, headers=text))
        out.append(await client.post("/v1/stream/b", content=chunks(700)(), headers=text))
        run = {"Content-Type": "application/json"}
        out.append(await client.post("/v1/runs", content=b" " * 2000, headers=run))
        out.append(await client.post("/v1/stream/b", content=b"ok", headers=text))
        # Chunked over the app's limit: refused, the rest dropped, the connection
        # closed after the response (as before: a fresh client each).
        for path in ("/v1/stream/b", "/v1/runs"):
            out.append(await raw_chunked_post(str(client.base_url), path, b"x" * 5000))
        return out

    await both_paths(scenario, durable_max_body=512, max_body=1024)


@pytest.mark.parametrize("fast", [True, False])
async def test_too_large_is_refused_before_the_body_is_sent(fast: bool) -> None:
    with trio.fail_after(QUICK_DEADLINE):
        async with serving(create_app(durable_max_body=512), fast=fast) as (url, _streams):
            host, port = url.removeprefix("http://").split(":")
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                # Headers only: the server must answer without waiting for the 10 MB.
                await stream.send_all(
                    b"POST /v1/stream/big HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 10000000\r\n\r\n"
                )
                received = b""
                while b"\r\n\r\n" not in received:
                    received += await stream.receive_some()
            assert received.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("fast", [True, False])
async def test_a_client_leaving_mid_sse_releases_everything(fast: bool) -> None:
    with trio.fail_after(QUICK_DEADLINE):
        async with (
            serving(create_app(disconnect_grace=0), fast=fast) as (url, streams),
            httpx.AsyncClient(base_url=url) as client,
        ):
            started = await client.post(
                "/v1/runs",
                json={
                    "producer": "demo",
                    "on_disconnect": "cancel",
                    "input": {"tokens": 100_000, "rate": 50},
                },
            )
            run_id = started.json()["run_id"]
            await client.put("/v1/stream/s", headers={"Content-Type": "text/plain"})
            await client.post("/v1/stream/s", content=b"x", headers={"Content-Type": "text/plain"})
            for path, until in (
                (f"/v1/runs/{run_id}/events", b"id: 2\n"),
                ("/v1/stream/s?offset=-1&live=sse", b"event: control"),
            ):
                connection = HTTPConnection(url)
                try:
                    async with connection.stream("GET", path) as (status, _headers, body):
                        assert status == 200
                        seen = b""
                        async for chunk in body:
                            seen += chunk
                            if until in seen:
                                break
                        if "live=sse" in path:
                            await streams.durable_live_reads.wait_value(1)  # parked for more
                        else:
                            assert streams.sse_streams_open == 1
                finally:
                    await connection.aclose()  # the client leaves mid-stream
            # The server notices the departures: each stream's cleanup ran.
            await streams.durable_live_reads.wait_value(0)
            # The run cancels when its last subscriber has gone (grace 0): the
            # subscription's cleanup ran, and with it the stream's gauge.
            info = await streams.hub.wait(run_id)
            assert info.status.value == "cancelled"
            assert streams.sse_streams_open == 0


async def raw_chunked_post(url: str, path: str, body: bytes) -> httpx.Response:
    """POST ``body`` chunked over a connection of its own; the response, read until the server closes."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    connection = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = h11.Request(
            method="POST",
            target=path,
            headers=[("Host", host), ("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")],
        )
        data = connection.send(request) or b""
        for start in range(0, len(body), 100):
            data += connection.send(h11.Data(data=body[start : start + 100])) or b""
        await stream.send_all(data + (connection.send(h11.EndOfMessage()) or b""))
        status, headers, content = 0, [], b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, [(n.decode(), v.decode()) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                return httpx.Response(status, headers=headers, content=content)


def _app_with_hook(*, fast_paths: bool) -> tuple[QuartTrio, list[str]]:
    app = QuartTrio("user_app")
    TrioStreams(app, fast_paths=fast_paths)
    seen: list[str] = []

    @app.before_request
    async def record() -> None:
        seen.append(f"{request.method} {request.path}")

    return app, seen


@pytest.mark.parametrize("root_path", ["", "/api"])
@pytest.mark.parametrize("fast_paths", [False, True])
async def test_an_app_keeps_its_hooks_unless_it_opts_in(fast_paths: bool, root_path: str) -> None:
    """...and under a root path (a proxy's prefix) the hot routes are still taken, with the same
    answers (they went through Quart: its routing strips the prefix, the fast paths did not)."""
    app, seen = _app_with_hook(fast_paths=fast_paths)
    served = _with_fast_paths(app, app.extensions["trio_streams"])
    assert isinstance(served, FastPaths) is fast_paths
    streams: TrioStreams = app.extensions["trio_streams"]
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.root_path = root_path
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        await streams.stop()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: hypercorn.trio.serve(
                    served, config, shutdown_trigger=shutdown_trigger, task_status=task_status
                )
            )
            async with httpx.AsyncClient(base_url=urls[0] + root_path) as client:
                created = await client.put("/v1/stream/x", headers={"Content-Type": "text/plain"})
                assert created.status_code == 201
                assert created.headers["location"] == f"{urls[0]}{root_path}/v1/stream/x"
                started = await client.post("/v1/runs", json={"producer": "demo"})
                assert started.status_code == 201
                run_id = started.json()["run_id"]
                assert started.json()["events_url"] == f"{root_path}/v1/runs/{run_id}/events"
                assert (await client.get(f"/v1/runs/{run_id}/events")).status_code == 200
                assert (await client.get("/healthz")).status_code == 200
            inside = list(seen)
            if root_path:  # not under the prefix: Quart's answer (its routing), either way
                async with httpx.AsyncClient(base_url=urls[0]) as outside:
                    assert (await outside.post("/v1/runs", json={})).status_code == 404
            stop.set()
    hot = ["PUT /v1/stream/x", "POST /v1/runs", f"GET /v1/runs/{run_id}/events"]
    assert inside == (["GET /healthz"] if fast_paths else [*hot, "GET /healthz"])


def test_serve_uses_the_fast_paths_for_its_own_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_streams.cli._main import build_parser
    from trio_streams.cli._plan import ServePlan

    args = build_parser().parse_args(["serve"])
    app, streams = ServePlan.from_args(args).build_app()
    assert isinstance(_with_fast_paths(app, streams), FastPaths)
    monkeypatch.setenv("TRIO_STREAMS_FAST_PATHS", "0")
    app, streams = ServePlan.from_args(args).build_app()
    assert _with_fast_paths(app, streams) is app


@pytest.mark.parametrize(
    ("host", "root_path"),
    [
        ("127.0.0.1:8000", ""),
        ("example.com", ""),
        ("Example.COM:80", ""),
        ("xn--n3h.net", ""),
        ("[::1]:8000", ""),
        ("example.com:08000", ""),
        ("example.com", "/mounted"),
        ("", ""),
    ],
)
def test_host_url_is_werkzeugs(host: str, root_path: str) -> None:
    from werkzeug.sansio.utils import get_current_url

    from trio_streams.web._asgi import _host_url

    assert _host_url("http", host, root_path) == get_current_url("http", host, root_path)
