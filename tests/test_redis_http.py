"""Two real HTTP servers on one Redis: start on A, follow and cancel over B's API.

Real Hypercorn servers and a real redis-server; no mock clock.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_streams.log.redis import RedisStore

from .server_support import running_server
from .test_web_server import read_events

pytestmark = pytest.mark.redis  # real redis-server processes


async def test_two_servers_share_runs_through_redis(redis_url, prefix):
    with trio.fail_after(30):
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix)) as a,
            running_server(store=RedisStore(redis_url, prefix=prefix)) as b,
            httpx.AsyncClient(base_url=a.url) as client_a,
            httpx.AsyncClient(base_url=b.url) as client_b,
        ):
            assert (await client_b.get("/healthz")).status_code == 200
            started = await client_a.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 100_000, "rate": 500}}
            )
            run_id = started.json()["run_id"]
            first = await read_events(b.url, f"/v1/runs/{run_id}/events", stop_after=10)
            assert [seq for seq, _type, _data in first] == list(range(1, 11))
            cancelled = await client_b.post(f"/v1/runs/{run_id}/cancel?wait=true")
            assert cancelled.status_code == 200, cancelled.text
            doc = cancelled.json()
            assert doc["status"] == "cancelled"
            assert doc["partial"] is True
            assert doc["result"]["tokens"] >= 10
            on_a = (await client_a.get(f"/v1/runs/{run_id}")).json()
            assert on_a["status"] == "cancelled"
            assert on_a["result"] == doc["result"]
            everything = await read_events(b.url, f"/v1/runs/{run_id}/events")
            assert everything[:10] == first
            assert [seq for seq, _type, _data in everything] == list(range(1, len(everything) + 1))
            assert everything[-1][1] == "cancelled"
            assert everything[-1][2]["result"] == doc["result"]
