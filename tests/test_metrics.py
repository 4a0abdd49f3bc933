"""``/metrics``: exact values, a registry per extension, the histograms, process metrics, both stores.

Every document is read with ``prometheus_client``'s own parser (what a
Prometheus server would make of it). Hub logic on the mock clock (exact
durations); the fast-path and Redis tests are real I/O under a deadline.
"""

from __future__ import annotations

from typing import Any

import httpx
import prometheus_client
import pytest
import trio
from quart import request

from trio_streams.log._events import Event, Gap, Heartbeat
from trio_streams.log.redis import RedisStore
from trio_streams.protocol._runs_sse import _oldest_live
from trio_streams.web import create_app

from .metrics_support import families, label_sets, value
from .server_support import running_server
from .test_asgi_fast_paths import serving as serving_on_path
from .web_support import raw, serving

DEADLINE = 20
TEXT = {"Content-Type": "text/plain"}
DURATION = "trio_streams_http_request_duration_seconds"


async def scrape(api) -> str:  # type: ignore[no-untyped-def]
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return (await raw(response)).decode()


async def test_values_past_a_million_are_exact(autojump_clock):
    # The old rendering wrote 6 significant digits: 16777217 came out as 1.67772e+07.
    async with serving(max_memory=2**26 + 3) as api:
        api.streams.counters["error:flood"] = 2**24 + 1
        text = await scrape(api)
    assert value(text, "trio_streams_http_errors_total", code="flood") == 2**24 + 1
    assert value(text, "trio_streams_memory_limit_bytes") == 2**26 + 3
    assert 'trio_streams_http_errors_total{code="flood"} 1.6777217e+07\n' in text
    families(text)  # and no family twice


async def test_two_apps_in_one_process_keep_their_own_registries(autojump_clock):
    async with serving() as first, serving() as second:
        for _ in range(2):
            await first.start(input={"tokens": 1, "rate": None})
        await second.start(input={"tokens": 1, "rate": None})
        assert value(await scrape(first), "trio_streams_runs_started_total") == 2
        assert value(await scrape(second), "trio_streams_runs_started_total") == 1
        assert first.streams.metrics.registry is not second.streams.metrics.registry
    # Neither touched the process-wide default registry.
    names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not {name for name in names if name.startswith("trio_streams")}


async def test_request_durations_are_exact_on_the_mock_clock(autojump_clock):
    async with serving(long_poll_timeout=2.0) as api:
        put = await api.client.put("/v1/stream/a", headers=TEXT)
        tail = put.headers["Stream-Next-Offset"]
        poll = await api.client.get(f"/v1/stream/a?offset={tail}&live=long-poll")
        assert poll.status_code == 204
        assert trio.current_time() == 2.0
        await api.client.get("/v1/runs/missing")
        await api.client.get("/no/such/route")
        text = await scrape(api)
    route = "/v1/stream/<path:stream_name>"
    poll_labels = {"route": route, "method": "GET", "status": "204"}
    assert value(text, DURATION + "_count", **poll_labels) == 1
    assert value(text, DURATION + "_sum", **poll_labels) == 2.0
    assert value(text, DURATION + "_bucket", le="1.0", **poll_labels) == 0
    assert value(text, DURATION + "_bucket", le="2.5", **poll_labels) == 1
    put_labels = {"route": route, "method": "PUT", "status": "201"}
    assert value(text, DURATION + "_sum", **put_labels) == 0.0
    assert value(text, DURATION + "_count", route="/v1/runs/<run_id>", method="GET", status="404") == 1
    # A path no route matched is one label, whatever the path was.
    assert value(text, DURATION + "_count", route="", method="GET", status="404") == 1


