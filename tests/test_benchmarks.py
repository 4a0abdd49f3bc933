"""Every benchmark runs end to end at tiny sizes and reports its fields.

The figures are never asserted (no timed assertions); what is checked is that
each benchmark still runs, delivers what it says it delivers, and refuses to
report a result built on lost or unpersisted events.
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from benchmarks import bench_durable, bench_http, bench_redis
from benchmarks.bare_asyncio import run_fanout_asyncio
from benchmarks.bench_hub import ASYNCIO, BATCH, QUICK, SINGLE, Sizes, drain, report, run_all
from trio_streams import Event, RunStatus, open_hub
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._server import RedisServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


# -- bench_hub --------------------------------------------------------------------


def test_hub_benchmark_smoke() -> None:
    sizes = Sizes(
        **{**QUICK.__dict__, "events": 300, "replay": 500, "runs": 10, "paced_seconds": 0.05, "idle": 50}
    )
    results = trio.run(run_all, sizes)
    table = report(results)
    # Every scenario produced a finite figure for the hub and both baselines, and a table row.
    for measure, hub_latency, bare_latency in results["fanout"]:
        assert len(hub_latency) == len(bare_latency[BATCH]) == len(bare_latency[SINGLE]) == measure.work
        assert math.isfinite(measure.rate(measure.hub))
        assert all(math.isfinite(measure.rate(measure.bare[name])) for name in (BATCH, SINGLE))
        assert measure.name in table
    for measure in (results["replay"], results["many"]):
        assert len(measure.hub) == len(measure.bare[BATCH]) == len(measure.bare[SINGLE]) == sizes.rounds
    for _, _, hub_paced, bare_paced in results["paced"]:
        assert len(hub_paced) == len(bare_paced) > 0
    assert results["memory"]["subscriber"][0] > 0
    assert "replay of a finished 500-event run" in table
    assert BATCH in table
    assert SINGLE in table
    loop = results["loop"]  # where trio is the bound: hub, bare trio, bare asyncio
    assert len(loop.hub) == len(loop.bare[BATCH]) == len(loop.bare[ASYNCIO]) == sizes.rounds
    assert ASYNCIO in table


@pytest.mark.parametrize("batched", [True, False])
def test_the_asyncio_baseline_delivers_every_event_to_every_subscriber(batched: bool) -> None:
    # A 4-event buffer: the producer also waits on full queues (put), as the trio side in send.
    elapsed, latencies = run_fanout_asyncio(200, 3, 7, batched=batched, buffer=4)
    assert len(latencies) == 200 * 3
    assert elapsed > 0


async def test_drain_takes_everything_buffered_in_one_wakeup(autojump_clock: trio.testing.MockClock) -> None:
    """The batch-draining baseline: one wait, then the whole buffer; the end
    of the channel only after the last batch."""
    send, receive = trio.open_memory_channel[Event](10)
    events = [Event.create(seq, "token", seq, 0.0) for seq in range(1, 6)]
    got: list[list[int]] = []

    async def consume() -> None:
        while True:
            try:
                got.append([event.seq for event in await drain(receive)])
            except trio.EndOfChannel:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        for event in events[:3]:
            send.send_nowait(event)
        await trio.testing.wait_all_tasks_blocked()
        for event in events[3:]:
            send.send_nowait(event)
        send.close()
    assert got == [[1, 2, 3], [4, 5]]
    assert trio.current_time() == 0


# -- bench_redis ------------------------------------------------------------------

TINY_REDIS = bench_redis.Sizes(big=1_200, runs=3, small=50, latency_events=20, ceiling_requests=100)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own: the benchmark flushes its database."""
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.redis
async def test_redis_benchmark_smoke(own_redis: RedisServer) -> None:
    samples = await bench_redis.measure_all(own_redis.url, TINY_REDIS, 1)
    assert all(len(values) == 1 and values[0] > 0 for values in samples.values())
    table = bench_redis.report(samples, TINY_REDIS, None)
    assert "| bare coredis, the same 512-event entries, 16 XADDs per pipeline | 1,200 |" in table
    assert "the bare coredis rate (same entries)" in table


