"""Subscriptions whose state is in Redis, shared by instances: real redis-server, real clock.

Each "instance" is a RedisDurableStore of its own (its own connection, as
another server process would have) with a registry on RedisSubscriptionState,
on one Redis (and on a 3-master Cluster). Every wait is for a condition,
under a trio deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams._exception_groups import collapse
from trio_streams.durable import DurableStreamError, RedisDurableStore
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import SubscribedBackend, with_subscriptions
from trio_streams.durable._sub_config import parse_config
from trio_streams.durable._sub_state import Retry, Subscription
from trio_streams.durable._webhook_signing import WebhookSigner
from trio_streams.durable.redis._sub_layout import SubKeys, decode, encode_state
from trio_streams.durable.redis._sub_state import RedisSubscriptionState

from .redis_support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_streams.durable._subscriptions import SubscriptionRegistry

    from .redis_support import SyncCluster, SyncRedis

pytestmark = pytest.mark.redis

DEADLINE = 60
#: The longest one awaited condition may take (a lease of 1 s swept every 0.05 s,
#: a change feed): generous for a loaded machine, far below DEADLINE.
WAIT = 15
JSON = "application/json"
WEBHOOK = {"type": "webhook", "pattern": "events/*", "webhook": {"url": "https://hooks.example/x"}}
PULL = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 1000}


@pytest.fixture(params=["redis", "cluster"])
def where(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """(url, cluster) of one Redis, or of the Cluster."""
    if request.param == "redis":
        server: SyncRedis = request.getfixturevalue("redis_server")
        return server.url, False
    cluster: SyncCluster = request.getfixturevalue("redis_cluster")
    return cluster.url, True


@asynccontextmanager
async def instance(where: tuple[str, bool], prefix: str, **options: Any) -> AsyncIterator[SubscribedBackend]:
    """One server's worth: a store with its own connection, a registry serving on it."""
    url, cluster = where
    store = RedisDurableStore()
    options.setdefault("sweep_interval", 0.05)
    # No full pass or reload unless a test asks: what the fast paths (the
    # change feed, the lease index) do is what the tests see.
    options.setdefault("reload_interval", 3600.0)
    try:
        async with store.connect(url, prefix=prefix, cluster=cluster):
            backend = with_subscriptions(store, state=RedisSubscriptionState(store), **options)
            async with trio.open_nursery() as nursery:
                await nursery.start(backend.registry.serve)
                yield backend
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A failed assertion of the test's body, not the nurseries around it.
        sole = collapse(group)
        if sole is None:
            raise
        raise sole from None


async def create(backend: SubscribedBackend, name: str, body: bytes = b"") -> None:
    await backend.create(name, CreateRequest(content_type=JSON, body=body))


async def append(backend: SubscribedBackend, name: str, body: bytes = b'{"n": 1}') -> str:
    return str((await backend.append(name, AppendRequest(body, JSON))).next_offset)


async def wake_events(backend: SubscribedBackend, name: str = "wake/pool") -> list[dict[str, Any]]:
    source = await backend.open_read(name)
    found = await source.read(0)
    events: list[dict[str, Any]] = []
    for piece in found.pieces:
        text = piece if isinstance(piece, bytes) else b""
        events.extend(json.loads(line) for line in text.split(b"\n") if line.strip())
    if not events and found.pieces:  # JSON mode: a list of messages
        events = [json.loads(bytes(message)) for piece in found.pieces for message in piece]
    return events


async def generations(backend: SubscribedBackend) -> list[int]:
    return [event["generation"] for event in await wake_events(backend)]


async def knows(registry: SubscriptionRegistry, subscription_id: str, owner: str | None = None) -> None:
    """Wait until ``registry``'s index holds the subscription (another instance made it)."""

    async def indexed() -> bool:
        return (owner, subscription_id) in registry._indexed

    with trio.fail_after(WAIT):
        await eventually(indexed)


async def claim_or_refusal(registry: SubscriptionRegistry, worker: str) -> Any:
    try:
        _, wake = await registry.claim(None, "s1", worker)
    except DurableStreamError as exc:
        return exc
    return wake


