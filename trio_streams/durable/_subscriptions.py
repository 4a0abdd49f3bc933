"""``SubscriptionRegistry``: Durable Streams subscriptions, their wakes and their tasks.

The rules are :mod:`._sub_config` (what a subscription is), :mod:`._sub_index`
(which ones a stream belongs to) and :mod:`._sub_state` (wakes, leases,
fencing); :mod:`._sub_catalog` keeps the subscriptions and their members in
a :mod:`._sub_store` (in process, or in Redis shared by every instance),
:mod:`._sub_delivery` makes webhook attempts. The registry is told about
stream data (:meth:`SubscriptionRegistry.on_data`, by
:class:`~._sub_backend.SubscribedBackend`), and runs what takes time in a
nursery it owns (:meth:`SubscriptionRegistry.serve`):

- one *lease task* per wake that has a lease, on the instance that made or
  claimed the wake (its ``deliverer``): a ``CancelScope`` whose deadline is
  the lease (a heartbeat here moves the deadline). When it passes and the
  wake is still current with its lease passed (a heartbeat on another
  instance may have moved it: then the task waits again), the wake expires
  and pending work makes a new one. Ending a wake here cancels its task;
- webhook delivery, inside its wake's lease task: POST (signed), retried
  with exponential backoff (1 s doubling to 60 s, 20% jitter), at most
  ``max_attempts`` per wake and never past the lease;
- pull-wake wake events, appended to the ``wake_stream``;
- with a shared store, :mod:`._sub_shared`'s tasks: appends' matches applied
  in the background, other instances' changes followed, leases of dead
  instances swept.

Every change of a subscription is one *change* given to the store
(:meth:`~._sub_store.SubscriptionState.update`): atomic per subscription,
in this process or across instances. Changes only change the subscription;
what they make happen (tasks) starts after the store took them.
Subscriptions are in their owner's namespace like streams: ``(owner, id)``.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._errors import DurableStreamError
from ._offsets import START
from ._stream import AppendRequest
from ._sub_catalog import SubscriptionCatalog
from ._sub_catalog import not_found as not_found
from ._sub_config import invalid
from ._sub_delivery import WebhookDelivery
from ._sub_shared import Seen, SharedTasks
from ._sub_store import MemorySubscriptionState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._backend import DurableBackend
    from ._offsets import Offset
    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription, Wake
    from ._sub_store import SubscriptionState
    from ._webhook_signing import WebhookSigner

    #: What a change that may wake leaves to do: a new wake (with its lease's
    #: trio deadline), a retry's delay, or nothing.
    Effect = tuple[Wake, float] | float | None

logger = logging.getLogger("trio_streams.durable.subscriptions")


class SubscriptionRegistry(SubscriptionCatalog):
    """Every subscription (see the module docstring).

    Args:
        backend: the streams' store (for backfill, tails and wake events).
        state: where subscriptions live (default: this process).
        signer: signs webhook deliveries; ``None``: webhooks are refused.
        allow_loopback_http: webhook URLs may be ``http``/loopback (development).
        post: one webhook POST (default: :func:`~._webhook_client.post_webhook`
            to the address checked when the subscription was made).
        max_subscriptions: subscriptions held at most (507 beyond).
        max_attempts: webhook POSTs per wake at most.
        attempt_timeout: the longest one POST may take.
        wall_clock: POSIX time (``created_at``, wake events' ``ts``).
        jitter: ``(low, high) -> x`` for the retry jitter (``random.uniform``).
        resolve: ``(host, port) -> addresses`` for webhook hosts (default: getaddrinfo).
        max_pending_matches, sweep_interval, reload_interval: a shared store's
            background work (see :class:`~._sub_shared.SharedTasks`).
    """

    def __init__(
        self,
        backend: DurableBackend,
        *,
        state: SubscriptionState | None = None,
        signer: WebhookSigner | None = None,
        allow_loopback_http: bool = False,
        post: Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]] | None = None,
        max_subscriptions: int = 10_000,
        max_attempts: int = 8,
        attempt_timeout: float = 10.0,
        wall_clock: Callable[[], float] | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
        resolve: Callable[[str, int], Awaitable[Sequence[str]]] | None = None,
        max_pending_matches: int = 100_000,
        sweep_interval: float = 1.0,
        reload_interval: float = 30.0,
    ) -> None:
        delivery = WebhookDelivery(
            signer,
            allow_loopback_http=allow_loopback_http,
            post=post,
            attempt_timeout=attempt_timeout,
            jitter=jitter,
            resolve=resolve,
        )
        super().__init__(
            backend,
            delivery,
            MemorySubscriptionState() if state is None else state,
            max_subscriptions=max_subscriptions,
            wall_clock=wall_clock or (lambda: datetime.now(UTC).timestamp()),
        )
        self.max_attempts = max_attempts
        #: Webhook subscriptions whose next wake waits for a retry's backoff.
        self._retrying: set[Key] = set()
        #: The lease tasks of this instance: the wake's id and the task's scope.
        self._leases: dict[Key, tuple[str, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None
        self.shared = SharedTasks(
            self,
            max_pending=max_pending_matches,
            sweep_interval=sweep_interval,
            reload_interval=reload_interval,
        )

    # -- lifetime --------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Run the registry's tasks until cancelled (started once it accepts work:
        with a shared store, once the index holds every subscription stored).

        Cancellation: cancels every lease and delivery task. In process, every
        wake in flight ends (its tokens are fenced from then on); subscriptions
        and cursors stay, and the next data after a new ``serve`` wakes them.
        With a shared store, wakes stay as stored: their leases expire (swept
        by any instance) unless their holders ack.
        """
        async with trio.open_nursery() as nursery:
            try:
                if self.state.shared:
                    await nursery.start(self.shared.serve)
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._leases.clear()
                self._retrying.clear()
                self.state.stopped()

    async def _changed(self, key: Key) -> None:
        if self.state.shared:
            await self.shared.announce(key)

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

    # -- stream events (synchronous: called right after the store answered) ------------

    def on_data(self, owner: str | None, name: str, tail: Offset) -> None:
        """``name`` of ``owner`` was created or appended to and now ends at ``tail``.

        Links it to every subscription whose pattern matches (a stream new to
        the subscription is linked at its start, so this data wakes), and
        wakes the idle ones that now have pending work. With a shared store
        this is queued for a background task (an append never waits for Redis).
        """
        by_pattern, explicit = self.matching(owner, name)
        for key in by_pattern | explicit:
            self._see(key, name, Seen(tail, pattern=key in by_pattern))

    def on_delete(self, owner: str | None, name: str) -> None:
        """``name`` of ``owner`` was deleted: its glob links go (explicit links stay, at the start)."""
        by_pattern, explicit = self.matching(owner, name)
        for key in by_pattern | explicit:
            self._see(key, name, Seen(None, deleted=True))

    def _see(self, key: Key, name: str, seen: Seen) -> None:
        if isinstance(self.state, MemorySubscriptionState):
            subscription, effect = self.state.update_now(key, self.observe_change({name: seen}))
            self._start(subscription, effect)
        else:
            self.shared.see(key, name, seen)

    def observe_change(self, seen: dict[str, Seen]) -> Callable[[Subscription, float], Effect]:
        """The change that applies what streams did (``seen``), then wakes if work is pending."""

        def change(subscription: Subscription, now: float) -> Effect:
            stream = None
            for name, what in seen.items():
                link = subscription.links.get(name)
                if what.deleted and link is not None:
                    if link.explicit:
                        link.acked = link.tail = START
                    else:
                        subscription.forget(name)
                if what.tail is not None:
                    stream = stream or name
                    if what.pattern:
                        subscription.link(name, explicit=False, tail=what.tail, acked=START)
                    subscription.observe(name, what.tail)
            return None if stream is None else self._wake_step(subscription, stream, now)

        return change

    # -- wakes -----------------------------------------------------------------------

    def _wake_step(
        self, subscription: Subscription, stream: str | None, now: float, *, due: bool = False
    ) -> Effect:
        """(In a change.) Make a wake if the subscription is idle with pending work.

        A webhook subscription whose last delivery failed gets its next wake
        only when the retry is due (``due``: it is): the backoff runs
        before the wake and its lease, so a delay longer than the lease
        still ends in an attempt; meanwhile its ``status`` is ``failed``.
        Returns the wake made with its lease's trio deadline, the retry's
        delay, or ``None``.
        """
        key = (subscription.owner, subscription.id)
        if self._nursery is None or subscription.wake is not None or key in self._retrying:
            # Not serving (shutting down): pending work waits for a later event.
            # A wake in flight, or a retry scheduled: its end looks for pending work again.
            return None
        failures = self.delivery.failures.get(key, 0)
        if subscription.config.type == "webhook" and failures and not due:
            return self.delivery.retry_delay(failures) if subscription.has_pending() else None
        wake = subscription.wake_if_pending(stream, now)
        if wake is None:
            return None
        wake.deliverer = self.state.instance
        lease = wake.lease_deadline
        return wake, 0.0 if lease is None else self.state.local_deadline(lease, now)

    def _start(self, subscription: Subscription, effect: Effect) -> bool:
        """Start what a change's ``effect`` needs (this instance made the wake: it delivers)."""
        key = (subscription.owner, subscription.id)
        if effect is None or self._nursery is None:
            return False
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
        """The retry of a failed webhook delivery: a new wake after ``delay``."""
        try:
            await trio.sleep(delay)
        finally:
            self._retrying.discard(key)
        subscription, effect = await self.state.update(
            key, lambda sub, now: self._wake_step(sub, None, now, due=True)
        )
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
        self.delivery.failures.pop(key, None)

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
            return moved[0] if moved else None
        self._cancel_lease(key, expired[0].wake_id)
        logger.info(
            "subscription %r: the lease of generation %d expired", subscription.id, expired[0].generation
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
                "subscription %r: no wake event in %r: %s", subscription.id, wake_stream, exc.message
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
        """POST the wake until a 2xx, ``max_attempts`` or the lease (the caller's scope) ends it."""
        url = subscription.config.webhook_url
        assert url is not None
        key = (subscription.owner, subscription.id)
        body = self.delivery_body(subscription, wake)
        for attempt in range(self.max_attempts):
            # (The first attempt of a wake is never delayed: a retry's backoff ran before it.)
            await trio.sleep(
                self.delivery.retry_delay(self.delivery.failures.get(key, 0)) if attempt else 0.0
            )
            delivered, done = await self.delivery.attempt(key, url, body)
            if delivered:
                await self._delivered(key, wake, done=done)
                return
            await self.state.update(key, lambda sub, now: setattr(sub, "status", "failed"))

    async def _delivered(self, key: Key, wake: Wake, *, done: bool) -> None:
        """A delivery was answered 2xx: active again; ``{"done": true}`` acks the snapshot, ends the wake."""
        ended: list[bool] = []

        def change(subscription: Subscription, now: float) -> Effect:
            ended.clear()
            subscription.status = "active"
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

    # -- worker requests ---------------------------------------------------------------

    async def claim(self, owner: str | None, subscription_id: str, worker: str) -> tuple[Subscription, Wake]:
        """A pull-wake worker claims the wake (see :meth:`Subscription.claim`); its lease starts now,
        held by this instance."""
        key = (owner, subscription_id)
        self._serving()
        await self.shared.flush(key)

        def change(subscription: Subscription, now: float) -> tuple[Wake, float]:
            wake, _ = subscription.claim(worker, now)
            wake.deliverer = self.state.instance
            assert wake.lease_deadline is not None
            return wake, self.state.local_deadline(wake.lease_deadline, now)

        subscription, (wake, deadline) = await self.state.update(key, change)
        self._spawn(self._hold, subscription, wake, deadline)
        # Indexed before the worker hears of its claim: if this instance dies
        # now, the sweepers find the lease at once (not at their full pass).
        await self.state.note_lease(key, wake.lease_deadline)
        return subscription, wake

    async def ack(
        self,
        owner: str | None,
        subscription_id: str,
        token: str | None,
        request: dict[str, Any],
        *,
        kind: str,
    ) -> bool:
        """A callback (``kind="webhook"``) or ack (``"pull-wake"``): fence, apply the acks, then
        extend the lease, or with ``done`` end the wake. Returns ``next_wake``."""
        key = (owner, subscription_id)
        await self.shared.flush(key)
        done = request.get("done") is True
        moved: list[float] = []

        def change(subscription: Subscription, now: float) -> tuple[Wake, Effect]:
            if subscription.config.type != kind:
                raise invalid(f"this is not a {kind} subscription")
            wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
            subscription.apply_acks(request.get("acks"))
            if not done:
                subscription.heartbeat(wake, now)
                assert wake.lease_deadline is not None
                moved[:] = [self.state.local_deadline(wake.lease_deadline, now)]
                return wake, None
            subscription.end_wake(wake)
            return wake, self._wake_step(subscription, None, now)

        subscription, (wake, effect) = await self.state.update(key, change)
        if not done:
            held = self._leases.get(key)
            if held is not None and held[0] == wake.wake_id:
                held[1].deadline = moved[0]
            await self.state.note_lease(key, wake.lease_deadline)
            return False
        self._cancel_lease(key, wake.wake_id)
        if effect is None:
            await self.state.note_lease(key, None)
        return self._start(subscription, effect)

    async def release(
        self, owner: str | None, subscription_id: str, token: str | None, request: dict[str, Any]
    ) -> None:
        """The worker gives the wake back without acking; pending work makes a new wake."""
        key = (owner, subscription_id)

        def change(subscription: Subscription, now: float) -> tuple[Wake, Effect]:
            if subscription.config.type != "pull-wake":
                raise invalid("this is not a pull-wake subscription")
            wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
            subscription.end_wake(wake)
            return wake, self._wake_step(subscription, None, now)

        subscription, (wake, effect) = await self.state.update(key, change)
        self._cancel_lease(key, wake.wake_id)
        if effect is None:
            await self.state.note_lease(key, None)
        self._start(subscription, effect)
