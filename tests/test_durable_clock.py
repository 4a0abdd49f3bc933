"""Durable Streams live reads through the app on the autojump clock: timeouts to the tick."""

from __future__ import annotations

import json

import trio
import trio.testing

from .web_support import raw, serving


async def test_long_poll_times_out_exactly_and_sse_recycles_exactly(autojump_clock: trio.testing.MockClock):
    async with serving(long_poll_timeout=7.5, sse_recycle=42) as api:
        created = await api.client.put("/v1/stream/s", headers={"Content-Type": "text/plain"})
        tail = created.headers["Stream-Next-Offset"]
        started = trio.current_time()
        response = await api.client.get(f"/v1/stream/s?offset={tail}&live=long-poll")
        assert response.status_code == 204
        assert trio.current_time() - started == 7.5
        assert response.headers["Stream-Up-To-Date"] == "true"
        # An append during the wait answers it at once, at the append's time.
        got = []

        async def poll() -> None:
            got.append(await api.client.get(f"/v1/stream/s?offset={tail}&live=long-poll"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(3)
            appended_at = trio.current_time()
            await api.client.post("/v1/stream/s", data=b"hi", headers={"Content-Type": "text/plain"})
        assert trio.current_time() == appended_at
        assert (got[0].status_code, await raw(got[0])) == (200, b"hi")
        # An idle SSE response ends exactly sse_recycle seconds after it started.
        started = trio.current_time()
        response = await api.client.get("/v1/stream/s?offset=-1&live=sse")
        body = await raw(response)
        assert trio.current_time() - started == 42
        control = json.loads(body.split(b"event: control\ndata:")[1].split(b"\n")[0])
        assert control["upToDate"] is True