async def test_data_on_one_instance_wakes_a_subscription_made_on_another_and_one_claim_wins(
    where: tuple[str, bool], prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix) as a, instance(where, prefix) as b:
            await create(b, "wake/pool")
            await b.registry.put(None, "s1", parse_config(PULL), "http://x/cb")
            await knows(a.registry, "s1")
            await create(a, "events/x", b'{"a": 1}')  # on A: B's subscription wakes

            async def one_wake() -> bool:
                return await generations(b) == [1]

            await eventually(one_wake)
            # The two instances race for the wake: exactly one claim wins.
            results: list[Any] = []
            async with trio.open_nursery() as nursery:
                for registry, worker in ((a.registry, "wa"), (b.registry, "wb")):

                    async def claim(registry: SubscriptionRegistry = registry, worker: str = worker) -> None:
                        results.append(await claim_or_refusal(registry, worker))

                    nursery.start_soon(claim)
            won = [result for result in results if not isinstance(result, DurableStreamError)]
            refused = [result for result in results if isinstance(result, DurableStreamError)]
            assert len(won) == 1
            assert len(refused) == 1
            assert (refused[0].status, refused[0].code) == (409, "ALREADY_CLAIMED")
            assert refused[0].holder == won[0].holder  # type: ignore[attr-defined]
            assert won[0].generation == 1


async def test_concurrent_acks_from_two_instances_one_wins_the_other_is_fenced(
    where: tuple[str, bool], prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix) as a, instance(where, prefix) as b:
            await create(a, "wake/pool")
            await a.registry.put(None, "s1", parse_config({**PULL, "lease_ttl_ms": 30_000}), "http://x/cb")
            await create(a, "events/x", b'{"a": 1}')
            _, wake = await a.registry.claim(None, "s1", "w1")
            tail = str((await a.registry.get(None, "s1")).links["events/x"].tail)
            request = {
                "wake_id": wake.wake_id,
                "generation": wake.generation,
                "acks": [{"stream": "events/x", "offset": tail}],
                "done": True,
            }
            outcomes: list[str] = []
            async with trio.open_nursery() as nursery:
                for registry in (a.registry, b.registry):

                    async def ack(registry: SubscriptionRegistry = registry) -> None:
                        try:
                            await registry.ack(None, "s1", wake.token, request, kind="pull-wake")
                        except DurableStreamError as exc:
                            outcomes.append(exc.code)
                        else:
                            outcomes.append("ok")

                    nursery.start_soon(ack)
            assert sorted(outcomes) == ["FENCED", "ok"]
            # The ended wake's token is known on both (the last ended tokens are shared):
            # a late request is this subscription's, fenced, not a 404.
            assert await b.registry.owner_for_token("s1", wake.token) is None
            assert (await b.registry.get(None, "s1")).knows_token(wake.token or "")
            assert str((await b.registry.get(None, "s1")).links["events/x"].acked) == tail


@pytest.mark.parametrize("index", ["indexed", "index-lost"])
async def test_a_dead_holders_lease_is_swept_by_another_instance_with_a_new_generation(
    where: tuple[str, bool], prefix: str, index: str
) -> None:
    """``index-lost``: the holder died before it indexed its lease (the lease index
    written after the claim): the sweeper's full pass finds it (``reload_interval``)."""
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, reload_interval=0.5 if index == "index-lost" else 3600.0) as b:
            async with instance(where, prefix) as a:
                await create(a, "wake/pool")
                await a.registry.put(None, "s1", parse_config(PULL), "http://x/cb")
                await knows(b.registry, "s1")
                await create(a, "events/x", b'{"a": 1}')
                _, wake = await a.registry.claim(None, "s1", "w1")
                assert wake.deliverer == a.registry.state.instance
                if index == "index-lost":
                    await b.inner._require().delete([f"{prefix}ds:sub-leases"])  # type: ignore[attr-defined]
            # A is gone (its lease task with it): B's sweeper expires the lease,
            # and the pending work wakes again, announced by B.

            async def rewoken() -> bool:
                return await generations(b) == [1, 2]

            with trio.fail_after(WAIT):
                await eventually(rewoken)
            with pytest.raises(DurableStreamError) as stale:
                await b.registry.ack(
                    None, "s1", wake.token, {"wake_id": wake.wake_id, "generation": 1}, kind="pull-wake"
                )
            assert stale.value.code == "FENCED"
            subscription = await b.registry.get(None, "s1")
            assert subscription.wake is not None
            assert subscription.wake.generation == 2
            assert subscription.wake.deliverer == b.registry.state.instance
            _, again = await b.registry.claim(None, "s1", "w2")
            assert again.generation == 2


