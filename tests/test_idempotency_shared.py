"""Idempotency-Key across instances: on a shared store the keys live in Redis.

The real-I/O tests run two server instances on one Redis (or one Cluster)
with the real clock, under a trio deadline, ordered by the answers only. The
waiting logic is tested on a mock clock, with a records fake in memory.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

from trio_streams.log._store import IdempotencyRecord, IdempotencyRecords, Store
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._idempotency import RedisIdempotency
from trio_streams.web._errors import ApiError
from trio_streams.web._idempotency import IdempotencyKeys

from .server_support import Server, running_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from .redis_support import SyncCluster

DEADLINE = 20
TOKENS = {"alice-secret": "alice", "bob-secret": "bob"}
ALICE = {"Authorization": "Bearer alice-secret"}
BOB = {"Authorization": "Bearer bob-secret"}
QUICK = {"producer": "demo", "input": {"tokens": 2, "rate": None}}


@asynccontextmanager
async def two_instances(
    url: str, prefix: str, *, cluster: bool = False, **options: Any
) -> AsyncIterator[tuple[Server, Server, httpx.AsyncClient, httpx.AsyncClient]]:
    """Two server instances whose runs live in the Redis at ``url``, and a client of each."""

    def instance() -> AbstractAsyncContextManager[Server]:
        return running_server(store=RedisStore(url, prefix=prefix, cluster=cluster), **options)

    async with (
        instance() as a,
        instance() as b,
        httpx.AsyncClient(base_url=a.url) as on_a,
        httpx.AsyncClient(base_url=b.url) as on_b,
    ):
        yield a, b, on_a, on_b


async def post(
    client: httpx.AsyncClient, key: str, body: dict[str, Any] = QUICK, headers: Mapping[str, str] = {}
) -> httpx.Response:
    return await client.post("/v1/runs", json=body, headers={"Idempotency-Key": key, **headers})


async def runs_of(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[str]:
    listed = (await client.get("/v1/runs", headers=headers or {})).json()
    return [run["run_id"] for run in listed["runs"]]


# -- two instances on one Redis ----------------------------------------------------------


@pytest.mark.redis
async def test_a_retry_on_another_instance_gets_the_same_run(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            first = await post(on_a, "retry-1")
            assert first.status_code == 201
            run_id = first.json()["run_id"]
            again = await post(on_b, "retry-1")
            assert (again.status_code, again.json()["run_id"]) == (200, run_id)
            assert (await post(on_a, "retry-1")).json()["run_id"] == run_id
            assert await runs_of(on_b) == [run_id], "one run, not one per instance"


@pytest.mark.redis
async def test_keys_are_per_owner_across_instances(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix, auth=TOKENS) as (_a, _b, on_a, on_b):
            alices = await post(on_a, "k", headers=ALICE)
            assert alices.status_code == 201
            bobs = await post(on_b, "k", headers=BOB)
            assert bobs.status_code == 201, "bob's key is his own: a run of his"
            assert bobs.json()["run_id"] != alices.json()["run_id"]
            assert bobs.json()["owner"] == "bob"
            assert (await post(on_a, "k", headers=BOB)).json()["run_id"] == bobs.json()["run_id"]
            assert (await post(on_b, "k", headers=ALICE)).json()["run_id"] == alices.json()["run_id"]
            assert await runs_of(on_a, BOB) == [bobs.json()["run_id"]]


@pytest.mark.redis
async def test_a_different_body_on_another_instance_is_422(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            assert (await post(on_a, "body")).status_code == 201
            other = await post(on_b, "body", {"producer": "demo", "input": {"tokens": 3, "rate": None}})
            assert other.status_code == 422
            assert other.json()["error"]["code"] == "idempotency_key_reused"
            assert len(await runs_of(on_b)) == 1


@pytest.mark.redis
async def test_concurrent_duplicates_across_instances_start_one_run(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, _b, on_a, on_b):
            answers: list[httpx.Response] = []

            async def one(client: httpx.AsyncClient) -> None:
                answers.append(await post(client, "at-once"))

            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(one, on_a if i % 2 else on_b)
            assert len({answer.json()["run_id"] for answer in answers}) == 1
            assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 200, 200, 201]
            assert len(await runs_of(on_a)) == 1


@pytest.mark.redis
async def test_a_failed_first_request_releases_the_key_for_a_retry_elsewhere(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with two_instances(redis_url, prefix) as (_a, b, on_a, on_b):
            # A pending claim left behind would make B wait this long, then 503.
            b.streams.idempotency.pending_ttl = 2.0
            holder = await on_a.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 1000, "rate": 1}, "key": "conv"}
            )
            assert holder.status_code == 201
            keyed = {**QUICK, "key": "conv", "on_conflict": "reject"}
            refused = await post(on_a, "after-409", keyed)
            assert refused.status_code == 409
            cancel = await on_a.post(f"/v1/runs/{holder.json()['run_id']}/cancel?wait=true")
            assert cancel.json()["status"] == "cancelled"
            retried = await post(on_b, "after-409", keyed)
            assert retried.status_code == 201, retried.json()


@pytest.mark.redis
async def test_records_expire_after_the_idempotency_ttl(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        store = RedisStore(redis_url, prefix=prefix, idempotency_ttl=60.0)
        async with running_server(store=store) as server, httpx.AsyncClient(base_url=server.url) as client:
            assert (await post(client, "ttl")).status_code == 201
            ttl_ms = await store.client.pttl(store.keys.idempotency(None, "ttl"))
            assert 0 < ttl_ms <= 60_000
    default = RedisStore(redis_url, ttl_running=10.0, ttl_finished=20.0)
    records = default.idempotency_records()
    assert isinstance(records, RedisIdempotency)
    assert records.ttl == 30.0, "by default as long as the run is kept"
    with pytest.raises(ValueError, match="idempotency_ttl"):
        RedisStore(redis_url, idempotency_ttl=0)


@pytest.mark.redis
async def test_the_claim_on_a_cluster(redis_cluster: SyncCluster, prefix: str) -> None:
    with trio.fail_after(30):
        async with two_instances(redis_cluster.url, prefix, cluster=True) as (_a, _b, on_a, on_b):
            answers: list[httpx.Response] = []

            async def one(client: httpx.AsyncClient, key: str) -> None:
                answers.append(await post(client, key))

            async with trio.open_nursery() as nursery:
                for i in range(4):
                    # Keys on different slots; each sent to both instances at once.
                    nursery.start_soon(one, on_a, f"cluster-{i}")
                    nursery.start_soon(one, on_b, f"cluster-{i}")
            by_key: dict[str, set[str]] = {}
            for answer in answers:
                by_key.setdefault(answer.request.headers["Idempotency-Key"], set()).add(
                    answer.json()["run_id"]
                )
            assert all(len(ids) == 1 for ids in by_key.values()), by_key
            assert sorted(answer.status_code for answer in answers) == [200] * 4 + [201] * 4
            other = await post(on_b, "cluster-0", {"producer": "demo", "input": {"tokens": 9, "rate": None}})
            assert other.status_code == 422


# -- the waiting logic, on a mock clock ------------------------------------------------


class FakeRecords(IdempotencyRecords):
    """Records in a dict, as a shared store keeps them (no TTLs: the tests set them)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str | None, str], tuple[str, str, str | None]] = {}
        self.looks: list[float] = []

    async def claim(
        self, owner: str | None, key: str, fingerprint: str, token: str, pending_ttl: float
    ) -> IdempotencyRecord | None:
        await trio.lowlevel.checkpoint()
        self.looks.append(trio.current_time())
        found = self.values.get((owner, key))
        if found is None:
            self.values[owner, key] = (token, fingerprint, None)
            return None
        return IdempotencyRecord(found[1], found[2])

    async def record(self, owner: str | None, key: str, token: str, fingerprint: str, run_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        self.values[owner, key] = ("", fingerprint, run_id)
        return True

    async def release(self, owner: str | None, key: str, token: str) -> None:
        await trio.lowlevel.checkpoint()
        if self.values.get((owner, key), ("",))[0] == token:
            del self.values[owner, key]


class FakeStore:
    def __init__(self, records: IdempotencyRecords) -> None:
        self.records = records

    def idempotency_records(self) -> IdempotencyRecords:
        return self.records


def shared_keys(records: FakeRecords, pending_ttl: float = 30.0) -> IdempotencyKeys:
    keys = IdempotencyKeys(poll_min=0.1, poll_max=0.4, pending_ttl=pending_ttl)
    keys.share_through(FakeStore(records))  # type: ignore[arg-type]
    return keys


async def test_a_duplicate_waits_for_the_pending_claim_then_gets_its_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = FakeRecords()
    keys = shared_keys(records)
    start = trio.current_time()
    started = trio.Event()
    answers: list[tuple[float, str | None]] = []

    async def first() -> None:
        async with keys.claim("alice", "k", b"{}") as claim:
            assert claim.run_id is None
            started.set()
            await trio.sleep(1.0)  # the run is starting
            claim.started("run-1")

    async def duplicate() -> None:
        await started.wait()
        async with keys.claim("alice", "k", b"{}") as claim:
            answers.append((trio.current_time() - start, claim.run_id))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(duplicate)
    # Recorded at 1.0; looks 0.1, 0.2, then 0.4 apart (doubling, capped): seen at 1.1.
    assert [(round(t, 6), run_id) for t, run_id in answers] == [(1.1, "run-1")]
    assert [round(t - start, 6) for t in records.looks] == [0.0, 0.0, 0.1, 0.3, 0.7, 1.1]


async def test_a_claim_pending_past_its_ttl_is_a_503_not_a_second_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = FakeRecords()
    records.values["alice", "k"] = ("other", IdempotencyKeys.fingerprint(b"{}"), None)
    keys = shared_keys(records, pending_ttl=2.0)
    start = trio.current_time()
    with pytest.raises(ApiError) as caught:
        async with keys.claim("alice", "k", b"{}"):
            raise AssertionError("a second request must not start a run")
    assert (caught.value.status, caught.value.code) == (503, "keys_unavailable")
    assert round(trio.current_time() - start, 6) == 2.0


async def test_a_failed_request_releases_its_claim_and_the_duplicate_starts_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = FakeRecords()
    keys = shared_keys(records)
    started = trio.Event()
    fresh: list[str | None] = []

    async def failing() -> None:
        with pytest.raises(RuntimeError):
            async with keys.claim(None, "k", b"{}"):
                started.set()
                await trio.sleep(0.5)
                raise RuntimeError("the run did not start")

    async def duplicate() -> None:
        await started.wait()
        async with keys.claim(None, "k", b"{}") as claim:
            fresh.append(claim.run_id)
            claim.started("run-2")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(failing)
        nursery.start_soon(duplicate)
    assert fresh == [None], "the duplicate starts its own run"
    assert records.values[None, "k"][2] == "run-2"


def test_a_memory_store_keeps_keys_in_process() -> None:
    from trio_streams.log import MemoryStore

    store: Store = MemoryStore()
    assert store.idempotency_records() is None
    keys = IdempotencyKeys()
    keys.share_through(store)
    assert keys._shared is None


class LostReply(FakeRecords):
    """Makes the claim, then the reply is lost (an error), or never comes (cancelled)."""

    def __init__(self, error: Exception | None) -> None:
        super().__init__()
        self.error = error

    async def claim(
        self, owner: str | None, key: str, fingerprint: str, token: str, pending_ttl: float
    ) -> IdempotencyRecord | None:
        await super().claim(owner, key, fingerprint, token, pending_ttl)
        if self.error is not None:
            raise self.error
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_claim_whose_reply_is_lost_is_a_503_and_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = LostReply(ConnectionError("reset"))
    with pytest.raises(ApiError) as caught:
        async with shared_keys(records).claim(None, "k", b"{}"):
            raise AssertionError("no run may start when the store cannot decide")
    assert (caught.value.status, caught.value.code) == (503, "keys_unavailable")
    assert records.values == {}, "the claim that may have been made is undone"


async def test_a_cancelled_claim_is_released(autojump_clock: trio.testing.MockClock) -> None:
    records = LostReply(None)
    with trio.move_on_after(1.0) as scope:
        async with shared_keys(records).claim(None, "k", b"{}"):
            raise AssertionError("unreachable")
    assert scope.cancelled_caught
    assert records.values == {}