@pytest.mark.redis
async def test_persisted_check_refuses_a_run_not_done(own_redis: RedisServer) -> None:
    async def fails(ctx: Any) -> None:
        ctx.emit_nowait("token", bench_redis.payload(0))
        raise RuntimeError("the producer broke")

    store = RedisStore(own_redis.url, prefix="notdone:")
    async with open_hub(store, grace_period=0) as hub:
        run = await hub.start(fails)
        info = await hub.wait(run.id)
        assert info.status == RunStatus.ERROR
        with pytest.raises(RuntimeError, match="ended error, not done"):
            await bench_redis.check_persisted(store, run.id, info.status, 1)


@pytest.mark.redis
async def test_persisted_check_refuses_a_run_missing_events_in_redis(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, prefix="missing:", max_entry_events=bench_redis.ENTRY_EVENTS)
    async with open_hub(store, grace_period=0) as hub:
        run = await hub.start(bench_redis.make_producer(1_100))
        info = await hub.wait(run.id)
        await bench_redis.check_persisted(store, run.id, info.status, 1_100)  # whole: passes
        key = store.keys.events(run.id)
        first_id = (await store.client.xrange(key, count=1))[0].identifier
        await store.client.xdel(key, [first_id])
        with pytest.raises(RuntimeError, match="Redis holds"):
            await bench_redis.check_persisted(store, run.id, info.status, 1_100)


# -- bench_durable ----------------------------------------------------------------


def test_durable_benchmark_generator_smoke() -> None:
    """The load generator against our server and both no-op ceilings (the Node
    reference needs npm and is left to the benchmark itself)."""
    server = bench_durable.ours()
    try:
        appended = trio.run(bench_durable.appends, server.port, 2, 0.4, 64, "smoke")
        latency = trio.run(bench_durable.latency, server.port, 2, 0.5, 20.0, "smoke")
    finally:
        server.stop()
    assert appended["appends"] > 0
    assert appended["errors"] == 0
    assert latency["expected"] == 10
    assert latency["delivered"] == latency["expected"]
    assert latency["lost"] == 0
    assert latency["errors"] == 0
    assert latency["p50"] <= latency["p99"]
    for start in (bench_durable.ceiling, bench_durable.raw_ceiling):
        top = start()
        try:
            assert trio.run(bench_durable.appends, top.port, 2, 0.2, 64, "smoke")["appends"] > 0
        finally:
            top.stop()


def test_durable_benchmark_fails_on_lost_deliveries() -> None:
    assert bench_durable.lost_deliveries({"ours": [10, 10], "reference": [10, 10]}) == []
    (failure,) = bench_durable.lost_deliveries({"ours": [7, 10], "reference": [10, 10]})
    assert failure.startswith("ours: 3 of 10 appends never reached their long-poll reader")


# -- bench_http -------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_http_benchmark_smoke() -> None:
    sizes = bench_http.Sizes(
        replay_events=300,
        live_runs=2,
        live_events=20,
        live_rates=(100.0,),
        idle_connections=20,
        idle_seconds=1.0,
        rounds=1,
    )
    figures = bench_http.measure_all(sizes, plots=False)
    for key in ("replay", "curl_replay") if figures["curl"] else ("replay",):
        assert set(figures[key]) == {"ours", *bench_http.CEILINGS}
        assert all(len(values) == 1 and values[0] > 0 for values in figures[key].values())
    assert figures["live_p50"][100.0]
    assert figures["idle_per_connection"]
    table = bench_http.report(figures)
    assert "(a) replay a finished 300-event run, 1 client" in table
    assert all(name in table for name in bench_http.CEILINGS)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_http_replay_only_smoke() -> None:
    rates = bench_http.replay_interleaved(2, 300)
    assert set(rates) == {"ours", *bench_http.CEILINGS}
    assert all(len(values) == 2 and min(values) > 0 for values in rates.values())
    table = bench_http.report_replay(rates, 300)
    assert "| trio_streams |" in table
    assert "1.00x |" in table  # the stronger ceiling, against itself


async def test_fast_path_cpu_benchmark_smoke() -> None:
    from benchmarks.bench_fast_path_cpu import measure

    # It checks every append's 204 and the stream's tail itself.
    assert await measure(50) > 0
