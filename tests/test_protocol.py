"""The protocol layer on its own: parsed requests in, responses out, no web framework.

The handlers of :mod:`trio_streams.protocol` are driven directly here (no
Quart, no server); the HTTP tests (test_web_api, test_durable_http) drive the
same handlers through the Quart adapters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_streams.durable import DurableStreamError, DurableStreamStore
from trio_streams.durable._backend import as_backend
from trio_streams.durable._reads import ReadSettings
from trio_streams.protocol import (
    BROWSER_HEADERS,
    ApiError,
    DurableService,
    Headers,
    Query,
    Request,
    Response,
    StreamingResponse,
    api_error_response,
    handle_cancel_run,
    handle_get_run,
    handle_list_runs,
    handle_run_events,
    handle_start_run,
    handle_stream_request,
    render_error,
)
from trio_streams.testing import virtual_deadline
from trio_streams.web._idempotency import IdempotencyKeys

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_streams.runs._hub import Hub
    from trio_streams.runs._run import RunContext, RunInfo

MOUNT = "/v1/stream/"


def request(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: bytes = b"",
    declared: int | None = None,
    params: dict[str, str] | None = None,
) -> Request:
    """A parsed request; its body reader records that it was read."""

    async def read_body() -> bytes:
        reads.append(body)
        return body

    reads: list[bytes] = []
    return Request(
        method=method,
        path=path,
        host_url="http://example.test/",
        path_params=params if params is not None else {"stream_name": path.removeprefix(MOUNT)},
        query=Query({name: (value,) for name, value in (query or {}).items()}),
        headers=Headers((headers or {}).items()),
        content_length=len(body) if declared is None else declared,
        read_body=read_body,
    )


def service(
    *, max_body: int = 1024, long_poll_timeout: float = 5.0, sse_recycle: float = 60.0
) -> DurableService:
    settings = ReadSettings(long_poll_timeout, sse_recycle, private=False)
    return DurableService(as_backend(DurableStreamStore()), settings, max_body)


async def plain(req: Request, svc: DurableService) -> Response:
    response = await handle_stream_request(req, svc)
    assert isinstance(response, Response)
    return response


def refused(status: int, code: str) -> pytest.RaisesExc[DurableStreamError]:
    return pytest.raises(DurableStreamError, check=lambda e: (e.status, e.code) == (status, code))


# -- Durable Streams ----------------------------------------------------------------------


async def test_create_append_read_head_delete_without_a_framework() -> None:
    svc = service()
    created = await plain(
        request("PUT", MOUNT + "a/b", headers={"Content-Type": "text/plain"}, body=b"hi"), svc
    )
    assert created.status == 201
    assert created.headers["Location"] == "http://example.test/v1/stream/a/b"
    assert created.headers["Content-Type"] == "text/plain"
    assert created.headers["Stream-Next-Offset"] == "0000000000000001_0000000000000002"
    again = await plain(request("PUT", MOUNT + "a/b", headers={"Content-Type": "text/plain"}), svc)
    assert again.status == 200
    assert "Location" not in again.headers

    appended = await plain(
        request("POST", MOUNT + "a/b", headers={"Content-Type": "text/plain"}, body=b" there"), svc
    )
    assert appended.status == 204
    assert appended.headers == {"Stream-Next-Offset": "0000000000000002_0000000000000008"}

    read = await plain(request("GET", MOUNT + "a/b", query={"offset": "-1"}), svc)
    assert (read.status, read.body) == (200, b"hi there")
    assert read.headers["Stream-Up-To-Date"] == "true"
    etag = read.headers["ETag"]
    cached = await plain(
        request("GET", MOUNT + "a/b", query={"offset": "-1"}, headers={"If-None-Match": etag}), svc
    )
    assert (cached.status, cached.body) == (304, b"")

    head = await plain(request("HEAD", MOUNT + "a/b"), svc)
    assert head.status == 200
    assert head.headers["Cache-Control"] == "no-store"
    assert (await plain(request("DELETE", MOUNT + "a/b"), svc)).status == 204
    with refused(404, "stream_not_found"):
        await handle_stream_request(request("HEAD", MOUNT + "a/b"), svc)


async def test_a_fork_names_its_source_by_path_or_name() -> None:
    svc = service()
    await plain(request("PUT", MOUNT + "src", headers={"Content-Type": "text/plain"}, body=b"abc"), svc)
    fork_headers = {"Content-Type": "text/plain", "Stream-Forked-From": MOUNT + "src"}
    fork = await plain(request("PUT", MOUNT + "fork", headers=fork_headers), svc)
    assert fork.status == 201
    read = await plain(request("GET", MOUNT + "fork", query={"offset": "-1"}), svc)
    assert read.body == b"abc"
    with refused(404, "stream_not_found"):
        await handle_stream_request(
            request("PUT", MOUNT + "f2", headers={"Stream-Forked-From": "/elsewhere/src"}), svc
        )
    with refused(400, "fork_header_without_source"):
        await handle_stream_request(request("PUT", MOUNT + "f3", headers={"Stream-Fork-Offset": "1"}), svc)


async def test_refusals_are_raised_and_render_as_the_protocol_error_document() -> None:
    svc = service(max_body=4)
    with refused(400, "invalid_stream_name"):
        await handle_stream_request(request("GET", MOUNT + "a//b"), svc)
    with refused(501, "not_implemented"):
        await handle_stream_request(request("GET", MOUNT + "__ds/x"), svc)
    with refused(400, "invalid_live"):
        await handle_stream_request(request("GET", MOUNT + "s", query={"offset": "-1", "live": "x"}), svc)
    # The query is checked before the stream is looked up: a 400, not a 404.
    with refused(400, "offset_required"):
        await handle_stream_request(request("GET", MOUNT + "missing", query={"live": "sse"}), svc)

    over = request("PUT", MOUNT + "big", body=b"12345", declared=5)
    with refused(413, "body_too_large") as caught:
        await handle_stream_request(over, svc)
    rendered = render_error(caught.value, "PUT")
    assert rendered.status == 413
    assert rendered.headers["Content-Type"] == "application/json"
    assert json.loads(rendered.body)["error"]["code"] == "body_too_large"
    assert render_error(caught.value, "HEAD").body == b""  # a HEAD has no body

    # A chunked body (no Content-Length) is refused once read.
    with refused(413, "body_too_large"):
        await handle_stream_request(_chunked(), svc)


def _chunked() -> Request:
    async def read_body() -> bytes:
        return b"12345"

    return Request("PUT", MOUNT + "big", path_params={"stream_name": "big"}, read_body=read_body)


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    svc = service(max_body=4)
    read: list[bool] = []

    async def read_body() -> bytes:
        read.append(True)
        return b"x" * 10

    req = Request(
        "POST", MOUNT + "s", path_params={"stream_name": "s"}, content_length=10, read_body=read_body
    )
    with refused(413, "body_too_large"):
        await handle_stream_request(req, svc)
    assert read == []


async def test_options_answers_the_cors_preflight_and_browser_headers_are_named() -> None:
    svc = service()
    answer = await plain(
        request("OPTIONS", MOUNT + "s", headers={"Access-Control-Request-Headers": "X-Mine"}), svc
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Headers"].endswith(", X-Mine")
    assert "Content-Type" not in answer.headers
    assert BROWSER_HEADERS["Access-Control-Allow-Origin"] == "*"


async def test_a_long_poll_waits_exactly_its_timeout_then_answers_204(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service(long_poll_timeout=5.0)
    created = await plain(request("PUT", MOUNT + "s", headers={"Content-Type": "text/plain"}, body=b"a"), svc)
    tail = created.headers["Stream-Next-Offset"]
    start = trio.current_time()
    async with virtual_deadline(60):
        answer = await plain(request("GET", MOUNT + "s", query={"offset": tail, "live": "long-poll"}), svc)
    assert trio.current_time() - start == 5.0
    assert answer.status == 204
    assert answer.headers["Stream-Up-To-Date"] == "true"
    assert svc.settings.waiting.value == 0


async def test_a_long_poll_answers_with_the_append_it_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service(long_poll_timeout=5.0)
    created = await plain(request("PUT", MOUNT + "s", headers={"Content-Type": "text/plain"}, body=b"a"), svc)
    tail = created.headers["Stream-Next-Offset"]
    answers: list[Response] = []

    async def poll() -> None:
        answers.append(
            await plain(request("GET", MOUNT + "s", query={"offset": tail, "live": "long-poll"}), svc)
        )

    async with virtual_deadline(60), trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await svc.settings.waiting.wait_value(1)
        await trio.sleep(1.0)
        await plain(request("POST", MOUNT + "s", headers={"Content-Type": "text/plain"}, body=b"b"), svc)
    assert trio.current_time() == 1.0
    assert (answers[0].status, answers[0].body) == (200, b"b")
    assert "Stream-Cursor" in answers[0].headers


async def test_sse_is_a_stream_of_frames_that_ends_on_close(autojump_clock: trio.testing.MockClock) -> None:
    svc = service()
    await plain(request("PUT", MOUNT + "s", headers={"Content-Type": "text/plain"}, body=b"one"), svc)
    response = await handle_stream_request(
        request("GET", MOUNT + "s", query={"offset": "-1", "live": "sse"}), svc
    )
    assert isinstance(response, StreamingResponse)
    assert response.headers["Content-Type"] == "text/event-stream"
    frames: list[bytes] = []
    async with virtual_deadline(60):
        frames.append(await anext(response.frames))
        close = request("POST", MOUNT + "s", headers={"Stream-Closed": "true"})
        assert (await plain(close, svc)).headers["Stream-Closed"] == "true"
        frames.extend([frame async for frame in response.frames])
    assert frames[0].startswith(b"event: data\ndata:one\n\nevent: control\n")
    assert b'"streamClosed":true' in frames[-1]
    assert svc.settings.waiting.value == 0


async def test_a_cancelled_sse_reader_gives_back_its_place_in_the_gauge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service()
    await plain(request("PUT", MOUNT + "s", headers={"Content-Type": "text/plain"}), svc)
    response = await handle_stream_request(
        request("GET", MOUNT + "s", query={"offset": "-1", "live": "sse"}), svc
    )
    assert isinstance(response, StreamingResponse)
    frames: list[bytes] = []

    async def read() -> None:
        async for frame in response.frames:
            frames.append(frame)

    async with virtual_deadline(60), trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await svc.settings.waiting.wait_value(1)  # parked after the first control event
        nursery.cancel_scope.cancel()
    assert len(frames) == 1
    assert svc.settings.waiting.value == 0


# -- the runs API -----------------------------------------------------------------------


class FakeApi:
    """A :class:`~trio_streams.protocol.RunsApi` over a hub, without any web framework."""

    def __init__(self, hub: Hub, producers: dict[str, Any]) -> None:
        self._hub = hub
        self.sse_streams_open = 0
        self.auth: object | None = None
        self.url_prefix = "/v1"
        self.max_body = 1024
        self.cancel_wait_timeout = 30.0
        self.heartbeat = 15.0
        self.retry_ms = 1000
        self.producers = producers
        self.idempotency = IdempotencyKeys()
        self.counters: Counter[str] = Counter()

    def caller(self, authorization: str | None) -> str | None:
        if authorization == "Bearer nope":
            raise ApiError(401, "unauthorized", "no")
        return None

    def hub_for_reading(self) -> Hub:
        return self._hub

    def hub_for_starting(self) -> Hub:
        return self._hub

    def may_read(self, info: RunInfo, caller: str | None) -> bool:
        return True


class Producer:
    def __init__(self, function: Callable[[RunContext], Any]) -> None:
        self.function = function
        self.parse_input = None
        self.input_validator = None
        self.reserve = None
        self.on_finish = None
        self.on_conflict = None
        self.on_disconnect = None


async def three_tokens(ctx: RunContext) -> Any:
    for n in range(3):
        await ctx.emit("token", n)
        await trio.sleep(1)
    return "done"


async def forever(ctx: RunContext) -> Any:
    await ctx.emit("started")
    await trio.sleep_forever()


def api_request(method: str, path: str, *, body: bytes = b"", **kwargs: Any) -> Request:
    run_id = path.split("/")[2] if path.count("/") >= 2 else None
    return request(method, path, body=body, params={} if run_id is None else {"run_id": run_id}, **kwargs)


async def test_runs_start_get_follow_and_list(
    stream_hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeApi(stream_hub, {"three": Producer(three_tokens)})
    started = await handle_start_run(api_request("POST", "/runs", body=b'{"producer": "three"}'), api)
    assert started.status == 201
    doc = json.loads(started.body)
    run_id = doc["run_id"]
    assert started.headers["Location"] == f"/v1/runs/{run_id}"
    assert "owner" not in doc  # auth off

    events = await handle_run_events(api_request("GET", f"/runs/{run_id}/events", query={"after": "0"}), api)
    assert events.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    frames = [frame async for frame in events.frames]
    assert frames[0] == b"retry: 1000\n\n"
    text = b"".join(frames).decode()
    assert "id: 1\n" in text
    assert "event: done\n" in text
    assert trio.current_time() == 3.0  # live: ended with the run
    assert api.sse_streams_open == 0
    assert api.counters["sse_streams"] == 1

    got = await handle_get_run(api_request("GET", f"/runs/{run_id}"), api)
    assert json.loads(got.body)["status"] == "done"
    listed = await handle_list_runs(api_request("GET", "/runs", query={"status": "done"}), api)
    assert [run["run_id"] for run in json.loads(listed.body)["runs"]] == [run_id]


async def test_last_event_id_wins_over_after(stream_hub: Hub, autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi(stream_hub, {"three": Producer(three_tokens)})
    run_id = json.loads(
        (await handle_start_run(api_request("POST", "/runs", body=b'{"producer": "three"}'), api)).body
    )["run_id"]
    await stream_hub.wait(run_id)
    events = await handle_run_events(
        api_request("GET", f"/runs/{run_id}/events", query={"after": "0"}, headers={"Last-Event-ID": "3"}),
        api,
    )
    text = b"".join([frame async for frame in events.frames]).decode()
    assert "id: 3\n" not in text
    assert "id: 4\n" in text


async def test_cancel_with_wait_answers_once_finished(
    stream_hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeApi(stream_hub, {"forever": Producer(forever)})
    run_id = json.loads(
        (await handle_start_run(api_request("POST", "/runs", body=b'{"producer": "forever"}'), api)).body
    )["run_id"]
    cancelled = await handle_cancel_run(
        api_request("POST", f"/runs/{run_id}/cancel", query={"wait": "true"}, body=b'{"reason": "enough"}'),
        api,
    )
    assert cancelled.status == 200
    assert json.loads(cancelled.body)["status"] == "cancelled"


async def test_runs_refusals_are_api_errors_with_their_json(
    stream_hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeApi(stream_hub, {"three": Producer(three_tokens)})

    def refused_with(status: int, code: str) -> pytest.RaisesExc[ApiError]:
        return pytest.raises(ApiError, check=lambda e: (e.status, e.code) == (status, code))

    with refused_with(400, "invalid_json"):
        await handle_start_run(api_request("POST", "/runs", body=b"{"), api)
    with refused_with(400, "unknown_producer"):
        await handle_start_run(api_request("POST", "/runs", body=b'{"producer": "nope"}'), api)
    with refused_with(413, "body_too_large"):
        await handle_start_run(api_request("POST", "/runs", body=b"x" * 2000), api)
    with refused_with(401, "unauthorized"):
        await handle_get_run(api_request("GET", "/runs/x", headers={"Authorization": "Bearer nope"}), api)
    with refused_with(400, "invalid_limit"):
        await handle_list_runs(api_request("GET", "/runs", query={"limit": "0"}), api)
    with refused_with(404, "run_not_found") as caught:
        await handle_get_run(api_request("GET", "/runs/missing"), api)
    rendered = api_error_response(caught.value)
    assert rendered.status == 404
    assert json.loads(rendered.body) == {
        "error": {"code": "run_not_found", "message": "no run 'missing'", "run_id": "missing"}
    }
    run_id = json.loads(
        (await handle_start_run(api_request("POST", "/runs", body=b'{"producer": "three"}'), api)).body
    )["run_id"]
    with refused_with(400, "after_beyond_end"):
        await handle_run_events(api_request("GET", f"/runs/{run_id}/events", query={"after": "99"}), api)
    with refused_with(400, "invalid_last_event_id"):
        await handle_run_events(
            api_request("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "-1"}), api
        )
    with refused_with(400, "invalid_wait"):
        await handle_cancel_run(api_request("POST", f"/runs/{run_id}/cancel", query={"wait": "maybe"}), api)


# -- the layering -------------------------------------------------------------------------


def test_the_protocol_and_durable_packages_load_no_web_framework() -> None:
    code = (
        "import sys, trio_streams.protocol, trio_streams.durable, trio_streams.durable._reads;"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('quart', 'quart_trio', 'werkzeug'));"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_error_derives_from_the_one_root() -> None:
    from trio_streams import StreamError
    from trio_streams.web import ApiError as WebApiError

    assert WebApiError is ApiError
    assert issubclass(ApiError, StreamError)
    assert issubclass(DurableStreamError, StreamError)


def test_a_stream_name_with_any_control_character_is_refused_and_others_are_not() -> None:
    from trio_streams.protocol._ds_handlers import check_name

    for code in [*range(0x20), 0x7F]:
        with pytest.raises(DurableStreamError) as caught:
            check_name(f"a{chr(code)}b")
        assert (caught.value.status, caught.value.code) == (400, "invalid_stream_name")
    for char in (" ", "~", "\x80", "é", "\u2028", "_-.:"):
        check_name(f"a{char}b")  # printable, or not ASCII: allowed
