"""A real Hypercorn server on a free port, in the test's own trio run."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hypercorn.config
import hypercorn.trio
import trio

from trio_streams.web import TrioStreams, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from quart_trio import QuartTrio


@dataclass
class Server:
    url: str
    streams: TrioStreams


@asynccontextmanager
async def running_server(app: QuartTrio | None = None, **options: Any) -> AsyncIterator[Server]:
    """Serve ``app`` (or ``create_app(**options)``) on 127.0.0.1:<free port> until the block ends.

    Leaving the block shuts the server down the way ``serve`` does: the hub
    drains first, then Hypercorn closes connections.
    """
    app = create_app(**options) if app is None else app
    streams: TrioStreams = app.extensions["trio_streams"]
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 5
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        await streams.stop()

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: hypercorn.trio.serve(
                app, config, shutdown_trigger=shutdown_trigger, task_status=task_status
            )
        )
        try:
            yield Server(urls[0], streams)
        finally:
            stop.set()
