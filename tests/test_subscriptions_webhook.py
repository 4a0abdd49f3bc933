"""Webhook subscriptions on the memory store, on the autojump clock, with a receiver in the test.

The registry's ``post`` is the test's receiver (a function): it records each
delivery with the trio time it arrived and answers as the test says (done,
empty, 500, slow, down). Signatures are verified with ``cryptography``'s
Ed25519 public key rebuilt from the published JWK, not with the signer.
"""

from __future__ import annotations

import base64
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trio_streams.durable import DurableStreamError, DurableStreamStore
from trio_streams.durable._backend import as_backend
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import SubscribedBackend, with_subscriptions
from trio_streams.durable._sub_config import parse_config
from trio_streams.durable._sub_state import Retry
from trio_streams.durable._sub_store import MemorySubscriptionState
from trio_streams.durable._webhook_client import WebhookDeliveryError
from trio_streams.durable._webhook_signing import WebhookSigner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from trio_streams.durable._subscriptions import SubscriptionRegistry

JSON = "application/json"
HOOK = {
    "type": "webhook",
    "pattern": "events/*",
    "webhook": {"url": "https://hooks.example/h"},
    "lease_ttl_ms": 20_000,
}


@dataclass
class Receiver:
    """Answers deliveries with ``answers`` in turn (the last one repeats)."""

    answers: list[Callable[[], Any]] = field(default_factory=list)
    got: list[tuple[float, dict[str, Any], bytes, str]] = field(default_factory=list)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.got.append((trio.current_time(), json.loads(body), body, headers["Webhook-Signature"]))
        answer = self.answers[min(len(self.got), len(self.answers)) - 1]
        return await answer()  # type: ignore[no-any-return]


def answer(status: int, document: object = None, *, delay: float = 0.0) -> Callable[[], Any]:
    async def respond() -> tuple[int, bytes]:
        await trio.sleep(delay)
        return status, b"" if document is None else json.dumps(document).encode()

    return respond


def down() -> Callable[[], Any]:
    async def refuse() -> tuple[int, bytes]:
        raise WebhookDeliveryError("connection refused")

    return refuse


async def public_dns(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[tuple[SubscribedBackend, SubscriptionRegistry]]:
    backend = with_subscriptions(
        as_backend(DurableStreamStore()),
        signer=WebhookSigner(wall_clock=lambda: 1_800_000_000.0),
        post=receiver.post,
        jitter=lambda low, high: 0.0,
        attempt_timeout=5.0,
        resolve=public_dns,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.registry.serve)
        yield backend, backend.registry
        nursery.cancel_scope.cancel()


async def data(backend: SubscribedBackend, name: str) -> str:
    try:
        return str((await backend.append(name, AppendRequest(b'{"n": 1}', JSON))).next_offset)
    except DurableStreamError:
        stream, _ = await backend.create(name, CreateRequest(content_type=JSON, body=b'{"n": 0}'))
        return str(stream.tail)


def verify(signer: WebhookSigner, body: bytes, header: str) -> bool:
    """Verify ``header`` over ``body`` with the JWK's key (an independent Ed25519 check)."""
    params = dict(part.split("=", 1) for part in header.split(","))
    jwk = next(key for key in signer.jwks()["keys"] if key["kid"] == params["kid"])
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    signature = base64.urlsafe_b64decode(params["ed25519"] + "=" * (-len(params["ed25519"]) % 4))
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, f"{params['t']}.".encode() + body)
    except Exception:
        return False
    return True


async def test_a_signed_delivery_answered_done_acks_the_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = Receiver([answer(200, {"done": True})])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        tail = await data(backend, "events/a")
        await trio.testing.wait_all_tasks_blocked()
        [(_, body, raw, header)] = receiver.got
        assert body["subscription_id"] == "h1"
        assert body["callback_url"] == "https://me/cb"
        assert (body["generation"], body["wake_id"][:2]) == (1, "w_")
        assert body["streams"] == [
            {
                "path": "events/a",
                "link_type": "glob",
                "acked_offset": "0000000000000000_0000000000000000",
                "tail_offset": tail,
                "has_pending": True,
            }
        ]
        assert header.startswith("t=1800000000,kid=ds_")
        assert subs.signer is not None
        assert verify(subs.signer, raw, header)
        assert not verify(subs.signer, raw + b" ", header)
        assert str(sub.links["events/a"].acked) == tail
        assert sub.wake is None
        # The callback token of the finished wake is fenced.
        with pytest.raises(DurableStreamError) as stale:
            request = {"wake_id": body["wake_id"], "generation": 1, "done": True}
            await subs.ack(None, "h1", body["callback_token"], request, kind="webhook")
        assert stale.value.code == "FENCED"


