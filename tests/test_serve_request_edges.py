"""serve's request path at its edges: a client that sends a body nobody reads, then leaves.

Real sockets, the real clock, under a deadline (no sleeps: each step waits for
a gauge the server keeps).
"""

from __future__ import annotations

import httpx
import trio

from trio_streams import serve, serve_plan
from trio_streams.web import TrioStreams, create_app

DEADLINE = 20
TEXT = {"Content-Type": "text/plain"}


async def test_a_client_leaving_an_event_stream_with_an_unread_body_ends_it() -> None:
    # A GET that declares a body over the limit and keeps sending it: nobody reads it
    # (the response does not wait for it), so the server's queue to the app fills and
    # the connection stops being read (backpressure). The client leaving must still end
    # the read.
    app = create_app(fast_paths=True)
    streams: TrioStreams = app.extensions["trio_streams"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0", "--max-body=1KiB"]), app)
            async with httpx.AsyncClient(base_url=url) as setup:
                assert (await setup.put("/v1/stream/s", headers=TEXT)).status_code == 201
            host, port = url.removeprefix("http://").split(":")
            stream = await trio.open_tcp_stream(host, int(port))

            async def send_then_leave() -> None:
                # More than the queue to the app and both socket buffers hold: sent in full only
                # if the server goes on reading after the response started.
                async with stream:
                    await stream.send_all(
                        b"GET /v1/stream/s?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 100000000\r\n\r\n"
                    )
                    chunk = b"x" * 65536
                    for _ in range(32 * 16):  # 32 MiB
                        await stream.send_all(chunk)

            async with trio.open_nursery() as client:
                client.start_soon(send_then_leave)
                await streams.durable_live_reads.wait_value(1)
            await streams.durable_live_reads.wait_value(0)
            nursery.cancel_scope.cancel()
