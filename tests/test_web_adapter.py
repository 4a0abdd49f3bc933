"""The Quart-Trio adapter: Quart's request in as the parsed one, the protocol's response out as Quart's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart_trio import QuartTrio

from trio_streams.protocol import Response, StreamingResponse
from trio_streams.web._adapter import parsed_request, to_quart

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def test_a_response_keeps_exactly_its_headers() -> None:
    app = QuartTrio(__name__)
    async with app.app_context():
        empty = to_quart(Response(204, {"Stream-Next-Offset": "1_1"}))
        assert "Content-Type" not in empty.headers  # no default text/html
        assert empty.headers["Stream-Next-Offset"] == "1_1"
        typed = to_quart(Response(200, {"Content-Type": "application/json"}, b"{}"))
        assert typed.headers["Content-Type"] == "application/json"
        assert await typed.get_data() == b"{}"


async def test_a_streaming_response_has_no_timeout_and_its_frames_as_they_are() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"

    app = QuartTrio(__name__)
    async with app.app_context():
        out = to_quart(StreamingResponse(200, {"Content-Type": "text/event-stream"}, frames()))
        assert out.timeout is None
        assert out.headers["Content-Type"] == "text/event-stream"
        async with out.response as body:
            assert [frame async for frame in body] == [b"one", b"two"]


async def test_the_parsed_request_carries_what_the_handlers_read() -> None:
    app = QuartTrio(__name__)
    async with app.test_request_context(
        "/v1/stream/a?offset=-1&offset=x&live=sse",
        method="POST",
        headers={"Last-Event-ID": "7", "Content-Length": "3"},
        data=b"abc",
    ):
        parsed = parsed_request(stream_name="a")
        assert (parsed.method, parsed.path, parsed.path_params) == (
            "POST",
            "/v1/stream/a",
            {"stream_name": "a"},
        )
        assert parsed.args("offset") == ("-1", "x")
        assert parsed.arg("live") == "sse"
        assert parsed.headers.get("last-event-id") == "7"
        assert parsed.content_length == 3
        assert await parsed.read_body() == b"abc"