async def test_callback_acks_then_new_data_wakes_a_new_generation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = Receiver([answer(200, {})])
    async with serving(receiver) as (backend, subs):
        await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        tail = await data(backend, "events/a")
        await trio.testing.wait_all_tasks_blocked()
        body = receiver.got[0][1]
        request = {
            "wake_id": body["wake_id"],
            "generation": 1,
            "acks": [{"stream": "events/a", "offset": tail}],
        }
        # Concurrent callbacks for one wake: the first `done` wins, the second is fenced.
        assert (
            await subs.ack(None, "h1", body["callback_token"], {**request, "done": True}, kind="webhook")
            is False
        )
        with pytest.raises(DurableStreamError) as second:
            await subs.ack(None, "h1", body["callback_token"], {**request, "done": True}, kind="webhook")
        assert second.value.code == "FENCED"
        await data(backend, "events/a")
        await trio.testing.wait_all_tasks_blocked()
        assert [got[1]["generation"] for got in receiver.got] == [1, 2]


async def test_done_with_data_after_the_snapshot_wakes_again(autojump_clock: trio.testing.MockClock) -> None:
    # The receiver is slow: data arrives while the first delivery is in flight.
    receiver = Receiver([answer(200, {"done": True}, delay=2.0)])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        await data(backend, "events/a")
        await trio.sleep(1)
        later = await data(backend, "events/a")
        await trio.sleep(1.5)
        # The first done acked only the snapshot; the pending data made generation 2 at t=2.
        assert [(when, got["generation"]) for when, got, _, _ in receiver.got] == [(0.0, 1), (2.0, 2)]
        await trio.sleep(2)
        assert str(sub.links["events/a"].acked) == later


async def test_failed_deliveries_retry_with_backoff_within_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = Receiver([answer(500), down(), answer(503), answer(200, {"done": True})])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        await data(backend, "events/a")
        await trio.sleep(1.5)
        assert sub.status == "failed"
        await trio.sleep(10)
        # 1 s, 2 s, 4 s between attempts (no jitter here); one wake throughout.
        assert [(when, got["generation"]) for when, got, _, _ in receiver.got] == [
            (0.0, 1),
            (1.0, 1),
            (3.0, 1),
            (7.0, 1),
        ]
        assert (sub.status, sub.wake) == ("active", None)


async def test_a_slow_receiver_is_cut_off_and_an_expired_lease_redelivers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Every attempt takes longer than attempt_timeout (5 s): the lease (20 s) ends the wake.
    receiver = Receiver([answer(200, {"done": True}, delay=60.0)])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        await data(backend, "events/a")
        await trio.sleep(19.999)
        assert [when for when, *_ in receiver.got] == [0.0, 6.0, 13.0]
        assert sub.wake is not None
        assert sub.wake.generation == 1
        await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
        # Expired at t=20: the next wake waits for the stored next_attempt_at (the third
        # failure at 18, + 4 s), then is delivered, the round going on (attempt 4).
        assert ((await subs.get(None, "h1")).wake, sub.status) == (None, "failed")
        assert (sub.retry.failures, sub.retry.attempts, sub.retry.next_attempt_at) == (3, 3, 22.0)
        assert sub.retry.error == "no answer in 5 s"
        await trio.sleep(2)
        await trio.testing.wait_all_tasks_blocked()
        assert sub.wake is not None
        assert sub.wake.generation == 2
        assert [(when, got["generation"]) for when, got, _, _ in receiver.got][-1] == (22.0, 2)


async def test_a_backoff_longer_than_the_lease_still_ends_in_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A receiver that stays down, a 1.5 s lease: each retry's backoff runs before its wake.
    receiver = Receiver([down()])
    async with serving(receiver) as (backend, subs):
        await subs.put(None, "h1", parse_config({**HOOK, "lease_ttl_ms": 1500}), "https://me/cb")
        await data(backend, "events/a")
        await trio.sleep(20)
        # 0 and 1 (in the first wake), the lease ends at 1.5; then each new wake when the
        # stored next_attempt_at comes: the backoff's own times (2 s, 4 s, 8 s after each failure).
        assert [(when, got["generation"]) for when, got, _, _ in receiver.got] == [
            (0.0, 1),
            (1.0, 1),
            (3.0, 2),
            (7.0, 3),
            (15.0, 4),
        ]


async def test_deleting_fences_inflight_callbacks(autojump_clock: trio.testing.MockClock) -> None:
    receiver = Receiver([answer(200, {})])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        tail = await data(backend, "events/a")
        await trio.testing.wait_all_tasks_blocked()
        body = receiver.got[0][1]
        await subs.delete(None, "h1")
        request = {
            "wake_id": body["wake_id"],
            "generation": 1,
            "acks": [{"stream": "events/a", "offset": tail}],
        }
        with pytest.raises(DurableStreamError) as gone:
            await subs.ack(None, "h1", body["callback_token"], {**request, "done": True}, kind="webhook")
        assert gone.value.status == 404
        assert str(sub.links["events/a"].acked) != tail


