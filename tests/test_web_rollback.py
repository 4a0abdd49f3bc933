"""``on_conflict=rollback`` over HTTP: in the request body and as a producer's default.

Quart's test client on the mock clock (exact times).
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from quart_trio import QuartTrio

from trio_streams.web import TrioStreams

from .web_support import error_code, events_of, raw, serving


async def test_rollback_in_the_body_cancels_deletes_then_starts(autojump_clock):
    async with serving() as api:
        first = await api.start(input={"tokens": 100, "rate": 10}, key="k")
        old_id = first["run_id"]
        assert (await api.client.get(f"/v1/stream/runs/{old_id}")).status_code == 200
        old_messages: list[Any] = []

        async def follow_old() -> None:
            old_messages.extend(await api.events(old_id))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_old)
            await trio.sleep(0.25)
            second = await api.start(input={"tokens": 2, "rate": None}, key="k", on_conflict="rollback")
            assert second["status"] == "queued"
        # The old run's stream: its tokens, then `cancelled` (reason rolled_back), then the end.
        old_events = events_of(old_messages)
        assert [e[1] for e in old_events] == ["token"] * 3 + ["cancelled"]
        assert old_events[-1][2]["reason"] == "rolled_back"
        assert old_events[-1][2]["partial"] is True
        await trio.testing.wait_all_tasks_blocked()
        # Then it is gone: 404 on its document, its events (also with Last-Event-ID), its cancel.
        for response in (
            await api.client.get(f"/v1/runs/{old_id}"),
            await api.client.get(f"/v1/runs/{old_id}/events"),
            await api.client.get(f"/v1/runs/{old_id}/events", headers={"Last-Event-ID": "2"}),
            await api.client.post(f"/v1/runs/{old_id}/cancel"),
            await api.client.get(f"/v1/stream/runs/{old_id}"),  # its Durable Streams view
        ):
            assert response.status_code == 404, await raw(response)
        listed = await (await api.client.get("/v1/runs")).get_json()
        assert old_id not in {doc["run_id"] for doc in listed["runs"]}
        assert [e[1] for e in events_of(await api.events(second["run_id"]))] == ["token", "token", "done"]


async def test_the_rolled_back_reason_is_refused_on_cancel(autojump_clock):
    async with serving() as api:
        doc = await api.start(input={"tokens": 100, "rate": 10})
        response = await api.client.post(f"/v1/runs/{doc['run_id']}/cancel", json={"reason": "rolled_back"})
        assert response.status_code == 400
        assert error_code(await response.get_json()) == "invalid_body"
        assert (await api.status(doc["run_id"]))["status"] == "running"
        await api.client.post(f"/v1/runs/{doc['run_id']}/cancel")


async def test_rollback_as_a_producers_default(autojump_clock):
    release = trio.Event()

    async def waits(ctx: Any) -> None:
        await release.wait()

    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False)
    streams.register("waits", waits, on_conflict="rollback")
    async with app.test_app() as test_app:
        client = test_app.test_client()
        first = await (await client.post("/v1/runs", json={"producer": "waits", "key": "k"})).get_json()
        second = await (await client.post("/v1/runs", json={"producer": "waits", "key": "k"})).get_json()
        assert second["status"] == "queued"
        await trio.testing.wait_all_tasks_blocked()
        assert (await client.get(f"/v1/runs/{first['run_id']}")).status_code == 404
        assert (await (await client.get(f"/v1/runs/{second['run_id']}")).get_json())["status"] == "running"
        release.set()
