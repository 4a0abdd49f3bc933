"""A registry's background work when its subscriptions are shared with other instances (Redis).

With a shared :mod:`._sub_store`, a subscription may be changed by any
instance, so :class:`SharedTasks` (started by the registry's ``serve``):

- **matches in the background**: an append's request only looks the stream
  up in this instance's pattern index (synchronous, as in process) and notes
  what it saw (:meth:`SharedTasks.see`: per subscription and stream, the
  newest tail, coalesced); one task applies the notes, one change per
  subscription, so an append never awaits Redis for subscriptions and a
  burst of appends to a stream costs a subscription one update. The notes
  are bounded (``max_pending``: (subscription, stream) pairs; past it a note
  is dropped with a warning, and that data wakes nobody until the stream's
  next append). A request about one subscription (claim, ack) first applies
  that subscription's notes (:meth:`SharedTasks.flush`): an instance reads
  its own writes. A subscription left with a wake in flight by its last
  update is *busy*: new data cannot wake it (its wake's end looks for
  pending work), so its notes wait ``busy_interval`` after that update and
  are then applied together -- a stream appended to all the time costs its
  busy subscription one update per interval, not one per append (or per
  append's round trip). Notes for an idle subscription are applied at once
  (the wake's latency); a claim or ack here applies them first anyway; an
  ack on another instance sees them at most ``busy_interval`` late (its
  ``next_wake`` may then be false, and the notes' update makes the wake).
- **the index follows other instances**: it is loaded at start (``serve``
  reports started after that), changed when another instance announces a
  change (the store's change feed), and reloaded whole at every reconnect of
  the feed and every ``reload_interval``, so a lost announcement cannot leave
  an instance blind for longer than that.
- **sweeping leases**: every ``sweep_interval``, the subscriptions whose
  lease deadline has passed by the store's index (a sorted set, written
  after the change that set the lease) are expired if their lease has truly
  passed (:meth:`~._subscriptions.SubscriptionRegistry.expire`, a
  compare-and-set: of many instances sweeping, one expires it, and the
  pending work's new wake is delivered by that one). A lease the index
  missed (its instance died between the change and the index write) is found
  by the full pass every ``reload_interval``, over every subscription.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._errors import SUBSCRIPTION_UNREADABLE, DurableStreamError
from ._sub_index import key_for_logs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._offsets import Offset
    from ._sub_catalog import Indexed
    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription
    from ._sub_store import SubscriptionState

logger = logging.getLogger("trio_streams.durable.subscriptions")

#: Due leases one sweep looks at, at most (the rest wait for the next).
SWEEP_BATCH = 256


@dataclass(slots=True)
class Seen:
    """What a stream did, as a subscription is to learn it: its newest tail
    (``None``: no data), whether the pattern matched it, whether it was deleted."""

    tail: Offset | None
    pattern: bool = False
    deleted: bool = False

    def merge(self, later: Seen) -> None:
        """Fold ``later`` (what the stream did next) into this note."""
        if later.deleted:
            # What the stream had before it went is gone with it.
            self.deleted, self.tail, self.pattern = True, later.tail, later.pattern
        elif later.tail is not None:
            if self.tail is None or self.tail < later.tail:
                self.tail = later.tail
            self.pattern = self.pattern or later.pattern


class SharedState(Protocol):
    """What :class:`SharedTasks` needs beyond :class:`~._sub_store.SubscriptionState`."""

    async def announce(self, key: Key) -> None:
        """Tell every instance that ``key``'s configuration or members changed."""
        ...

    async def follow(
        self,
        changed: Callable[[Key], Awaitable[None]],
        lost: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``changed`` for every other instance's announcement, ``lost`` after the
        feed was lost (announcements may have gone by unseen); started once following."""
        ...

    async def due_leases(self, limit: int) -> list[tuple[Key, float]]:
        """Subscriptions whose indexed lease deadline has passed, with that deadline."""
        ...

    async def drop_lease(self, key: Key, deadline: float) -> None:
        """Unindex ``key``'s lease if it is still indexed at ``deadline``."""
        ...


class _Registry(Protocol):
    """What :class:`SharedTasks` uses of its :class:`~._subscriptions.SubscriptionRegistry`
    (named here, so that this module does not import the registry built on it)."""

    state: SubscriptionState
    _indexed: dict[Key, Indexed]

    def observe_change(self, seen: dict[str, Seen]) -> Callable[[Subscription, float], Any]: ...
    def _start(self, subscription: Subscription, effect: Any) -> bool: ...
    def reindex(self, subscription: Subscription) -> None: ...
    def _unindex(self, key: Key) -> None: ...
    def _forget(self, key: Key) -> None: ...
    async def expire(self, key: Key, wake_id: str | None) -> float | None: ...


class SharedTasks:
    """The shared store's background work for one registry (see the module docstring)."""

    def __init__(
        self,
        registry: _Registry,
        *,
        max_pending: int,
        sweep_interval: float,
        reload_interval: float,
        busy_interval: float = 0.05,
    ) -> None:
        self.registry = registry
        self.max_pending = max_pending
        self.busy_interval = busy_interval
        #: Busy subscriptions (a wake in flight at their last update): when their notes are due.
        self._busy: dict[Key, float] = {}
        self.sweep_interval = sweep_interval
        self.reload_interval = reload_interval
        self._notes: dict[Key, dict[str, Seen]] = {}
        #: Subscriptions whose notes are being applied now: set when that update is done.
        self._applying: dict[Key, trio.Event] = {}
        self._noted = 0
        self._more = trio.Event()
        self.dropped = 0

    @property
    def _state(self) -> SharedState:
        state: SubscriptionState = self.registry.state
        return state  # type: ignore[return-value]

    # -- matches ---------------------------------------------------------------------

    def see(self, key: Key, name: str, seen: Seen) -> None:
        """Note what ``name`` did for subscription ``key`` (synchronous; applied in the background)."""
        notes = self._notes.get(key)
        if notes is None:
            notes = self._notes[key] = {}
            # The applier looks at a new key; later notes for it go with it (so a
            # busy subscription's appends do not wake the applier one by one).
            self._more.set()
        known = notes.get(name)
        if known is not None:
            known.merge(seen)
        elif self._noted >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "subscriptions: %d matches waiting for redis, the most kept; %d dropped so far",
                    self._noted,
                    self.dropped,
                )
            if not notes:
                del self._notes[key]
            return
        else:
            notes[name] = seen
            self._noted += 1

    def idle(self, key: Key) -> None:
        """``key``'s wake ended here: its notes (if any) are applied at once, not after
        ``busy_interval`` (they may be the pending work of its next wake)."""
        if self._busy.pop(key, None) is not None and self._notes.get(key):
            self._more.set()

    def forget(self, key: Key) -> None:
        """Subscription ``key`` is gone: nothing is kept for it (its notes go with it)."""
        self._busy.pop(key, None)
        self._take(key)

    def _take(self, key: Key) -> dict[str, Seen] | None:
        notes = self._notes.pop(key, None)
        if notes is not None:
            self._noted -= len(notes)
        return notes

    async def flush(self, key: Key) -> None:
        """Apply ``key``'s notes now (before a request about it), after the update already
        applying some (the background task's): when this returns, every note taken before
        it was called is in the store. Cancellation: notes not applied are kept."""
        if self._notes.get(key) or key in self._applying:
            await self._apply(key)

    async def _apply(self, key: Key) -> None:
        # One update at a time per subscription: a request's flush that found the
        # background task's update in flight waits for it (else the request could
        # load the subscription before that update's wake is in the store).
        while (applying := self._applying.get(key)) is not None:
            await applying.wait()
        notes = self._take(key)
        if not notes:
            return
        applied = self._applying[key] = trio.Event()
        try:
            await self._update(key, notes)
        finally:
            del self._applying[key]
            applied.set()

    async def _update(self, key: Key, notes: dict[str, Seen]) -> None:
        try:
            subscription, effect = await self.registry.state.update(key, self.registry.observe_change(notes))
        except DurableStreamError as exc:
            if exc.status == 404:
                self._busy.pop(key, None)
                return  # deleted meanwhile: its notes go with it
            if exc.code == SUBSCRIPTION_UNREADABLE:
                # Its notes would be retried for ever, each pass delaying every other's.
                logger.warning("subscriptions: matches for %s dropped: %s", key_for_logs(key), exc.message)
                return
            for name, seen in notes.items():  # kept for the next try
                self.see(key, name, seen)
            raise
        except BaseException:
            for name, seen in notes.items():
                self.see(key, name, seen)
            raise
        if subscription.wake is not None:
            self._busy[key] = trio.current_time() + self.busy_interval
        else:
            self._busy.pop(key, None)
        self.registry._start(subscription, effect)

    async def _apply_notes(self) -> None:
        delay = 0.05
        due = math.inf
        while True:
            with trio.move_on_at(due):
                await self._more.wait()
            self._more = trio.Event()
            now, due = trio.current_time(), math.inf
            for key in list(self._notes):
                busy_until = self._busy.get(key)
                if busy_until is not None and busy_until > now:
                    due = min(due, busy_until)  # (a busy subscription's notes wait: the docstring)
                    continue
                try:
                    await self._apply(key)
                except DurableStreamError as exc:
                    logger.warning(
                        "subscriptions: matches not applied (%s); retrying in %.2fs", exc.message, delay
                    )
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    break
                delay = 0.05

    # -- the index -------------------------------------------------------------------

    async def announce(self, key: Key) -> None:
        """Tell the other instances that ``key`` changed (they refresh their index)."""
        await self._state.announce(key)

    async def reload(self) -> None:
        """Make the index hold every stored subscription, and nothing else."""
        registry = self.registry
        stored = set(await registry.state.keys())
        for key in set(registry._indexed) - stored:
            registry._unindex(key)
            registry._forget(key)
        for key in stored:
            try:
                await self.refresh(key)
            except DurableStreamError as exc:
                if exc.code != SUBSCRIPTION_UNREADABLE:
                    raise
                # One damaged record must not keep every other subscription out of the index.
                logger.warning("subscriptions: %s skipped: %s", key_for_logs(key), exc.message)

    async def refresh(self, key: Key) -> None:
        """Index ``key`` as stored now (or unindex it, gone)."""
        registry = self.registry
        subscription = await registry.state.get(key)
        if subscription is None:
            registry._unindex(key)
            registry._forget(key)
        else:
            registry.reindex(subscription)

    async def _refresh_followed(self, key: Key) -> None:
        try:
            await self.refresh(key)
        except DurableStreamError as exc:
            logger.warning(
                "subscriptions: %s not refreshed (%s): reloading all", key_for_logs(key), exc.message
            )
            await self._lost()

    async def _lost(self) -> None:
        try:
            await self.reload()
        except DurableStreamError as exc:
            logger.warning("subscriptions: index not reloaded: %s", exc.message)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the index, then follow, apply and sweep until cancelled (started once loaded).

        Raises:
            DurableStreamError: the store cannot be read at start.
        """
        async with trio.open_nursery() as nursery:
            # Following first: a change announced during the load is not missed.
            await nursery.start(self._state.follow, self._refresh_followed, self._lost)
            await self.reload()
            nursery.start_soon(self._apply_notes)
            nursery.start_soon(self._sweep)
            task_status.started()

    # -- leases ----------------------------------------------------------------------

    async def _sweep(self) -> None:
        passes_per_reload = max(1, round(self.reload_interval / self.sweep_interval))
        sweeps = 0
        while True:
            await trio.sleep(self.sweep_interval)
            sweeps += 1
            try:
                for key, deadline in await self._state.due_leases(SWEEP_BATCH):
                    await self._expire(key)
                    await self._state.drop_lease(key, deadline)
                if sweeps % passes_per_reload == 0:
                    for key in list(self.registry._indexed):
                        await self._expire(key)
                    await self.reload()
            except DurableStreamError as exc:
                logger.warning("subscriptions: lease sweep failed: %s", exc.message)

    async def _expire(self, key: Key) -> None:
        try:
            await self.registry.expire(key, None)
        except DurableStreamError as exc:
            if exc.code == SUBSCRIPTION_UNREADABLE:
                # Skipped, not raised: a pass would otherwise stop at this key every time.
                logger.warning("subscriptions: %s not swept: %s", key_for_logs(key), exc.message)
            elif exc.status != 404:
                raise