async def test_subscriptions_cursors_and_pending_wakes_survive_a_restart(
    where: tuple[str, bool], prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix) as a:
            await create(a, "wake/pool")
            config = parse_config({**PULL, "streams": ["manual/m"]})
            await a.registry.put(None, "s1", config, "http://x/cb")
            await create(a, "events/x", b'{"a": 1}')
            _, first = await a.registry.claim(None, "s1", "w1")
            tail = str((await a.registry.get(None, "s1")).links["events/x"].tail)
            acks = [{"stream": "events/x", "offset": tail}]
            done = {"wake_id": first.wake_id, "generation": 1, "acks": acks}
            ended = await a.registry.ack(None, "s1", first.token, {**done, "done": True}, kind="pull-wake")
            assert ended is False
            await append(a, "events/x")  # pending again: wake 2, unclaimed

            async def second() -> bool:
                return await generations(a) == [1, 2]

            await eventually(second)
        # Everything stopped; a new instance on the same Redis:
        async with instance(where, prefix) as restarted:
            registry = restarted.registry
            assert (None, "s1") in registry._indexed  # loaded at start
            subscription = await registry.get(None, "s1")
            assert subscription.config == config
            assert str(subscription.links["events/x"].acked) == tail
            assert subscription.links["manual/m"].link_type == "explicit"
            assert subscription.wake is not None
            assert subscription.wake.generation == 2
            # The pending wake is there to claim; the ended one's token is fenced.
            with pytest.raises(DurableStreamError) as stale:
                await registry.ack(None, "s1", first.token, done, kind="pull-wake")
            assert stale.value.code == "FENCED"
            _, claimed = await registry.claim(None, "s1", "w2")
            assert claimed.generation == 2
            # The restarted index matches new data too (explicit member and pattern).
            await registry.release(None, "s1", claimed.token, {"wake_id": claimed.wake_id, "generation": 2})

            async def third() -> bool:
                return await generations(restarted) == [1, 2, 3]

            await eventually(third)


