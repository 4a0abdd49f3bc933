"""The load generator's HTTP client against a real ``serve``: a kept-alive
connection the server closed as idle is replaced, not reported as a failure.

Found from a user's side: any run longer than serve's keep-alive timeout (5 s)
broke its slot's next ``POST /v1/runs`` with ``RemoteProtocolError(... state=
SEND_RESPONSE)``, and ``bench`` called the server failed.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_streams.bench._httpclient import HTTPConnection, HTTPError

from .test_serve_cli import serve_process as serve_process


async def _until_closed_by_the_server(connection: HTTPConnection) -> None:
    """Return once the server has closed ``connection``'s socket (its EOF is there to read)."""
    stream: Any = connection._stream
    assert stream is not None
    await trio.lowlevel.wait_readable(stream.socket)


async def test_a_connection_the_server_closed_as_idle_is_replaced(serve_process):
    with trio.fail_after(30):
        server = await serve_process("--keep-alive", "0.2s")
        connection = HTTPConnection(server.url)
        try:
            assert (await connection.request("GET", "/healthz")).status == 200
            await _until_closed_by_the_server(connection)
            started = await connection.request(
                "POST", "/v1/runs", json_body={"producer": "demo", "input": {"tokens": 1, "rate": None}}
            )
            assert started.status == 201
            # Once more: the replaced connection is kept alive in its turn.
            assert (await connection.request("GET", "/healthz")).status == 200
        finally:
            await connection.aclose()


async def test_a_fresh_connection_that_fails_is_an_error():
    with trio.fail_after(30):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]

        async def close_at_once() -> None:
            stream = await listener.accept()
            await stream.receive_some()
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_at_once)
            connection = HTTPConnection(f"http://127.0.0.1:{port}")
            try:
                with pytest.raises(HTTPError, match="closed the connection"):
                    await connection.request("GET", "/healthz")
            finally:
                await connection.aclose()
        await listener.aclose()
