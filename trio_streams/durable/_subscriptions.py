"""``SubscriptionRegistry``: Durable Streams subscriptions, their wakes and their tasks.

The rules are :mod:`._sub_config` (what a subscription is), :mod:`._sub_index`
(which ones a stream belongs to) and :mod:`._sub_state` (wakes, leases,
fencing); :mod:`._sub_catalog` keeps the subscriptions and their members in
a :mod:`._sub_store` (in process, or in Redis shared by every instance),
:mod:`._sub_delivery` makes webhook attempts. The registry is told about
stream data (:meth:`SubscriptionRegistry.on_data`, by
:class:`~._sub_backend.SubscribedBackend`), and runs what takes time in a
nursery it owns (:meth:`SubscriptionRegistry.serve`):

- wakes, their lease tasks, webhook deliveries and wake events
  (:mod:`._sub_wakes`: the instance that made a wake delivers it);
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

import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._errors import DurableStreamError
from ._offsets import START
from ._sub_catalog import not_found as not_found
from ._sub_config import invalid
from ._sub_delivery import WebhookDelivery
from ._sub_index import key_for_logs
from ._sub_shared import Seen, SharedTasks
from ._sub_store import MemorySubscriptionState
from ._sub_wakes import SubscriptionWakes, logger

#: How long a stopping registry may take to hand its webhook wakes over (seconds).
HANDOVER_GRACE = 5.0

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._backend import DurableBackend
    from ._offsets import Offset
    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription, Wake
    from ._sub_store import SubscriptionState
    from ._sub_wakes import Effect
    from ._webhook_signing import WebhookSigner


class SubscriptionRegistry(SubscriptionWakes):
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
        max_pending_matches, sweep_interval, reload_interval, busy_interval: a
            shared store's background work (see :class:`~._sub_shared.SharedTasks`).
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
        busy_interval: float = 0.05,
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
            max_attempts=max_attempts,
        )
        self._memory = self.state if isinstance(self.state, MemorySubscriptionState) else None
        self.shared = SharedTasks(
            self,
            max_pending=max_pending_matches,
            sweep_interval=sweep_interval,
            reload_interval=reload_interval,
            busy_interval=busy_interval,
        )

    # -- lifetime --------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Run the registry's tasks until cancelled (started once it accepts work:
        with a shared store, once the index holds every subscription stored).

        Cancellation: cancels every lease and delivery task. In process, every
        wake in flight ends (its tokens are fenced from then on); subscriptions
        and cursors stay, and the next data after a new ``serve`` wakes them.
        With a shared store, the webhook wakes this instance delivers are
        handed over (:meth:`_hand_over`: their leases end now, so another
        instance's sweeper re-delivers them at once, or when their stored
        retry is due; shielded, at most
        ``HANDOVER_GRACE`` seconds); pull-wake claims stay as stored (their
        workers still hold them: they ack on any instance, or their leases
        expire, swept by any instance).
        """
        async with trio.open_nursery() as nursery:
            try:
                if self.state.shared:
                    await nursery.start(self.shared.serve)
                self._nursery = nursery
                if self._memory is not None:
                    self._resume(self._memory)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                if self.state.shared and self._leases:
                    held = dict(self._leases)
                    with trio.move_on_after(HANDOVER_GRACE, shield=True):
                        await self._hand_over(held)
                self._leases.clear()
                self._retrying.clear()
                self.state.stopped()

    def _resume(self, memory: MemorySubscriptionState) -> None:
        """(Starting, in process.) Index the subscriptions the store already holds (another
        registry's, before it stopped) and schedule their webhook retries as stored: the
        next attempt when its ``next_attempt_at`` comes, counting on from the stored round.
        (With a shared store, the index is loaded by :mod:`._sub_shared`, and a retry whose
        instance went is scheduled by the sweepers.)"""
        for subscription in list(memory.subscriptions.values()):
            self.reindex(subscription)
            if subscription.retry.next_attempt_at is not None:
                self._start(subscription, self._wake_step(subscription, None, trio.current_time()))

    async def _hand_over(self, held: dict[Key, tuple[str, trio.CancelScope]]) -> None:
        """(Stopping, with a shared store.) End the lease of every webhook wake this
        instance delivers: a compare-and-set on the wake still being the one this
        instance delivers (a callback that ended it meanwhile wins: nothing is
        redelivered), its lease set to now and indexed so, so that any other
        instance's next sweep expires it and delivers the pending work as a new
        generation -- once: of many sweepers, one expire wins -- when the stored
        retry schedule says (after a failed attempt: at its ``next_attempt_at``,
        counting on; :class:`~._sub_state.Retry`). A receiver still
        working on the old wake is fenced at its callback (at least once).
        Errors (the store gone) leave the wake to its lease, as before.

        Cancellation: stops handing over; the rest keep their leases.
        """
        instance = self.state.instance
        for key, (wake_id, _) in held.items():

            def hand(subscription: Subscription, now: float, wake_id: str = wake_id) -> bool:
                wake = subscription.wake
                if (
                    subscription.config.type != "webhook"
                    or wake is None
                    or wake.wake_id != wake_id
                    or wake.deliverer != instance
                ):
                    return False
                wake.lease_deadline = now
                wake.deliverer = None
                return True

            try:
                subscription, handed = await self.state.update(key, hand)
                if handed:
                    await self.state.note_lease(
                        key, subscription.wake.lease_deadline if subscription.wake else None
                    )
                    logger.warning(
                        "subscription %s: stopping; generation %d handed over to the other instances",
                        key_for_logs(key),
                        subscription.generation,
                    )
            except DurableStreamError as exc:
                logger.warning(
                    "subscription %s: not handed over (%s): left to its lease", key_for_logs(key), exc.message
                )

    def _forget(self, key: Key) -> None:
        super()._forget(key)
        self.shared.forget(key)

    def _cancel_lease(self, key: Key, wake_id: str) -> None:
        super()._cancel_lease(key, wake_id)
        self.shared.idle(key)

    async def _changed(self, key: Key) -> None:
        if self.state.shared:
            await self.shared.announce(key)

    # -- stream events (synchronous: called right after the store answered) ------------

    def on_data(self, owner: str | None, name: str, tail: Offset) -> None:
        """``name`` of ``owner`` was created or appended to and now ends at ``tail``.

        Links it to every subscription whose pattern matches (a stream new to
        the subscription is linked at its start, so this data wakes), and
        wakes the idle ones that now have pending work. With a shared store
        this is queued for a background task (an append never waits for Redis).
        """
        if not self._indexed:
            return  # (the common case on a server nobody subscribed on: no lookup at all)
        # (One dict lookup by a plain tuple: this runs on every append.)
        by_pattern, explicit = self._index.members(owner, name)
        if not (by_pattern or explicit):
            return
        memory = self._memory
        if memory is None:
            see = self.shared.see
            for key in by_pattern:
                see(key, name, Seen(tail, pattern=True))
            for key in explicit:  # (explicit members not matched by the pattern)
                see(key, name, Seen(tail))
            return
        # In process: the change at once, on the objects (what ``observe`` does in
        # ``update_now``, without building a change for every append's match).
        # The wake step is skipped while a wake is in flight (it would make none:
        # its end looks for pending work), the common case of a busy stream.
        subscriptions = memory.subscriptions
        for key in by_pattern:
            subscription = subscriptions.get(key)
            if subscription is not None:
                subscription.link(name, explicit=False, tail=tail, acked=START)
                if subscription.wake is None:
                    self._start(subscription, self._wake_step(subscription, name, trio.current_time()))
        for key in explicit:
            subscription = subscriptions.get(key)
            if subscription is not None:
                subscription.observe(name, tail)
                if subscription.wake is None:
                    self._start(subscription, self._wake_step(subscription, name, trio.current_time()))

    def on_delete(self, owner: str | None, name: str) -> None:
        """``name`` of ``owner`` was deleted: its glob links go (explicit links stay, at the start)."""
        by_pattern, explicit = self.matching(owner, name)
        for key in by_pattern | explicit:
            if self._memory is None:
                self.shared.see(key, name, Seen(None, deleted=True))
            else:
                self._memory.update_now(
                    key, lambda sub, now: self.observe(sub, now, name, None, pattern=False, deleted=True)
                )

    def observe_change(self, seen: dict[str, Seen]) -> Callable[[Subscription, float], Effect]:
        """The change that applies what streams did (``seen``), then wakes if work is pending."""

        def change(subscription: Subscription, now: float) -> Effect:
            for name, what in seen.items():
                self.observe(
                    subscription, now, name, what.tail, pattern=what.pattern, deleted=what.deleted, wake=False
                )
            # (The wake names the first stream with data; its snapshot has them all.)
            stream = next((name for name, what in seen.items() if what.tail is not None), None)
            return None if stream is None else self._wake_step(subscription, stream, now)

        return change

    def observe(
        self,
        subscription: Subscription,
        now: float,
        name: str,
        tail: Offset | None,
        *,
        pattern: bool,
        deleted: bool = False,
        wake: bool = True,
    ) -> Effect:
        """(In a change.) Stream ``name`` was deleted (``deleted``) and/or now ends at
        ``tail`` (``None``: no data), matched by the pattern (``pattern``) or as an
        explicit member; with ``wake``, make a wake if that left work pending.

        A stream new to the subscription that the pattern matched is linked at
        its start, so this data wakes; a deleted glob link goes, a deleted
        explicit one starts again at the start.
        """
        if deleted:
            link = subscription.links.get(name)
            if link is not None and link.explicit:
                link.acked = link.tail = START
            elif link is not None:
                subscription.forget(name)
        if tail is None:
            return None
        if pattern:
            subscription.link(name, explicit=False, tail=tail, acked=START)
        else:
            subscription.observe(name, tail)
        return self._wake_step(subscription, name, now) if wake else None

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
            # Fenced first: a request without the wake's token learns nothing (not even the type).
            wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
            if subscription.config.type != kind:
                raise invalid(f"this is not a {kind} subscription")
            subscription.apply_acks(request.get("acks"))
            if not done:
                subscription.heartbeat(wake, now)
                assert wake.lease_deadline is not None
                moved[:] = [self.state.local_deadline(wake.lease_deadline, now)]
                return wake, None
            subscription.end_wake(wake)
            if kind == "webhook":  # the receiver has it: no retry is owed
                subscription.status = "active"
                subscription.retry.clear()
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
            wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
            if subscription.config.type != "pull-wake":
                raise invalid("this is not a pull-wake subscription")
            subscription.end_wake(wake)
            return wake, self._wake_step(subscription, None, now)

        subscription, (wake, effect) = await self.state.update(key, change)
        self._cancel_lease(key, wake.wake_id)
        if effect is None:
            await self.state.note_lease(key, None)
        self._start(subscription, effect)
