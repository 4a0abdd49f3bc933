"""The ceiling for the Durable Streams benchmark: Hypercorn + Quart-Trio doing nothing.

``PUT`` answers 201 and ``POST`` 204 (after reading the body), each with a
``Stream-Next-Offset`` header, and no store at all: whatever our server
does per append on top of this is ours to optimize; this much is the stack's.

``raw_app`` is the same without Quart: a bare ASGI callable, so the two
ceilings split the stack's cost between Hypercorn (with h11 and trio) and Quart.

Run:  python -m hypercorn --worker-class trio --bind 127.0.0.1:8002 benchmarks.durable_ceiling:app
      python -m hypercorn --worker-class trio --bind 127.0.0.1:8002 benchmarks.durable_ceiling:raw_app
"""

from __future__ import annotations

import itertools
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio(__name__)
_counter = itertools.count(1)


@app.route("/v1/stream/<path:name>", methods=["PUT", "POST"])
async def stream(name: str) -> Response:
    await request.get_data(cache=False)
    response = Response(b"", status=201 if request.method == "PUT" else 204)
    del response.headers["Content-Type"]
    response.headers["Stream-Next-Offset"] = f"{next(_counter):016d}_{0:016d}"
    return response


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The no-op as bare ASGI: read the body, answer 201/204 with an offset header."""
    if scope["type"] != "http":
        message = await receive()  # lifespan: acknowledge startup and shutdown
        while message["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    offset = f"{next(_counter):016d}_{0:016d}".encode()
    status = 201 if scope["method"] == "PUT" else 204
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"stream-next-offset", offset)]}
    )
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":  # python -m benchmarks.durable_ceiling PORT: raw_app under serve's Hypercorn setup
    import sys

    import trio

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            sockets_port = int(sys.argv[1])
            from trio_streams.cli._hypercorn import hypercorn_config, listen, serve_hypercorn

            config = hypercorn_config("127.0.0.1", sockets_port, access_log=False)
            sockets = listen("127.0.0.1", sockets_port, backlog=config.backlog)
            (url,) = await nursery.start(
                lambda task_status: serve_hypercorn(
                    raw_app,  # type: ignore[arg-type]  # (a plain-dict ASGI callable)
                    config,
                    sockets,
                    shutdown_trigger=trio.sleep_forever,
                    task_status=task_status,
                )
            )
            print(f"Running on {url} (CTRL + C to quit)", flush=True)

    trio.run(main)
