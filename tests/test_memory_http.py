"""The memory budget over HTTP: 429 for a run that cannot fit, 507 for a Durable
Streams append, demo limits from the budget, metrics.

Quart's test client on the mock clock, and a real Hypercorn server (real clock,
under a deadline) for the Durable Streams 507.
"""

from __future__ import annotations

import httpx
import trio

from trio_streams.web._demo import demo_limits

from .server_support import running_server
from .web_support import error_code, events_of, raw, serving

MiB = 1024 * 1024


async def test_a_run_that_cannot_fit_is_a_429_naming_the_limit(autojump_clock):
    async with serving(max_memory=8 * MiB) as api:
        limits = demo_limits(8 * MiB, MiB)
        # Slow demo runs of the largest allowed size: each reserves what it
        # will emit (about twice its text) when it starts.
        demo = {"tokens": limits.max_bytes // 65_536, "size": 65_536, "rate": 1}
        started = [await api.start(input=demo) for _ in range(3)]
        response = await api.client.post("/v1/runs", json={"producer": "demo", "input": demo})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        doc = await response.get_json()
        assert doc["error"]["code"] == "at_capacity"
        assert doc["error"]["limit"] == "max_memory"
        assert "max_memory=8 MiB" in doc["error"]["message"]
        # A small run still fits (a new run leaves the headroom, not the reservations).
        small = await api.start(input={"tokens": 2, "rate": None})
        assert events_of(await api.events(small["run_id"]))[-1][1] == "done"
        for doc in started:
            await api.client.post(f"/v1/runs/{doc['run_id']}/cancel?wait=true")
        # Finished, they give their memory back to the next run.
        await api.start(input=demo)


async def test_demo_limits_follow_the_budget(autojump_clock):
    async with serving(max_memory=16 * MiB, max_event_bytes=32 * 1024) as api:
        limits = demo_limits(16 * MiB, 32 * 1024)
        assert (limits.max_bytes, limits.max_size, limits.max_text) == (2 * MiB, 32 * 1024 - 256, 16 * 1024)
        too_many = {"tokens": 2 * MiB // 1000 + 1, "size": 1000}
        doc = await api.start(400, input=too_many)
        assert error_code(doc) == "invalid_input"
        assert "max_memory" in doc["error"]["message"]
        doc = await api.start(400, input={"tokens": 1, "size": limits.max_size + 1})
        assert "size must be between 1 and" in doc["error"]["message"]
        spec = await (await api.client.get("/openapi.json")).get_json()
        assert str(limits.max_bytes) in str(spec), "the OpenAPI document states the product limit"
        # The largest run allowed completes; its result keeps max_text characters.
        run = await api.start(input={"tokens": 2 * MiB // 32_000, "size": 32_000, "rate": None})
        events = events_of(await api.events(run["run_id"]))
        assert events[-1][1] == "done"
        result = events[-1][2]["result"]
        assert (len(result["text"]), result["tokens"], result["truncated"]) == (limits.max_text, 65, True)
        assert result["text"] == "".join(e[2]["text"] for e in events[:-1])[: limits.max_text]


async def test_metrics_report_the_budget(autojump_clock):
    async with serving(max_memory=64 * MiB) as api:
        run = await api.start(input={"tokens": 3, "rate": None})
        await api.events(run["run_id"])
        text = (await raw(await api.client.get("/metrics"))).decode()
        assert "trio_streams_memory_limit_bytes 6.7108864e+07\n" in text
        used = api.streams.hub.statistics().memory
        assert f'trio_streams_memory_used_bytes{{part="runs"}} {float(used.runs)!r}\n' in text
        assert 'trio_streams_memory_used_bytes{part="durable"} 0.0\n' in text
        assert "trio_streams_memory_pending_limit_bytes 1.6777216e+07\n" in text
        assert "trio_streams_memory_refusals_total 0.0\n" in text


async def test_a_durable_append_past_the_budget_is_a_507():
    with trio.fail_after(20):
        async with (
            running_server(max_memory=8 * MiB) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/big"
            assert (
                await client.put(url, headers={"Content-Type": "application/octet-stream"})
            ).status_code == 201
            chunk = b"x" * MiB
            statuses = [
                (
                    await client.post(
                        url, content=chunk, headers={"Content-Type": "application/octet-stream"}
                    )
                ).status_code
                for _ in range(9)
            ]
            assert statuses == [204] * 7 + [507, 507], statuses
            refused = await client.post(
                url, content=chunk, headers={"Content-Type": "application/octet-stream"}
            )
            assert refused.status_code == 507
            assert "max_memory=8 MiB" in refused.text
            stats = server.streams.hub.statistics().memory
            assert stats.durable > 7 * MiB
            # Reads still work, and deleting gives the memory back.
            assert len((await client.get(url)).content) > 0
            assert (await client.delete(url)).status_code == 204
            assert server.streams.hub.statistics().memory.durable == 0