async def test_acknowledged_appends_are_timed_and_refused_ones_are_not(autojump_clock):
    async with serving() as api:
        await api.client.put("/v1/stream/a", headers=TEXT)
        for _ in range(3):
            assert (await api.client.post("/v1/stream/a", data=b"x", headers=TEXT)).status_code == 204
        refused = await api.client.post("/v1/stream/a", data=b"x", headers={"Content-Type": "image/png"})
        assert refused.status_code == 409
        text = await scrape(api)
    assert value(text, "trio_streams_durable_append_duration_seconds_count") == 3
    assert value(text, "trio_streams_durable_append_duration_seconds_sum") == 0.0  # memory: no wait


async def test_delivery_lag_counts_live_writes_not_replayed_history(autojump_clock):
    app = create_app(demo=False, wall_clock=trio.current_time)
    streams = app.extensions["trio_streams"]

    @streams.producer("ticks")
    async def ticks(ctx):  # type: ignore[no-untyped-def]
        for tick in range(3):
            await trio.sleep(1)
            await ctx.emit("tick", tick)
        await trio.sleep(1)

    lag = "trio_streams_sse_delivery_lag_seconds"
    async with app.test_app() as test_app:
        client = test_app.test_client()
        run = await (await client.post("/v1/runs", json={"producer": "ticks"})).get_json()
        live = await client.get(f"/v1/runs/{run['run_id']}/events")
        assert (await raw(live)).count(b"event: tick") == 3
        assert trio.current_time() == 4.0
        text = (await raw(await client.get("/metrics"))).decode()
        # Three ticks and the terminal event, each written when published.
        assert value(text, lag + "_count") == 4
        assert value(text, lag + "_sum") == 0.0
        await trio.sleep(1)  # (a stream begun at the very instant of an event counts it as live)
        replay = await client.get(f"/v1/runs/{run['run_id']}/events")
        assert (await raw(replay)).count(b"event: tick") == 3
        text = (await raw(await client.get("/metrics"))).decode()
        assert value(text, lag + "_count") == 4


async def test_process_metrics_are_in_the_extensions_registry(autojump_clock):
    async with serving() as api:
        text = await scrape(api)
    found = families(text)
    assert value(text, "process_resident_memory_bytes") > 0
    assert found["python_info"].samples[0].value == 1
    assert "python_gc_collections" in found


async def test_the_fast_paths_give_the_same_series_as_quart():
    async def scenario(url: str) -> str:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.put("/v1/stream/s", headers=TEXT)
            await client.post("/v1/stream/s", content=b"x", headers=TEXT)
            await client.post("/v1/stream/s", content=b"x", headers={"Content-Type": "image/png"})
            start = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 2, "rate": None}}
            )
            await client.get(f"/v1/runs/{start.json()['run_id']}/events")
            await client.post("/v1/runs", json={"producer": "nope"})
            return (await client.get("/metrics")).text

    seen = {}
    for fast in (True, False):
        with trio.fail_after(DEADLINE):
            async with serving_on_path(create_app(), fast=fast) as (url, _):
                seen[fast] = await scenario(url)
    for text in seen.values():
        assert value(text, "trio_streams_durable_append_duration_seconds_count") == 1
    fast_labels, quart_labels = (label_sets(seen[fast], DURATION + "_count") for fast in (True, False))
    assert fast_labels == quart_labels
    assert (("method", "POST"), ("route", "/v1/runs"), ("status", "400")) in fast_labels
    assert (("method", "GET"), ("route", "/v1/runs/<run_id>/events"), ("status", "200")) in fast_labels


@pytest.mark.redis
async def test_both_stores_give_the_same_names(redis_url: str, prefix: str):
    texts = {}
    stores: dict[str, dict[str, Any]] = {
        "memory": {},
        "redis": {"store": RedisStore(redis_url, prefix=prefix)},
    }
    with trio.fail_after(DEADLINE):
        for name, options in stores.items():
            async with running_server(**options) as server, httpx.AsyncClient(base_url=server.url) as client:
                await client.put("/v1/stream/s", headers=TEXT)
                await client.post("/v1/stream/s", content=b"x", headers=TEXT)
                texts[name] = (await client.get("/metrics")).text
    memory, redis = (set(families(texts[name])) for name in ("memory", "redis"))
    # What only one store can count (see web/_metrics_stats.py): memory what it holds, Redis its group commit.
    memory_only = {"trio_streams_durable_streams", "trio_streams_durable_stream_bytes"}
    redis_only = {
        "trio_streams_durable_commits",
        "trio_streams_durable_appends",
        "trio_streams_durable_append_refusals",
    }
    assert memory - memory_only == redis - redis_only
    assert memory_only <= memory
    assert redis_only <= redis
    for text in texts.values():
        assert value(text, "trio_streams_durable_append_duration_seconds_count") == 1
        assert value(text, "trio_streams_durable_pending_appends") == 0


