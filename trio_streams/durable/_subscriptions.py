"""``SubscriptionRegistry``: Durable Streams subscriptions in this process, with their tasks.

The rules are :mod:`._sub_config` (what a subscription is), :mod:`._sub_index`
(which ones a stream belongs to) and :mod:`._sub_state` (wakes, leases,
fencing); :mod:`._sub_catalog` keeps the subscriptions and their members,
:mod:`._sub_delivery` makes webhook attempts. The registry is told about
stream data (:meth:`SubscriptionRegistry.on_data`, by
:class:`~._sub_backend.SubscribedBackend`), and runs what takes time in a
nursery it owns (:meth:`SubscriptionRegistry.serve`):

- one *lease task* per wake that has a lease: a ``CancelScope`` whose
  deadline is the lease (a heartbeat moves the deadline). When it passes
  and the wake is still current, the wake expires and pending work makes a
  new one. Ending a wake any other way cancels its task (identity-checked:
  a stale task never touches a newer wake);
- webhook delivery, inside its wake's lease task: POST (signed), retried
  with exponential backoff (1 s doubling to 60 s, 20% jitter), at most
  ``max_attempts`` per wake and never past the lease;
- pull-wake wake events, appended to the ``wake_stream``.

Every registry method is one synchronous step between awaits, which makes a
claim, a fence check and the change it guards atomic in this process.
Subscriptions are in their owner's namespace like streams: ``(owner, id)``.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._access import StreamId
from ._errors import DurableStreamError
from ._offsets import START
from ._stream import AppendRequest
from ._sub_catalog import SubscriptionCatalog
from ._sub_catalog import not_found as not_found
from ._sub_config import invalid
from ._sub_delivery import WebhookDelivery

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._backend import DurableBackend
    from ._offsets import Offset
    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription, Wake
    from ._webhook_signing import WebhookSigner

logger = logging.getLogger("trio_streams.durable.subscriptions")


class SubscriptionRegistry(SubscriptionCatalog):
    """Every subscription of this process (see the module docstring).

    Args:
        backend: the streams' store (for backfill, tails and wake events).
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
    """

    def __init__(
        self,
        backend: DurableBackend,
        *,
        signer: WebhookSigner | None = None,
        allow_loopback_http: bool = False,
        post: Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]] | None = None,
        max_subscriptions: int = 10_000,
        max_attempts: int = 8,
        attempt_timeout: float = 10.0,
        wall_clock: Callable[[], float] | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
        resolve: Callable[[str, int], Awaitable[Sequence[str]]] | None = None,
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
            max_subscriptions=max_subscriptions,
            wall_clock=wall_clock or (lambda: datetime.now(UTC).timestamp()),
        )
        self.max_attempts = max_attempts
        #: Webhook subscriptions whose next wake waits for a retry's backoff.
        self._retrying: set[Key] = set()
        self._leases: dict[Key, tuple[Wake, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None

    # -- lifetime --------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Run the registry's tasks until cancelled (started once it accepts work).

        Cancellation: cancels every lease and delivery task and ends every
        wake in flight (its tokens are fenced from then on); subscriptions and
        cursors stay, and the next data after a new ``serve`` wakes them.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._leases.clear()
                self._retrying.clear()
                # Their lease tasks are gone: end every wake, so that a later
                # serve() wakes pending work afresh (new generations).
                for subscription in self._subs.values():
                    subscription.wake = None

    def _spawn(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        if self._nursery is None:
            raise DurableStreamError(503, "unavailable", "subscriptions are not running")
        self._nursery.start_soon(function, *args)

    # -- stream events (synchronous: called right after the store answered) ------------

    def on_data(self, owner: str | None, name: str, tail: Offset) -> None:
        """``name`` of ``owner`` was created or appended to and now ends at ``tail``.

        Links it to every subscription whose pattern matches (a stream new to
        the subscription is linked at its start, so this data wakes), and
        wakes the idle ones that now have pending work.
        """
        if not self._subs:
            return  # (the common case on a server nobody subscribed on: no lookup at all)
        stream = StreamId(owner, name)
        for key in self._index.by_pattern(stream):
            subscription = self._subs[key]
            subscription.link(name, explicit=False, tail=tail, acked=START)
            self._wake(subscription, name)
        for key in self._index.by_explicit(stream):
            subscription = self._subs[key]
            subscription.observe(name, tail)
            self._wake(subscription, name)

    # -- wakes -----------------------------------------------------------------------

    def _forget(self, subscription: Subscription) -> None:
        if subscription.wake is not None:
            self._end(subscription, subscription.wake)
        self.delivery.failures.pop((subscription.owner, subscription.id), None)

    def _wake(self, subscription: Subscription, stream: str | None, *, due: bool = False) -> bool:
        """Make a wake if the subscription is idle with pending work, and start what it needs.

        A webhook subscription whose last delivery failed gets its next wake
        only when the retry is due (``due``: it is): the backoff runs
        before the wake and its lease, so a delay longer than the lease
        still ends in an attempt; meanwhile its ``status`` is ``failed``.
        """
        key = (subscription.owner, subscription.id)
        if self._nursery is None or subscription.wake is not None or key in self._retrying:
            # Not serving (shutting down): pending work waits for a later event.
            # A wake in flight, or a retry scheduled: its end looks for pending work again.
            return False
        failures = self.delivery.failures.get(key, 0)
        if subscription.config.type == "webhook" and failures and not due:
            if not subscription.has_pending():
                return False
            self._retrying.add(key)
            self._spawn(self._wake_later, subscription, self.delivery.retry_delay(failures))
            return True
        wake = subscription.wake_if_pending(stream, trio.current_time())
        if wake is None:
            return False
        if subscription.config.type == "webhook":
            self._spawn(self._hold, subscription, wake)
        else:
            self._spawn(self._announce, subscription, wake)
        return True

    async def _wake_later(self, subscription: Subscription, delay: float) -> None:
        """The retry of a failed webhook delivery: a new wake after ``delay``."""
        key = (subscription.owner, subscription.id)
        try:
            await trio.sleep(delay)
        finally:
            self._retrying.discard(key)
        if self._subs.get(key) is subscription:
            self._wake(subscription, None, due=True)

    def _end(self, subscription: Subscription, wake: Wake) -> None:
        """End ``wake`` and cancel its lease task."""
        subscription.end_wake(wake)
        key = (subscription.owner, subscription.id)
        held = self._leases.get(key)
        if held is not None and held[0] is wake:
            del self._leases[key]
            held[1].cancel(reason="wake ended")

    async def _hold(self, subscription: Subscription, wake: Wake) -> None:
        """The lease of ``wake`` (and, for a webhook, its delivery): ends with the wake.

        Cancellation: a cancel of the registry propagates; ending the wake
        cancels only this task's own scope.
        """
        key = (subscription.owner, subscription.id)
        assert wake.lease_deadline is not None
        with trio.CancelScope(deadline=wake.lease_deadline) as scope:
            self._leases[key] = (wake, scope)
            if subscription.config.type == "webhook":
                await self._deliver(subscription, wake)
            await trio.sleep_forever()
        if self._leases.get(key, (None,))[0] is wake:
            del self._leases[key]
        if subscription.wake is wake and self._subs.get(key) is subscription:
            # The lease passed with the wake still current: expire it.
            subscription.end_wake(wake)
            logger.info(
                "subscription %r: the lease of generation %d expired", subscription.id, wake.generation
            )
            self._wake(subscription, None)

    def _extend(self, subscription: Subscription, wake: Wake) -> None:
        subscription.heartbeat(wake, trio.current_time())
        held = self._leases.get((subscription.owner, subscription.id))
        if held is not None and held[0] is wake and wake.lease_deadline is not None:
            held[1].deadline = wake.lease_deadline

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
                subscription.status = "active"
                if done and subscription.wake is wake:
                    subscription.ack_snapshot(wake)
                    self._end(subscription, wake)
                    self._wake(subscription, None)
                return
            subscription.status = "failed"

    # -- worker requests ---------------------------------------------------------------

    def claim(self, owner: str | None, subscription_id: str, worker: str) -> tuple[Subscription, Wake]:
        """A pull-wake worker claims the wake (see :meth:`Subscription.claim`); its lease starts now."""
        subscription = self.get(owner, subscription_id)
        wake, _ = subscription.claim(worker, trio.current_time())
        self._spawn(self._hold, subscription, wake)
        return subscription, wake

    def ack(
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
        subscription = self.get(owner, subscription_id)
        if subscription.config.type != kind:
            raise invalid(f"this is not a {kind} subscription")
        wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
        subscription.apply_acks(request.get("acks"))
        if request.get("done") is not True:
            self._extend(subscription, wake)
            return False
        self._end(subscription, wake)
        return self._wake(subscription, None)

    def release(
        self, owner: str | None, subscription_id: str, token: str | None, request: dict[str, Any]
    ) -> None:
        """The worker gives the wake back without acking; pending work makes a new wake."""
        subscription = self.get(owner, subscription_id)
        if subscription.config.type != "pull-wake":
            raise invalid("this is not a pull-wake subscription")
        wake = subscription.fence(token, request.get("wake_id"), request.get("generation"))
        self._end(subscription, wake)
        self._wake(subscription, None)
