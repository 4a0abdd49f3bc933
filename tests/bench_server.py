"""A small server of the run API for the load generator's tests, with faults
to inject: a raw ASGI app over a real hub, served by a real Hypercorn.

It serves just what ``trio-streams bench`` calls (start, events, cancel) with
the demo producer's token shape, and can break its own streams on purpose:
``fault="skip"`` leaves out event 3, ``fault="duplicate"`` sends it twice,
``fault="slow"`` paces the demo at half the requested rate (a server that
cannot keep up: its tokens fall further behind their schedule each one).
"""

from __future__ import annotations

import functools
import json
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import hypercorn.config
import hypercorn.trio
import trio

from trio_streams import Event, Hub, RunContext, open_hub
from trio_streams.protocol._sse import encode_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

Fault = Literal["skip", "duplicate", "slow"] | None
Message = dict[str, Any]


async def demo(ctx: RunContext, slowdown: float = 1.0) -> None:
    spec = ctx.input
    text = []
    started = trio.current_time()
    for i in range(int(spec["tokens"])):
        if spec.get("rate"):
            # Paced against the start, as the real demo producer is.
            await trio.sleep_until(started + i * slowdown / float(spec["rate"]))
        token = f"t{i} "
        text.append(token)
        await ctx.emit("token", {"i": i, "text": token, "ts": time.time()})
        ctx.result = "".join(text)


class FaultyRunAPI:
    def __init__(self, hub: Hub, fault: Fault) -> None:
        self.hub = hub
        self.fault = fault

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        parts = path.strip("/").split("/")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST" and parts == ["v1", "runs"]:
            request = json.loads(body)
            producer = functools.partial(demo, slowdown=2.0 if self.fault == "slow" else 1.0)
            run = await self.hub.start(producer, input=request["input"])
            await _json(send, 201, {"run_id": run.id, "status": str(run.status)})
        elif scope["method"] == "POST" and len(parts) == 4 and parts[3] == "cancel":
            await self.hub.cancel(parts[2], reason="stop")
            info = await self.hub.wait(parts[2])
            await _json(send, 200, {"run_id": info.run_id, "status": str(info.status)})
        elif scope["method"] == "GET" and len(parts) == 3 and parts[:2] == ["v1", "runs"]:
            info = await self.hub.get_info(parts[2])
            await _json(send, 200, {"run_id": info.run_id, "status": str(info.status)})
        elif scope["method"] == "GET" and len(parts) == 4 and parts[3] == "events":
            headers = dict(scope["headers"])
            after = int(headers.get(b"last-event-id", b"0"))
            await self._events(parts[2], after, send)
        else:
            await _json(send, 404, {"error": {"code": "not_found", "message": path}})

    async def _events(self, run_id: str, after: int, send: Callable[[Message], Awaitable[None]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        async with self.hub.subscribe(run_id, after=after) as subscription:
            async for item in subscription:
                assert isinstance(item, Event)
                frame = encode_event(item).encode()
                if item.seq == 3 and self.fault == "skip":
                    continue
                if item.seq == 3 and self.fault == "duplicate":
                    frame += frame
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _json(send: Callable[[Message], Awaitable[None]], status: int, document: Any) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(document).encode()})


@asynccontextmanager
async def serve_run_api(fault: Fault = None) -> AsyncIterator[str]:
    """Serve the API on a free loopback port; yield its base URL."""
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with open_hub() as hub, trio.open_nursery() as nursery:
        binds = await nursery.start(hypercorn.trio.serve, FaultyRunAPI(hub, fault), config)
        yield str(binds[0])
        nursery.cancel_scope.cancel()
