"""``SubscriptionWakes``: the wakes of subscriptions, their lease tasks and webhook deliveries.

The part of :class:`~._subscriptions.SubscriptionRegistry` that makes wakes
(:meth:`SubscriptionWakes._wake_step`, inside a change), starts what they
need on this instance -- the one that made the wake delivers it
(:meth:`SubscriptionWakes._start`) -- and runs them in the registry's
nursery:

- one *lease task* per wake that has a lease, on the instance that made or
  claimed the wake (its ``deliverer``): a ``CancelScope`` whose deadline is
  the lease (a heartbeat here moves the deadline). When it passes and the
  wake is still current with its lease passed (a heartbeat on another
  instance may have moved it: then the task waits again), the wake expires
  and pending work makes a new one. Ending a wake here cancels its task;
- webhook delivery, inside its wake's lease task: POST (signed), retried
  with exponential backoff (1 s doubling to 60 s, 20% jitter), at most
  ``max_attempts`` per round and never past the lease. The schedule is the
  subscription's :class:`~._sub_state.Retry`, stored by the change that
  records a failed attempt (with the wake and its lease), so the instance
  that delivers next waits for its ``next_attempt_at`` and counts on from
  its ``attempts`` (a round cut short by the lease -- the deliverer died,
  stopped, or the lease is shorter than the backoff -- goes on in the next
  wake); a delivered attempt or an acked wake clears it;
- pull-wake wake events, appended to the ``wake_stream``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import trio

from ._errors import DurableStreamError
from ._stream import AppendRequest
from ._sub_catalog import SubscriptionCatalog
from ._sub_index import key_for_logs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._backend import DurableBackend
    from ._sub_delivery import WebhookDelivery
    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription, Wake
    from ._sub_store import SubscriptionState

    #: What a change that may wake leaves to do: a new wake (with its lease's
    #: trio deadline), the delay until a retry is due, or nothing.
    Effect = tuple[Wake, float] | float | None

logger = logging.getLogger("trio_streams.durable.subscriptions")

#: A retry due within this (seconds) is due now (a float's rounding in a sleep's deadline).
DUE_SLACK = 1e-6


class SubscriptionWakes(SubscriptionCatalog):
    """Wakes, leases and deliveries (see the module docstring)."""

    def __init__(
        self,
        backend: DurableBackend,
        delivery: WebhookDelivery,
        state: SubscriptionState,
        *,
        max_subscriptions: int,
        wall_clock: Callable[[], float],
        max_attempts: int,
    ) -> None:
        super().__init__(backend, delivery, state, max_subscriptions=max_subscriptions, wall_clock=wall_clock)
        self.max_attempts = max_attempts
        #: Webhook subscriptions whose next wake waits for a retry's backoff.
        self._retrying: set[Key] = set()
        #: The lease tasks of this instance: the wake's id and the task's scope.
        self._leases: dict[Key, tuple[str, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None

    # -- tasks -----------------------------------------------------------------------

    def _spawn(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        nursery = self._serving()
        nursery.start_soon(self._guarded, function, *args)

    def _serving(self) -> trio.Nursery:
        if self._nursery is None:
            raise DurableStreamError(503, "unavailable", "subscriptions are not running")
        return self._nursery

    async def _guarded(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        """A background step; a store that cannot be reached (or a subscription
        deleted meanwhile) ends it with a log line, never the registry."""
        try:
            await function(*args)
        except DurableStreamError as exc:
            log = logger.debug if exc.status == 404 else logger.warning
            log("subscriptions: %s gave up: %s", getattr(function, "__name__", function), exc.message)
        except Exception:
            # A bug in one step (one subscription's) must not end every other
            # subscription's tasks -- nor the hub whose nursery holds the registry.
            # (Cancelled is not an Exception: it propagates.)
            logger.exception("subscriptions: %s failed", getattr(function, "__name__", function))

    # -- wakes -----------------------------------------------------------------------

    def _wake_step(self, subscription: Subscription, stream: str | None, now: float) -> Effect:
        """(In a change.) Make a wake if the subscription is idle with pending work.

        A webhook subscription whose last delivery failed gets its next wake
        only when its stored ``next_attempt_at`` has come (whichever instance
        recorded the failure): the backoff runs before the wake and its lease,
        so a delay longer than the lease still ends in an attempt; meanwhile
        its ``status`` is ``failed``. A wake made after a finished round
        (``max_attempts``) starts a new one. Returns the wake made with its
        lease's trio deadline, the delay until the retry is due, or ``None``.
        """
        if subscription.wake is not None or self._nursery is None:
            # A wake in flight: its end looks for pending work again (the common
            # case of a busy stream: checked first). Not serving (shutting
            # down): pending work waits for a later event.
            return None
        key = (subscription.owner, subscription.id)
        if key in self._retrying:
            return None  # a retry scheduled: it looks for pending work
        retry = subscription.retry
        if retry.next_attempt_at is not None and retry.next_attempt_at - now > DUE_SLACK:
            return retry.next_attempt_at - now if subscription.has_pending() else None
        wake = subscription.wake_if_pending(stream, now)
        if wake is None:
            return None
        if retry.attempts >= self.max_attempts:
            retry.attempts = 0  # (a new round; the backoff goes on from ``failures``)
        wake.deliverer = self.state.instance
        lease = wake.lease_deadline
        return wake, 0.0 if lease is None else self.state.local_deadline(lease, now)

    def _start(self, subscription: Subscription, effect: Effect) -> bool:
        """Start what a change's ``effect`` needs (this instance made the wake: it delivers)."""
        if effect is None or self._nursery is None:
            return False
        key = (subscription.owner, subscription.id)
        if isinstance(effect, float):
            if key not in self._retrying:
                self._retrying.add(key)
                self._spawn(self._wake_later, key, effect)
            return True
        wake, deadline = effect
        if subscription.config.type == "webhook":
            self._spawn(self._hold, subscription, wake, deadline)
        else:
            self._spawn(self._announce, subscription, wake)
        return True

    async def _wake_later(self, key: Key, delay: float) -> None:
        """The retry of a failed webhook delivery: a new wake after ``delay`` (when it is
        due: the stored ``next_attempt_at``; another instance's failure may have moved it)."""
        try:
            await trio.sleep(delay)
        finally:
            self._retrying.discard(key)
        subscription, effect = await self.state.update(key, lambda sub, now: self._wake_step(sub, None, now))
        self._start(subscription, effect)

    def _cancel_lease(self, key: Key, wake_id: str) -> None:
        """The wake ``wake_id`` ended: its lease task here (if any) ends."""
        held = self._leases.get(key)
        if held is not None and held[0] == wake_id:
            del self._leases[key]
            held[1].cancel(reason="wake ended")

    def _forget(self, key: Key) -> None:
        held = self._leases.pop(key, None)
        if held is not None:
            held[1].cancel(reason="subscription deleted")

    async def _hold(self, subscription: Subscription, wake: Wake, deadline: float) -> None:
        """The lease of ``wake`` (and, for a webhook, its delivery), until ``deadline``
        (trio time) or the wake ends.

        Cancellation: a cancel of the registry propagates; ending the wake
        cancels only this task's own scope.
        """
        key = (subscription.owner, subscription.id)
        deliver = subscription.config.type == "webhook"
        if deliver:  # (a claim indexed its own lease)
            await self.state.note_lease(key, wake.lease_deadline)
        while True:
            with trio.CancelScope(deadline=deadline) as scope:
                self._leases[key] = (wake.wake_id, scope)
                if deliver:
                    deliver = False
                    await self._deliver(subscription, wake)
                await trio.sleep_forever()
            if self._leases.get(key, ("",))[0] != wake.wake_id:
                return  # the wake ended (or the subscription went)
            del self._leases[key]
            later = await self.expire(key, wake.wake_id)
            if later is None:
                return
            deadline = later  # a heartbeat elsewhere moved the lease

    async def expire(self, key: Key, wake_id: str | None) -> float | None:
        """Expire the wake ``wake_id`` (``None``: whichever is in flight) if its lease has
        passed; then pending work makes a new wake, delivered here. Returns the lease's
        trio deadline if it has not passed, else ``None``."""
        moved: list[float] = []
        expired: list[Wake] = []

        def change(subscription: Subscription, now: float) -> Effect:
            moved.clear()
            expired.clear()
            wake = subscription.wake
            if wake is None and wake_id is None and subscription.retry.next_attempt_at is not None:
                # A retry whose instance went before it was due (a sweeper's full pass).
                return self._wake_step(subscription, None, now)
            if wake is None or wake.lease_deadline is None or wake_id not in (None, wake.wake_id):
                return None
            if wake.lease_deadline > now:
                moved.append(self.state.local_deadline(wake.lease_deadline, now))
                return None
            subscription.end_wake(wake)
            expired.append(wake)
            return self._wake_step(subscription, None, now)

        subscription, effect = await self.state.update(key, change)
        if not expired:
            self._start(subscription, effect)
            return moved[0] if moved else None
        self._cancel_lease(key, expired[0].wake_id)
        logger.info(
            "subscription %s: the lease of generation %d expired", key_for_logs(key), expired[0].generation
        )
        if effect is None:
            await self.state.note_lease(key, None)
        self._start(subscription, effect)
        return None

    async def _announce(self, subscription: Subscription, wake: Wake) -> None:
        """Append ``wake``'s event to the pull-wake subscription's ``wake_stream``."""
        wake_stream = subscription.config.wake_stream
        assert wake_stream is not None
        event = {
            "type": "wake",
            "subscription_id": subscription.id,
            "stream": wake.stream,
            "generation": wake.generation,
            "ts": int(self._wall_clock() * 1000),
        }
        request = AppendRequest(json.dumps(event).encode(), "application/json")
        try:
            await self.backend.append(wake_stream, request, owner=subscription.owner)
        except DurableStreamError as exc:
            # The wake exists without its event (a worker can still claim it).
            logger.warning(
                "subscription %s: no wake event in %r: %s",
                key_for_logs((subscription.owner, subscription.id)),
                wake_stream,
                exc.message,
            )

    # -- webhook delivery --------------------------------------------------------------

    def delivery_body(self, subscription: Subscription, wake: Wake) -> bytes:
        body = {
            "subscription_id": subscription.id,
            "wake_id": wake.wake_id,
            "generation": wake.generation,
            "streams": subscription.stream_infos(tails=True),
            "callback_url": self.callback_url(subscription),
            "callback_token": wake.token,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    async def _deliver(self, subscription: Subscription, wake: Wake) -> None:
        """POST the wake until a 2xx, the round's ``max_attempts`` or the lease (the caller's
        scope) ends it. The round is counted in the store (:meth:`_failed`): a wake is made
        with a round that has attempts left (:meth:`_wake_step`), so the first attempt needs
        no read, and a wake taken over counts on from the stored one."""
        url = subscription.config.webhook_url
        assert url is not None
        key = (subscription.owner, subscription.id)
        body = self.delivery_body(subscription, wake)
        # (The first attempt of a wake is never delayed: the wake was made when it was due.)
        due: float | None = None
        while True:
            if due is not None:
                await trio.sleep_until(due)
                if self.state.shared:
                    # The receiver may have called back through another instance meanwhile.
                    current = await self.state.get(key)
                    if current is None or current.wake is None or current.wake.wake_id != wake.wake_id:
                        return
            delivered, done, error = await self.delivery.attempt(key, url, body)
            if delivered:
                await self._delivered(key, wake, done=done)
                return
            recorded = await self._failed(key, wake, error)
            if recorded is None or recorded[0] >= self.max_attempts:
                return  # the wake ended meanwhile, or the round is over (the lease's end goes on)
            due = recorded[1]

    async def _failed(self, key: Key, wake: Wake, error: str) -> tuple[int, float] | None:
        """Record a failed attempt of ``wake`` (status ``failed``, the schedule moved on), in
        the update that marked the status before there was a schedule: no round trip more.
        Returns the round's attempts and when the next is due (trio time); ``None``: the
        wake ended meanwhile."""

        def change(subscription: Subscription, now: float) -> tuple[int, float] | None:
            current = subscription.wake
            if current is None or current.wake_id != wake.wake_id:
                return None
            retry = subscription.retry
            subscription.status = "failed"
            retry.failed(now, self.delivery.retry_delay(retry.failures + 1), error)
            assert retry.next_attempt_at is not None
            return retry.attempts, self.state.local_deadline(retry.next_attempt_at, now)

        _, recorded = await self.state.update(key, change)
        return recorded

    async def _delivered(self, key: Key, wake: Wake, *, done: bool) -> None:
        """A delivery was answered 2xx: active again; ``{"done": true}`` acks the snapshot, ends the wake."""
        ended: list[bool] = []

        def change(subscription: Subscription, now: float) -> Effect:
            ended.clear()
            subscription.status = "active"
            subscription.retry.clear()
            current = subscription.wake
            if not done or current is None or current.wake_id != wake.wake_id:
                return None
            subscription.ack_snapshot(current)
            subscription.end_wake(current)
            ended.append(True)
            return self._wake_step(subscription, None, now)

        subscription, effect = await self.state.update(key, change)
        if ended:
            self._cancel_lease(key, wake.wake_id)
            if effect is None:
                await self.state.note_lease(key, None)
            self._start(subscription, effect)