async def public_dns(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


async def test_a_webhook_wake_is_delivered_once_whichever_instance_sees_the_data(
    where: tuple[str, bool], prefix: str
) -> None:
    posts: Counter[int] = Counter()
    instances: list[str] = []

    def receiver(name: str) -> Any:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            posts[json.loads(body)["generation"]] += 1
            instances.append(name)
            return 200, b'{"done": true}'

        return post

    signer = WebhookSigner()
    hook = {"type": "webhook", "pattern": "events/*", "webhook": {"url": "https://hooks.example/x"}}
    with trio.fail_after(DEADLINE):
        async with (
            instance(where, prefix, signer=signer, post=receiver("a"), resolve=public_dns) as a,
            instance(where, prefix, signer=signer, post=receiver("b"), resolve=public_dns) as b,
        ):
            await a.registry.put(None, "h1", parse_config(hook), "https://me/cb")
            await knows(b.registry, "h1")
            await create(a, "events/a", b'{"a": 1}')
            await create(b, "events/b", b'{"b": 1}')
            for _ in range(5):
                await append(a, "events/a")
                await append(b, "events/b")

            async def settled() -> bool:
                subscription = await a.registry.get(None, "h1")
                return subscription.wake is None and not subscription.has_pending()

            await eventually(settled)
            assert posts, "delivered"
            assert set(posts.values()) == {1}, f"each generation delivered once: {posts}"
            assert sorted(posts) == list(range(1, len(posts) + 1))


@pytest.mark.parametrize("busy_interval", [3600.0, 0.2])
async def test_a_busy_subscriptions_matches_wait_then_go_to_redis_together(
    where: tuple[str, bool], prefix: str, busy_interval: float
) -> None:
    """A wake in flight: appends' matches are not written to Redis one by one; they
    wait ``busy_interval`` (or a request about the subscription here) and go together."""
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, busy_interval=busy_interval) as a, instance(where, prefix) as b:
            await create(a, "wake/pool")
            await a.registry.put(None, "s1", parse_config({**PULL, "lease_ttl_ms": 30_000}), "http://x/cb")
            first = str((await a.create("events/x", CreateRequest(content_type=JSON, body=b"{}")))[0].tail)

            async def one_wake() -> bool:
                return await generations(a) == [1]

            await eventually(one_wake)  # (the match's update made the wake: the subscription is busy)
            for n in range(20):
                last = await append(a, "events/x", json.dumps({"n": n}).encode())

            async def stored_tail() -> str:
                return str((await b.registry.get(None, "s1")).links["events/x"].tail)

            if busy_interval > DEADLINE:
                assert await stored_tail() == first, "a busy subscription's matches were written one by one"
                _, wake = await a.registry.claim(None, "s1", "w1")  # (applies this instance's notes first)
                assert str(wake.snapshot["events/x"]) == last
            else:

                async def caught_up() -> bool:
                    return await stored_tail() == last

                with trio.fail_after(WAIT):
                    await eventually(caught_up)  # after the interval, without a request
            assert await generations(a) == [1]


async def test_a_claim_waits_for_the_match_update_already_on_its_way_to_redis(
    where: tuple[str, bool], prefix: str
) -> None:
    """An append's match is being written by the background task when a claim comes:
    the claim waits for that update (not NO_PENDING_WORK, its load racing the wake)."""
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix) as a:
            await create(a, "wake/pool")
            await a.registry.put(None, "s1", parse_config(PULL), "http://x/cb")
            registry = a.registry
            real_update = registry.state.update
            in_flight, gate = trio.Event(), trio.Event()
            overlapped: list[bool] = []

            async def update(key: Any, change: Any) -> Any:
                if not in_flight.is_set():  # the match's update (the first after the append)
                    in_flight.set()
                    await gate.wait()
                elif not gate.is_set():  # another update while the match's is held: the race
                    overlapped.append(True)
                    gate.set()
                return await real_update(key, change)

            registry.state.update = update  # type: ignore[method-assign]
            await create(a, "events/x", b'{"a": 1}')
            await in_flight.wait()
            results: list[Any] = []
            async with trio.open_nursery() as nursery:

                async def claim() -> None:
                    results.append(await claim_or_refusal(registry, "w1"))

                nursery.start_soon(claim)
                # Let the held update go once the claim waits for it (or once the claim
                # raced it with an update of its own).
                while not gate.is_set():
                    applying = registry.shared._applying.get((None, "s1"))
                    if applying is not None and applying.statistics().tasks_waiting:
                        gate.set()
                    # (A poll of a state, under the test's deadline: which branch opens
                    # the gate decides the outcome, not the poll's period.)
                    await trio.sleep(0.001)
            assert not overlapped, "the claim loaded the subscription while the match's update was on its way"
            assert not isinstance(results[0], DurableStreamError), results[0]
            assert results[0].generation == 1