async def test_a_delivery_that_fails_unexpectedly_does_not_stop_the_registry(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> tuple[int, bytes]:
        raise UnicodeEncodeError("ascii", "\u00e9", 0, 1, "a bug in a lower layer")

    receiver = Receiver([broken, answer(200, {"done": True})])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        await data(backend, "events/a")
        await trio.sleep(1.5)
        # A failed attempt (logged with its traceback), retried after 1 s; the registry lives on.
        assert [when for when, _, _, _ in receiver.got] == [0.0, 1.0]
        assert (sub.status, sub.wake) == ("active", None)
        assert any("UnicodeEncodeError" in record.getMessage() for record in caplog.records)


async def test_a_replaced_instance_keeps_the_stored_retry_schedule_and_its_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The receiver answers 500; the first registry fails twice and stops; a second one
    on the same store attempts exactly at the stored next_attempt_at, counts on from the
    stored round, and the round's bound (4) holds across the two."""
    inner = as_backend(DurableStreamStore())
    state = MemorySubscriptionState()
    first, second = Receiver([answer(500)]), Receiver([answer(500), answer(500), answer(200, {"done": True})])

    def registry(receiver: Receiver) -> SubscribedBackend:
        return with_subscriptions(
            inner,
            state=state,
            signer=WebhookSigner(wall_clock=lambda: 1_800_000_000.0),
            post=receiver.post,
            jitter=lambda low, high: 0.0,
            attempt_timeout=5.0,
            resolve=public_dns,
            max_attempts=4,
        )

    one = registry(first)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.registry.serve)
        sub, _ = await one.registry.put(None, "h1", parse_config(HOOK), "https://me/cb")
        await data(one, "events/a")
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert [(when, got["generation"]) for when, got, _, _ in first.got] == [(0.0, 1), (1.0, 1)]
    assert (sub.retry.failures, sub.retry.attempts, sub.retry.next_attempt_at) == (2, 2, 3.0)
    assert (sub.retry.error, sub.status, sub.wake) == ("HTTP 500", "failed", None)

    two = registry(second)
    async with trio.open_nursery() as nursery:
        await nursery.start(two.registry.serve)
        await trio.sleep(22.999 - trio.current_time())
        # Attempts 3 and 4 of the round at the stored times (3 = 1 + 2 s, 7 = 3 + 4 s); then
        # none until the lease of generation 2 (from 3 s, 20 s) ends: the bound is 4 in all.
        assert [(when, got["generation"]) for when, got, _, _ in second.got] == [(3.0, 2), (7.0, 2)]
        assert (sub.retry.failures, sub.retry.attempts, sub.retry.next_attempt_at) == (4, 4, 15.0)
        await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
        # A new round after the lease; the receiver is back: the schedule is cleared.
        assert [(when, got["generation"]) for when, got, _, _ in second.got][-1] == (23.0, 3)
        assert (sub.retry, sub.status, sub.wake) == (Retry(), "active", None)
        nursery.cancel_scope.cancel()


async def test_a_callback_done_after_a_failed_attempt_clears_the_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The receiver answered 500 but kept the wake, and acks it by its callback: no retry is owed.
    receiver = Receiver([answer(500)])
    async with serving(receiver) as (backend, subs):
        sub, _ = await subs.put(None, "h1", parse_config(HOOK), "https://me/cb")
        tail = await data(backend, "events/a")
        await trio.sleep(0.5)
        assert (sub.retry.failures, sub.retry.next_attempt_at, sub.status) == (1, 1.0, "failed")
        body = receiver.got[0][1]
        request = {
            "wake_id": body["wake_id"],
            "generation": body["generation"],
            "acks": [{"stream": "events/a", "offset": tail}],
            "done": True,
        }
        assert await subs.ack(None, "h1", body["callback_token"], request, kind="webhook") is False
        assert (sub.retry, sub.status, sub.wake) == (Retry(), "active", None)
        await trio.sleep(10)
        assert len(receiver.got) == 1


async def test_the_logs_name_a_subscriptions_owner(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two users may each have a subscription "h1": a failed attempt's line says whose it is."""
    caplog.set_level(logging.INFO, logger="trio_streams")
    receiver = Receiver([down(), answer(200, {"done": True})])
    async with serving(receiver) as (backend, subs):
        await subs.put("alice", "h1", parse_config(HOOK), "https://me/cb")
        await backend.create("events/a", CreateRequest(content_type=JSON, body=b"{}"), owner="alice")
        await trio.sleep(1.5)
        assert [when for when, _, _, _ in receiver.got] == [0.0, 1.0]
    failed = [r.getMessage() for r in caplog.records if "webhook attempt failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].startswith("subscription 'h1' of alice: webhook attempt failed: "), failed
