"""Refusals tell a user nothing of what other users hold (an audit after the ETag finding).

Two error messages carried server-wide figures: the memory budget's refusal
said how much memory every user's runs and streams held (a run's ``429
at_capacity``, a memory Durable Stream's ``507 store_full``, a run's
``memory_budget`` error), and the Redis store's ``503 store_busy`` how many
appends of every user were waiting. With tokens, alice could watch bob's
activity through them. The figures stay in /metrics and in the exceptions'
attributes; the messages name only the configured limit.

Real Hypercorn servers and a real redis-server: no mocks, no mock clock;
every test runs under a trio deadline.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from trio_streams.durable import DurableStreamError
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.log._budget import MemoryBudget, MemoryBudgetExceeded, mib

from .server_support import running_server
from .test_durable_redis_batch import HeldScript, store_on

if TYPE_CHECKING:
    from trio_streams.durable import RedisDurableStore

DEADLINE = 20
KiB, MiB = 1024, 1024 * 1024
TOKENS = {"a-secret": "alice", "b-secret": "bob"}
ALICE = {"Authorization": "Bearer a-secret"}
BOB = {"Authorization": "Bearer b-secret"}
TEXT = {"Content-Type": "text/plain"}


def test_a_budget_refusal_names_the_limit_not_what_is_held() -> None:
    budget = MemoryBudget(8 * MiB)
    budget.reserve(5 * MiB + 123_456)  # others' runs and streams
    with pytest.raises(MemoryBudgetExceeded) as refused:
        budget.reserve(3 * MiB, what="this")
    assert str(refused.value) == "this needs 3 MiB and the memory budget is full (max_memory=8 MiB)"
    assert refused.value.used == 5 * MiB + 123_456, "kept for the operator (and in /metrics)"


async def test_alice_is_refused_without_learning_what_bob_holds() -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, max_memory=MiB, max_event_bytes=KiB) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            bobs = await client.put("/v1/stream/big", content=b"b" * (900 * KiB), headers={**BOB, **TEXT})
            assert bobs.status_code == 201
            held = mib(server.streams.hub.budget.used)
            mine = b"a" * (400 * KiB)
            refused = await client.put("/v1/stream/mine", content=mine, headers={**ALICE, **TEXT})
            assert refused.status_code == 507
            error = refused.json()["error"]
            assert error["code"] == "store_full"
            assert error["message"].endswith("the memory budget is full (max_memory=1 MiB)")
            assert held not in refused.text
            start = {"producer": "demo", "input": {"tokens": 1}}
            run = await client.post("/v1/runs", json=start, headers=ALICE)
            assert run.status_code == 429
            assert run.json()["error"]["code"] == "at_capacity"
            assert "max_memory=1 MiB" in run.text
            assert held not in run.text


async def bobs_append(nursery: trio.Nursery, store: RedisDurableStore, body: bytes) -> None:
    """Start an append of bob's, queued when this returns."""

    async def run(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        # No checkpoint between started() and the append queueing its request.
        await store.append("s", AppendRequest(body, "text/plain"), owner="bob")

    await nursery.start(run)


@pytest.mark.redis
async def test_store_busy_tells_no_count_of_others_appends(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix, max_pending_appends=2) as store:
            await store.create("s", CreateRequest("text/plain"), owner="bob")
            await store.create("s", CreateRequest("text/plain"), owner="alice")
            script = HeldScript(store)
            script.hold = True
            async with trio.open_nursery() as nursery:
                await bobs_append(nursery, store, b"b1")
                await script.entered.wait()
                await bobs_append(nursery, store, b"b2")  # two of bob's are waiting: the bound
                with pytest.raises(DurableStreamError) as busy:
                    await store.append("s", AppendRequest(b"a", "text/plain"), owner="alice")
                assert (busy.value.status, busy.value.code) == (503, "store_busy")
                assert busy.value.message == "too many appends are waiting for Redis; retry"
                assert not re.search(r"\d", busy.value.message)
                script.release.set()