async def test_a_graceful_stop_hands_its_webhook_wakes_over_at_once(
    where: tuple[str, bool], prefix: str
) -> None:
    """A stops while its delivery's wake is in flight with a 10 minute lease: B's
    sweeper re-delivers it (a new generation) at once, not when the lease ends."""
    got: list[tuple[str, int]] = []

    def receiver(name: str, answer: bytes) -> Any:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            got.append((name, json.loads(body)["generation"]))
            return 200, answer

        return post

    signer = WebhookSigner()
    hook = {
        "type": "webhook",
        "pattern": "events/*",
        "webhook": {"url": "https://hooks.example/x"},
        "lease_ttl_ms": 600_000,
    }
    with trio.fail_after(DEADLINE):
        async with instance(
            where, prefix, signer=signer, post=receiver("b", b'{"done": true}'), resolve=public_dns
        ) as b:
            async with instance(
                where, prefix, signer=signer, post=receiver("a", b"{}"), resolve=public_dns
            ) as a:
                await a.registry.put(None, "h1", parse_config(hook), "https://me/cb")
                await knows(b.registry, "h1")
                await create(a, "events/a", b'{"a": 1}')

                async def delivered_by_a() -> bool:
                    return got == [("a", 1)]

                with trio.fail_after(WAIT):
                    await eventually(delivered_by_a)
            # A stopped (its registry's nursery cancelled, as on SIGTERM's drain).

            async def settled() -> bool:
                subscription = await b.registry.get(None, "h1")
                return subscription.wake is None and not subscription.has_pending()

            with trio.fail_after(WAIT):  # (far less than the 600 s lease)
                await eventually(settled)
            assert got == [("a", 1), ("b", 2)]
            assert (await b.registry.get(None, "h1")).generation == 2


async def test_the_instance_that_takes_over_a_failing_webhook_keeps_its_retry_schedule(
    where: tuple[str, bool], prefix: str
) -> None:
    """A's delivery fails (500) and A stops: B's first attempt is not before the
    next_attempt_at A stored, and counts on from A's (PROTOCOL.md 7.1)."""
    got: list[tuple[str, float, int]] = []

    def receiver(name: str) -> Any:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            got.append((name, time.time(), json.loads(body)["generation"]))
            return 500, b""

        return post

    signer = WebhookSigner()
    hook = {
        "type": "webhook",
        "pattern": "events/*",
        "webhook": {"url": "https://hooks.example/x"},
        "lease_ttl_ms": 600_000,
    }
    # jitter +200%: the first backoff is 3 s, time enough to stop A before its second attempt.
    options: dict[str, Any] = {"signer": signer, "resolve": public_dns, "jitter": lambda low, high: 2.0}
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, post=receiver("b"), **options) as b:
            async with instance(where, prefix, post=receiver("a"), **options) as a:
                await a.registry.put(None, "h1", parse_config(hook), "https://me/cb")
                await knows(b.registry, "h1")
                await create(a, "events/a", b'{"a": 1}')

                async def failed_once() -> bool:
                    return (await a.registry.get(None, "h1")).retry.failures == 1

                with trio.fail_after(WAIT):
                    await eventually(failed_once)
            # A stopped during its backoff (its wake handed over, its schedule stored).
            stored = (await b.registry.get(None, "h1")).retry
            assert (stored.failures, stored.attempts, stored.error) == (1, 1, "HTTP 500")
            assert stored.next_attempt_at is not None

            async def failed_twice() -> bool:
                return (await b.registry.get(None, "h1")).retry.failures == 2

            with trio.fail_after(WAIT):
                await eventually(failed_twice)
            assert [(name, generation) for name, _, generation in got] == [("a", 1), ("b", 2)]
            assert got[1][1] >= stored.next_attempt_at - 1e-6, "B attempted before next_attempt_at"
            after = (await b.registry.get(None, "h1")).retry
            assert (after.failures, after.attempts) == (2, 2)


def test_a_state_stored_before_retry_schedules_reads_as_no_retry() -> None:
    """Upgrade: a state hash without the ``retry`` field (the previous version's) reads as
    attempt 0; a stored schedule reads back as written."""
    subscription = Subscription(None, "h1", parse_config(WEBHOOK), "2026-12-02T00:00:00Z")
    fields = encode_state(subscription)
    assert fields["retry"] == ""
    old = {name.encode(): value.encode() for name, value in fields.items() if name != "retry"}
    assert decode((None, "h1"), old, {}).retry == Retry()
    subscription.retry.failed(100.5, 2.0, "HTTP 503")
    saved = {name.encode(): value.encode() for name, value in encode_state(subscription).items()}
    assert decode((None, "h1"), saved, {}).retry == Retry(1, 1, 102.5, "HTTP 503")