@pytest.mark.redis
async def test_the_redis_writer_reports_each_flushs_oldest_event(redis_url: str, prefix: str):
    seen: list[float] = []
    with trio.fail_after(DEADLINE):
        store = RedisStore(redis_url, prefix=prefix)
        async with trio.open_nursery() as nursery:
            await store.start(nursery)
            store.observe_persisted(seen.append)
            writer = store._writer
            # Pushed without a checkpoint between them: one flush, its oldest event first.
            for seq, timestamp in ((1, 10.0), (2, 11.0), (3, 12.0)):
                store.append_nowait("r1", Event.create(seq, "token", seq, timestamp))
            await writer.wait_durable(writer.ticket())
            assert seen == [10.0]
            store.append_nowait("r1", Event.create(4, "token", 4, 20.0))
            await writer.wait_durable(writer.ticket())
            assert seen == [10.0, 20.0]
            await store.aclose()
            nursery.cancel_scope.cancel()


async def test_persist_lag_is_the_wall_clocks_distance_to_the_oldest_event():
    clock = [100.0]
    metrics = create_app().extensions["trio_streams"].metrics
    persisted = metrics.persist_observer(lambda: clock[0])
    persisted(97.5)
    clock[0] = 99.0  # an instance whose clock is behind the publisher's: never a negative lag
    persisted(99.5)
    text = metrics.exposition().decode()
    assert value(text, "trio_streams_store_persist_lag_seconds_count") == 2
    assert value(text, "trio_streams_store_persist_lag_seconds_sum") == 2.5
    assert value(text, "trio_streams_store_persist_lag_seconds_bucket", le="0.001") == 1


async def test_a_request_that_fails_past_every_handler_is_timed_as_a_500(autojump_clock):
    app = create_app()

    @app.get("/boom")
    async def boom() -> str:
        await trio.sleep(0.5)
        raise RuntimeError("a bug in the app's own route")

    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/boom")).status_code == 500
        text = (await raw(await client.get("/metrics"))).decode()
    assert value(text, DURATION + "_count", route="/boom", method="GET", status="500") == 1
    assert value(text, DURATION + "_sum", route="/boom", method="GET", status="500") == 0.5


async def test_a_request_whose_after_request_hook_fails_is_timed_as_a_500(autojump_clock):
    app = create_app()

    @app.after_request
    async def broken(response):  # type: ignore[no-untyped-def]
        # Runs before the extension's own hook (Quart runs them last-registered first).
        if request.path == "/v1/runs":
            raise RuntimeError("a bug in the app's own hook")
        return response

    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/v1/runs")).status_code == 500
        text = (await raw(await client.get("/metrics"))).decode()
    assert value(text, DURATION + "_count", route="/v1/runs", method="GET", status="500") == 1


def test_a_writes_lag_is_its_oldest_live_events():
    def event(seq: int, timestamp: float) -> Event:
        return Event.create(seq, "token", seq, timestamp)

    since = 4.0
    assert _oldest_live([event(1, 1.0), event(2, 5.0), event(3, 6.0)], since) == 5.0  # history, then live
    assert _oldest_live([event(1, 4.0), Heartbeat(9.0)], since) == 4.0
    assert _oldest_live([event(1, 1.0), event(2, 2.0)], since) is None
    assert _oldest_live([Gap(3, 4), event(4, 1.0), Heartbeat(9.0)], since) is None
