"""Keys over HTTP with tokens: an owner's key is nobody else's business; a
keyed start the shared store cannot claim is a 503.

Real Hypercorn servers (two on one real Redis for the cross-instance cases);
the real clock under trio deadlines.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams.log import MemoryStore
from trio_streams.log.redis import RedisStore

from .redis_support import unique_prefix
from .server_support import running_server
from .test_redis_outage import own_redis

if TYPE_CHECKING:
    from pathlib import Path

AUTH = {"pa": "alice", "pb": "bob"}
ALICE = {"Authorization": "Bearer pa"}
BOB = {"Authorization": "Bearer pb"}
LONG = {"tokens": 100_000, "rate": 20}


def _seen_by_bob(response: httpx.Response) -> str:
    return response.text + repr(sorted(response.headers.items()))


@pytest.mark.parametrize("shared", [False, True], ids=["one-server-memory", "two-servers-redis"])
async def test_another_owners_starts_never_touch_a_key(redis_url, shared):
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            prefix = unique_prefix()

            def store() -> Any:
                return RedisStore(redis_url, prefix=prefix) if shared else MemoryStore()

            server_a = await stack.enter_async_context(running_server(store=store(), auth=AUTH))
            servers = [server_a]
            if shared:
                servers.append(await stack.enter_async_context(running_server(store=store(), auth=AUTH)))
            a = await stack.enter_async_context(httpx.AsyncClient(base_url=server_a.url))
            bobs = [await stack.enter_async_context(httpx.AsyncClient(base_url=s.url)) for s in servers]
            for policy in ("interrupt", "reject", "enqueue"):
                for bob in bobs:
                    started = await a.post(
                        "/v1/runs", json={"producer": "demo", "key": "conv", "input": LONG}, headers=ALICE
                    )
                    assert started.status_code == 201, started.text
                    alice_id = started.json()["run_id"]
                    for _ in range(16 if policy == "enqueue" else 1):
                        response = await bob.post(
                            "/v1/runs",
                            json={
                                "producer": "demo",
                                "key": "conv",
                                "on_conflict": policy,
                                "input": {"tokens": 0},
                            },
                            headers=BOB,
                        )
                        assert response.status_code == 201, (policy, response.text)
                        assert alice_id not in _seen_by_bob(response)
                        assert response.json()["status"] == "running"
                        run_id = response.json()["run_id"]
                        await bob.post(f"/v1/runs/{run_id}/cancel?wait=true", headers=BOB)
                    mine = (await a.get(f"/v1/runs/{alice_id}", headers=ALICE)).json()
                    assert (mine["status"], mine["reason"]) == ("running", None), policy
                    # Her own queue is hers: her next start still queues behind her run.
                    again = await a.post(
                        "/v1/runs",
                        json={"producer": "demo", "key": "conv", "on_conflict": "enqueue"},
                        headers=ALICE,
                    )
                    assert again.status_code == 201, again.text
                    assert again.json()["status"] == "queued"
                    refused = await a.post(
                        "/v1/runs",
                        json={"producer": "demo", "key": "conv", "on_conflict": "reject"},
                        headers=ALICE,
                    )
                    assert refused.status_code == 409
                    assert refused.json()["error"]["run_id"] == alice_id  # her own run
                    for run_id in (again.json()["run_id"], alice_id):
                        await a.post(f"/v1/runs/{run_id}/cancel?wait=true", headers=ALICE)


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["strict", "best_effort"])
async def test_a_keyed_start_redis_cannot_claim_is_a_503_unless_best_effort(tmp_path: Path, mode):
    with trio.fail_after(40):
        async with own_redis(tmp_path) as redis:
            store = RedisStore(
                redis.url, prefix=unique_prefix(), connect_timeout=0.5, stream_timeout=0.5, backoff_max=0.2
            )
            async with (
                running_server(store=store, cross_instance_keys=mode, store_timeout=2) as server,
                httpx.AsyncClient(base_url=server.url, timeout=30) as client,
            ):
                before = await client.post(
                    "/v1/runs", json={"producer": "demo", "key": "k", "input": {"tokens": 0}}
                )
                assert before.status_code == 201
                redis.kill()
                await redis.wait_exited()
                keyed = await client.post(
                    "/v1/runs", json={"producer": "demo", "key": "k2", "input": {"tokens": 0}}
                )
                unkeyed = await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 0}})
                assert unkeyed.status_code == 201, unkeyed.text  # unkeyed runs go on
                if mode == "strict":
                    assert keyed.status_code == 503, keyed.text
                    assert keyed.json()["error"]["code"] == "keys_unavailable"
                    assert keyed.headers["Retry-After"] == "1"
                else:
                    assert keyed.status_code == 201, keyed.text
                await redis.start()