async def test_a_retry_whose_instance_stopped_before_it_was_due_is_made_by_another(
    where: tuple[str, bool], prefix: str
) -> None:
    """A's attempt fails and the wake's lease (1 s) ends before the retry is due (3 s);
    A stops with no wake to hand over: B's full pass finds the retry owed and makes it,
    not before next_attempt_at."""
    got: list[tuple[str, float, int]] = []

    def receiver(name: str) -> Any:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            got.append((name, time.time(), json.loads(body)["generation"]))
            return 500, b""

        return post

    options: dict[str, Any] = {
        "signer": WebhookSigner(),
        "resolve": public_dns,
        "jitter": lambda low, high: 2.0,  # the first backoff: 3 s
    }
    hook = {**WEBHOOK, "lease_ttl_ms": 1000}
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, post=receiver("b"), reload_interval=0.5, **options) as b:
            async with instance(where, prefix, post=receiver("a"), **options) as a:
                await a.registry.put(None, "h1", parse_config(hook), "https://me/cb")
                await knows(b.registry, "h1")
                await create(a, "events/a", b'{"a": 1}')

                async def lease_over() -> bool:
                    subscription = await a.registry.get(None, "h1")
                    return subscription.wake is None and subscription.retry.failures == 1

                with trio.fail_after(WAIT):
                    await eventually(lease_over)
            stored = (await b.registry.get(None, "h1")).retry
            assert stored.next_attempt_at is not None

            async def retried() -> bool:
                return len(got) == 2

            with trio.fail_after(WAIT):
                await eventually(retried)
            assert [(name, generation) for name, _, generation in got] == [("a", 1), ("b", 2)]
            assert got[1][1] >= stored.next_attempt_at - 1e-6, "B attempted before next_attempt_at"


async def test_a_malformed_stored_retry_schedule_reads_as_none_and_the_registry_serves_on(
    where: tuple[str, bool], prefix: str
) -> None:
    """A ``retry`` field that does not decode (hand-edited, damaged) is no schedule (the
    next attempt is due now), logged: a reload or a sweep of the subscription, which
    decode it, do not end the registry (their loops let only a DurableStreamError by)."""
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, signer=WebhookSigner(), resolve=public_dns) as a:
            await a.registry.put(None, "h1", parse_config(WEBHOOK), "https://me/cb")
            state = a.registry.state
            assert isinstance(state, RedisSubscriptionState)
            state_key = SubKeys(prefix).state((None, "h1"))
            for bad in ("[1,", "[1, 2]", "7", '[1, 2, "soon", ""]'):
                await state._client().hset(state_key, {"retry": bad})
                await a.registry.shared.reload()
                assert (await a.registry.get(None, "h1")).retry == Retry(), bad


async def test_a_subscription_whose_stored_state_does_not_decode_is_skipped_not_fatal(
    where: tuple[str, bool], prefix: str
) -> None:
    """A damaged record (its ``config`` field, say) is a 503 for requests about it;
    the reload, the sweep and the matching of appends skip it and serve the others."""
    with trio.fail_after(DEADLINE):
        async with instance(where, prefix, signer=WebhookSigner(), resolve=public_dns) as a:
            await a.registry.put(None, "h1", parse_config(WEBHOOK), "https://me/cb")
            await a.registry.put(None, "h2", parse_config(WEBHOOK), "https://me/cb")
            state = a.registry.state
            assert isinstance(state, RedisSubscriptionState)
            await state._client().hset(SubKeys(prefix).state((None, "h1")), {"config": "[not json"})
            await a.registry.shared.reload()  # skips h1: raised here before
            with pytest.raises(DurableStreamError) as refused:
                await a.registry.get(None, "h1")
            assert (refused.value.status, refused.value.code) == (503, "subscription_unreadable")
            assert (await a.registry.get(None, "h2")).id == "h2"
            await a.registry.shared._expire((None, "h1"))  # a sweep passes it by
            await a.registry.shared._update((None, "h1"), {})  # and so does matching
