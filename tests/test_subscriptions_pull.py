"""Pull-wake subscriptions on the memory store, on the autojump clock: exact times.

The registry is driven directly (with the store it watches through
``SubscribedBackend``): membership, wakes in the wake stream, claims,
fencing, acks, release and lease expiry.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_streams.durable import DurableStreamError, DurableStreamStore
from trio_streams.durable._backend import as_backend
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import SubscribedBackend, with_subscriptions
from trio_streams.durable._sub_config import parse_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_streams.durable._subscriptions import SubscriptionRegistry

JSON = "application/json"


@asynccontextmanager
async def registry() -> AsyncIterator[tuple[SubscribedBackend, SubscriptionRegistry, DurableStreamStore]]:
    store = DurableStreamStore()
    backend = with_subscriptions(as_backend(store))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.registry.serve)
        yield backend, backend.registry, store
        nursery.cancel_scope.cancel()


async def create(backend: SubscribedBackend, name: str, body: bytes = b"") -> None:
    await backend.create(name, CreateRequest(content_type=JSON, body=body))


async def append(backend: SubscribedBackend, name: str, body: bytes = b'{"n": 1}') -> str:
    return str((await backend.append(name, AppendRequest(body, JSON))).next_offset)


def wake_events(store: DurableStreamStore, name: str) -> list[dict[str, Any]]:
    """The JSON messages of ``name`` (a JSON stream of the memory store)."""
    found = store.read(store.head(name), 0)
    return [json.loads(bytes(message)) for piece in found.pieces for message in piece]


PULL = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 5000}


async def test_data_on_a_matching_stream_appends_one_wake_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with registry() as (backend, subs, store):
        await create(backend, "wake/pool")
        await create(backend, "events/old", b'{"a": 1}')
        await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        # Backfilled at its tail: nothing pending, no wake.
        assert (await subs.get(None, "s1")).links["events/old"].link_type == "glob"
        assert not (await subs.get(None, "s1")).has_pending()
        await create(backend, "other/x", b'{"a": 1}')  # does not match
        await create(backend, "events/new", b'{"a": 1}')
        await trio.testing.wait_all_tasks_blocked()
        events = wake_events(store, "wake/pool")
        assert [(e["type"], e["subscription_id"], e["stream"], e["generation"]) for e in events] == [
            ("wake", "s1", "events/new", 1)
        ]
        # More data while the wake is in flight: no second wake.
        await append(backend, "events/new")
        await append(backend, "events/old")
        await trio.testing.wait_all_tasks_blocked()
        assert len(wake_events(store, "wake/pool")) == 1


async def test_claim_is_exclusive_and_ack_done_frees_it(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, _):
        await create(backend, "wake/pool")
        await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        with pytest.raises(DurableStreamError) as idle:
            await subs.claim(None, "s1", "w1")
        assert (idle.value.status, idle.value.code) == (409, "NO_PENDING_WORK")
        await create(backend, "events/a", b'{"a": 1}')
        tail = await append(backend, "events/a")
        sub, wake = await subs.claim(None, "s1", "w1")
        with pytest.raises(DurableStreamError) as busy:
            await subs.claim(None, "s1", "w2")
        assert (busy.value.status, busy.value.code) == (409, "ALREADY_CLAIMED")
        assert busy.value.holder == "w1"  # type: ignore[attr-defined]
        request = {
            "wake_id": wake.wake_id,
            "generation": wake.generation,
            "acks": [{"stream": "events/a", "offset": tail}],
        }
        assert await subs.ack(None, "s1", wake.token, {**request, "done": True}, kind="pull-wake") is False
        assert str(sub.links["events/a"].acked) == tail
        # The same ack again: fenced (the wake ended).
        with pytest.raises(DurableStreamError) as stale:
            await subs.ack(None, "s1", wake.token, {**request, "done": True}, kind="pull-wake")
        assert (stale.value.status, stale.value.code) == (409, "FENCED")
        # Nothing pending now: no claim.
        with pytest.raises(DurableStreamError):
            await subs.claim(None, "s1", "w2")


async def test_fencing_needs_token_wake_id_and_generation(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, _):
        await create(backend, "wake/pool")
        await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        _, wake = await subs.claim(None, "s1", "w1")
        good = {"wake_id": wake.wake_id, "generation": wake.generation}
        for token, request in [
            ("not-the-token", good),
            (None, good),
            (wake.token, {**good, "generation": wake.generation + 1}),
            (wake.token, {**good, "wake_id": "w_other"}),
        ]:
            with pytest.raises(DurableStreamError) as refused:
                await subs.ack(None, "s1", token, request, kind="pull-wake")
            assert refused.value.code == "FENCED"
        assert await subs.ack(None, "s1", wake.token, good, kind="pull-wake") is False  # a heartbeat


async def test_the_lease_expires_exactly_and_heartbeats_extend_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with registry() as (backend, subs, store):
        await create(backend, "wake/pool")
        await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        start = trio.current_time()
        _, wake = await subs.claim(None, "s1", "w1")
        await trio.sleep(3)
        # A heartbeat at t+3 moves the deadline to t+8.
        await subs.ack(
            None, "s1", wake.token, {"wake_id": wake.wake_id, "generation": wake.generation}, kind="pull-wake"
        )
        await trio.sleep_until(start + 8 - 0.001)
        with pytest.raises(DurableStreamError) as held:
            await subs.claim(None, "s1", "w2")
        assert held.value.code == "ALREADY_CLAIMED"
        await trio.sleep_until(start + 8)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == start + 8
        # Expired: the old token is fenced, the work is pending again (a new wake event), w2 claims.
        with pytest.raises(DurableStreamError) as stale:
            await subs.ack(
                None,
                "s1",
                wake.token,
                {"wake_id": wake.wake_id, "generation": wake.generation},
                kind="pull-wake",
            )
        assert stale.value.code == "FENCED"
        assert [e["generation"] for e in wake_events(store, "wake/pool")] == [1, 2]
        _, second = await subs.claim(None, "s1", "w2")
        assert second.generation == 2


async def test_release_makes_a_new_wake_for_pending_work(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, store):
        await create(backend, "wake/pool")
        await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        await trio.testing.wait_all_tasks_blocked()
        _, wake = await subs.claim(None, "s1", "w1")
        await subs.release(None, "s1", wake.token, {"wake_id": wake.wake_id, "generation": wake.generation})
        await trio.testing.wait_all_tasks_blocked()
        assert [e["generation"] for e in wake_events(store, "wake/pool")] == [1, 2]
        _, again = await subs.claim(None, "s1", "w2")
        assert again.generation == 2


async def test_membership_explicit_glob_and_removal(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, _):
        await create(backend, "wake/pool")
        config = parse_config({**PULL, "streams": ["events/x", "manual/a"]})
        sub, created = await subs.put(None, "s1", config, "http://x/cb")
        assert created
        assert (await subs.put(None, "s1", config, "http://x/cb"))[1] is False
        with pytest.raises(DurableStreamError) as other:
            await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        assert (other.value.status, other.value.code) == (409, "SUBSCRIPTION_ALREADY_EXISTS")
        await create(backend, "events/x", b'{"a": 1}')
        assert sub.links["events/x"].link_type == "explicit"
        await subs.remove_stream(None, "s1", "events/x")
        assert sub.links["events/x"].link_type == "glob"  # the pattern still matches
        await subs.remove_stream(None, "s1", "manual/a")
        assert "manual/a" not in sub.links
        await subs.add_streams(None, "s1", ("manual/b",))
        assert sub.links["manual/b"].link_type == "explicit"
        # The wake stream is never a member (it would wake itself).
        await append(backend, "wake/pool")
        assert "wake/pool" not in sub.links
        await subs.delete(None, "s1")
        with pytest.raises(DurableStreamError) as gone:
            await subs.get(None, "s1")
        assert gone.value.status == 404


async def test_owners_see_only_their_streams(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, _):
        await backend.create("wake/pool", CreateRequest(content_type=JSON), owner="alice")
        sub, _ = await subs.put("alice", "s1", parse_config(PULL), "http://x/cb")
        await backend.create("events/a", CreateRequest(content_type=JSON, body=b"{}"), owner="bob")
        assert sub.links == {}
        await backend.create("events/a", CreateRequest(content_type=JSON, body=b"{}"), owner="alice")
        assert list(sub.links) == ["events/a"]


async def test_a_pattern_covering_the_wake_stream_never_wakes_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with registry() as (backend, subs, store):
        await create(backend, "wake/pool")
        sub, _ = await subs.put(None, "all", parse_config({**PULL, "pattern": "**"}), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        await trio.testing.wait_all_tasks_blocked()
        assert len(wake_events(store, "wake/pool")) == 1
        assert list(sub.links) == ["events/a"]
        _, wake = await subs.claim(None, "all", "w1")
        tail = str(sub.links["events/a"].tail)
        request = {"wake_id": wake.wake_id, "generation": 1, "acks": [{"stream": "events/a", "offset": tail}]}
        assert await subs.ack(None, "all", wake.token, {**request, "done": True}, kind="pull-wake") is False
        await trio.testing.wait_all_tasks_blocked()
        assert len(wake_events(store, "wake/pool")) == 1


async def test_acks_never_move_a_cursor_back(autojump_clock: trio.testing.MockClock) -> None:
    async with registry() as (backend, subs, _):
        await create(backend, "wake/pool")
        sub, _ = await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        tail = await append(backend, "events/a")
        _, wake = await subs.claim(None, "s1", "w1")
        good = {"wake_id": wake.wake_id, "generation": wake.generation}
        await subs.ack(
            None,
            "s1",
            wake.token,
            {**good, "acks": [{"stream": "events/a", "offset": tail}]},
            kind="pull-wake",
        )
        earlier = "0000000000000001_0000000000000001"
        await subs.ack(
            None,
            "s1",
            wake.token,
            {**good, "acks": [{"stream": "events/a", "offset": earlier}]},
            kind="pull-wake",
        )
        assert str(sub.links["events/a"].acked) == tail
        # Past the tail, or a stream not linked: 400, nothing applied.
        for acks in (
            [{"stream": "events/a", "offset": "0000000000000009_0000000000000009"}],
            [{"stream": "nope", "offset": tail}],
        ):
            with pytest.raises(DurableStreamError) as refused:
                await subs.ack(None, "s1", wake.token, {**good, "acks": acks}, kind="pull-wake")
            assert refused.value.status == 400


async def test_a_restarted_registry_wakes_pending_work_afresh(autojump_clock: trio.testing.MockClock) -> None:
    store = DurableStreamStore()
    backend = with_subscriptions(as_backend(store))
    subs = backend.registry
    async with trio.open_nursery() as nursery:
        await nursery.start(subs.serve)
        await create(backend, "wake/pool")
        sub, _ = await subs.put(None, "s1", parse_config(PULL), "http://x/cb")
        await create(backend, "events/a", b'{"a": 1}')
        _, wake = await subs.claim(None, "s1", "w1")
        nursery.cancel_scope.cancel()
    # Stopped: the claim's token is fenced, the cursor kept.
    with pytest.raises(DurableStreamError) as stale:
        await subs.ack(None, "s1", wake.token, {"wake_id": wake.wake_id, "generation": 1}, kind="pull-wake")
    assert stale.value.code == "FENCED"
    async with trio.open_nursery() as nursery:
        await nursery.start(subs.serve)
        await append(backend, "events/a")
        await trio.testing.wait_all_tasks_blocked()
        assert [e["generation"] for e in wake_events(store, "wake/pool")] == [1, 2]
        _, again = await subs.claim(None, "s1", "w2")
        assert (again.generation, str(sub.links["events/a"].acked)) == (
            2,
            "0000000000000000_0000000000000000",
        )
        nursery.cancel_scope.cancel()
