"""Simultaneous starts of one key on two instances: never two live runs.

For each policy, 200 rounds of two starts of one fresh key at the same
moment, one per instance: across two real ``trio-streams serve`` processes
on one Redis (black box: the demo's tokens carry the time they were emitted,
so overlapping producers are seen from outside), and across two hubs on the
Redis Cluster fixture (white box: the producers count themselves).

Real processes, sockets and Redis: the real clock under trio deadlines.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest
import trio

from trio_streams import RunConflict, RunStatus, open_hub
from trio_streams.log.redis import RedisStore

from .redis_support import unique_prefix
from .test_serve_cli import serve_process as serve_process

PAIRS = 200
#: Rounds being started at once.
CONCURRENCY = 10
POLICIES = ("reject", "interrupt", "enqueue")


async def _token_span(client: httpx.AsyncClient, run_id: str) -> tuple[tuple[float, float] | None, Any]:
    """(first, last) emission times of the run's tokens (None: it emitted none), and
    its terminal event's data. Reading the event stream waits for the run's end."""
    stamps: list[float] = []
    terminal: Any = None
    event = ""
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data = json.loads(line.partition(":")[2])
                if event == "token":
                    stamps.append(data["ts"])
                else:
                    terminal = (event, data)
    return ((min(stamps), max(stamps)) if stamps else None), terminal


async def _rounds(a: httpx.AsyncClient, b: httpx.AsyncClient, policy: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    # Runs of 3 s (tokens at 2/s): the two starts of a round reach their
    # servers well within it, even on a loaded machine.
    body = {"producer": "demo", "input": {"tokens": 7, "rate": 2}, "on_conflict": policy}
    rounds: list[list[str]] = []

    async def start(client: httpx.AsyncClient, key: str, ids: list[str]) -> None:
        response = await client.post("/v1/runs", json={**body, "key": key})
        if response.status_code == 201:
            ids.append(response.json()["run_id"])
        else:
            assert response.status_code == 409, response.text
            counts["refused"] += 1

    async def one_round(n: int, limiter: trio.Semaphore) -> None:
        async with limiter:
            ids: list[str] = []
            async with trio.open_nursery() as nursery:  # both sent in one scheduler tick
                nursery.start_soon(start, a, f"{policy}-{n}", ids)
                nursery.start_soon(start, b, f"{policy}-{n}", ids)
            rounds.append(ids)

    async def check(ids: list[str], limiter: trio.Semaphore) -> None:
        async with limiter:
            ends = [await _token_span(a, run_id) for run_id in ids]
        spans = [span for span, _terminal in ends if span is not None]
        if len(spans) == 2 and spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1]:
            counts["double"] += 1
        for _span, (event, data) in ends:
            counts[f"{event}:{data.get('reason')}"] += 1

    async with trio.open_nursery() as nursery:
        posting = trio.Semaphore(CONCURRENCY)
        for n in range(PAIRS):
            nursery.start_soon(one_round, n, posting)
    async with trio.open_nursery() as nursery:
        reading = trio.Semaphore(50)
        for ids in rounds:
            nursery.start_soon(check, ids, reading)
    return counts


async def test_two_server_processes_never_run_one_key_twice(serve_process, redis_url, prefix):
    with trio.fail_after(150):
        args = ("--redis-url", redis_url, "--redis-prefix", prefix, "--log-level", "error")
        server_a, server_b = await serve_process(*args), await serve_process(*args)
        # Idle connections expire on the client before the server's 5 s keep-alive
        # closes them: a request never races a close (a reset under load).
        limits = httpx.Limits(max_connections=4 * CONCURRENCY, keepalive_expiry=2)
        async with (
            httpx.AsyncClient(base_url=server_a.url, limits=limits, timeout=60) as a,
            httpx.AsyncClient(base_url=server_b.url, limits=limits, timeout=60) as b,
        ):
            for policy in POLICIES:
                counts = await _rounds(a, b, policy)
                assert counts["double"] == 0, (policy, counts)
                # The rounds really contended (else the test proves nothing).
                if policy == "reject":
                    assert counts["refused"] >= PAIRS // 2, counts
                elif policy == "interrupt":
                    assert counts["cancelled:interrupted"] >= PAIRS // 2, counts
                    assert counts["done:None"] >= PAIRS, counts
                else:
                    assert counts["done:None"] == 2 * PAIRS, counts


@pytest.mark.parametrize("policy", POLICIES)
async def test_no_key_runs_twice_across_instances_on_a_cluster(redis_cluster, policy):
    with trio.fail_after(120):
        prefix = unique_prefix()
        a = RedisStore(redis_cluster.url, prefix=prefix, cluster=True)
        b = RedisStore(redis_cluster.url, prefix=prefix, cluster=True)
        active: Counter[str] = Counter()
        counts: Counter[str] = Counter()

        async def producer(ctx: Any) -> None:
            assert ctx.key is not None
            active[ctx.key] += 1
            counts["ran"] += 1
            if active[ctx.key] > 1:
                counts["double"] += 1
            try:
                await trio.sleep(0.2)
            finally:
                active[ctx.key] -= 1

        async with open_hub(a, grace_period=0) as hub_a, open_hub(b, grace_period=0) as hub_b:
            limiter = trio.Semaphore(50)

            async def start(hub: Any, key: str, runs: list[tuple[Any, str]]) -> None:
                try:
                    run = await hub.start(producer, key=key, on_conflict=policy)
                except RunConflict:
                    counts["refused"] += 1
                else:
                    runs.append((hub, run.id))

            async def one_round(n: int) -> None:
                async with limiter:
                    runs: list[tuple[Any, str]] = []
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(start, hub_a, f"k{n}", runs)
                        nursery.start_soon(start, hub_b, f"k{n}", runs)
                    for hub, run_id in runs:
                        info = await hub.wait(run_id)
                        counts[f"{info.status.value}:{info.reason}"] += 1
                        assert info.status in (RunStatus.DONE, RunStatus.CANCELLED)

            async with trio.open_nursery() as nursery:
                for n in range(PAIRS):
                    nursery.start_soon(one_round, n)
        assert counts["double"] == 0, counts
        if policy == "reject":
            assert counts["refused"] >= PAIRS // 2, counts
        elif policy == "interrupt":
            assert counts["cancelled:interrupted"] >= PAIRS // 2, counts
        else:
            assert counts["done:None"] == 2 * PAIRS, counts
