"""The batched, idempotent writer behind :class:`RedisStore`.

Theory of operation
-------------------
``append_nowait`` (the hub's hot path) and ``enqueue_meta`` put items on one
ordered queue and never block: a :class:`~trio_streams.log._group_commit.CommitQueue`,
the group-commit core Durable Streams' writer uses too. When nothing is in
flight, the first item is flushed at once (no timer on the append path);
what arrives while a flush is in flight goes in the next one, so busy runs
share round trips. A flush *freezes* the head of the queue (up to
``_FLUSH_MAX_BYTES``) into commands (:mod:`._flush_commands`) -- consecutive events of a run become
one stream entry with the id ``<last>-<first>`` (appended by the
``APPEND_EVENTS`` script; on a single Redis all of a flush's entries in one
``APPEND_BATCH`` call, so a mirror's blocked read wakes once per flush), a
metadata write becomes ``SAVE_META`` plus index and TTL updates -- and sends
them as one pipeline. (``flush_interval > 0``
opts back into waiting: a batch of fewer than ``flush_events`` items waits
that long for more, unless someone waits for durability.)

If the pipeline fails (Redis down, a timeout), the same frozen commands are
sent again after a backoff (doubling from ``backoff_min`` to
``backoff_max``), until they succeed. Meanwhile new items queue up behind
them. A re-sent entry that had already made it is recognised by the script
(the stream's top seq reaches the entry's last seq) and skipped: retries
never duplicate, lose or reorder events. The same script refuses entries of
a run another instance declared ``dead`` (fencing a stale owner). Per run,
the commands go out in queue order; runs are independent of each other (in
a cluster they live on different nodes).

Not-yet-durable data (queued or in flight) is bounded in bytes, metadata
writes included, and after each flush each run's replay log is told how far
its events are durable, so it never trims one Redis cannot serve yet: see
:mod:`~trio_streams.log.redis._pending`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from coredis import RedisCluster
from coredis.exceptions import NoScriptError

from .._group_commit import CommitQueue
from ._flush_commands import SHAS, Check, Entry, Frozen, Item, freeze_batch, item_size, queue_commands
from ._health import timed_out
from ._pending import MetaWrite, Pending
from ._ttls import CLAIM_GRACE, Ttls

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._events import Event
    from .._replay_log import ReplayLog
    from ._client import Client
    from ._health import RedisHealth
    from ._keys import RedisKeys

logger = logging.getLogger("trio_streams.redis")

__all__ = ["CLAIM_GRACE", "RedisWriter", "Ttls"]


#: One flush takes at most about this many bytes of the queue (at least one
#: item): after a long outage the backlog goes out as several pipelines, each
#: well within ``stream_timeout``, rather than one huge one.
_FLUSH_MAX_BYTES = 8 * 1024 * 1024


class RedisWriter:
    """Batches events and metadata into pipelines; see the module docstring.

    Args:
        client: returns the entered coredis client.
        keys: the key layout.
        instance: this store's instance id (the lease value).
        ttls: key lifetimes.
        flush_events: with ``flush_interval``, a batch of this many items
            goes at once.
        flush_interval: the longest a batch waits for more items before it
            is flushed; 0 (the default): never wait, flush at once when
            nothing is in flight and batch what arrives meanwhile.
        max_pending_bytes: bytes of events and metadata writes accepted but
            not yet durable, at most (see the module docstring).
        max_buffered_events: deprecated: also bound the items (events and
            metadata writes) not yet durable to this many; ``None``: no count bound.
        max_entry_events: events per stream entry, at most.
        backoff_min, backoff_max: retry delays after a failed flush.
        health: the connection's health, told when a flush's reply times
            out (a pipeline that collects its errors does not raise them
            through the health guard).
    """

    def __init__(
        self,
        client: Callable[[], Client],
        keys: RedisKeys,
        *,
        instance: str,
        ttls: Ttls,
        flush_events: int,
        flush_interval: float,
        max_pending_bytes: int,
        max_buffered_events: int | None,
        max_entry_events: int,
        backoff_min: float,
        backoff_max: float,
        health: RedisHealth | None = None,
    ) -> None:
        self._client = client
        self._health = health
        self._keys = keys
        self._instance = instance
        self._ttls = ttls
        #: Called with each acknowledged flush's oldest event timestamp (``Store.observe_persisted``).
        self.persisted: Callable[[float], None] | None = None
        #: The not-yet-durable data and its bound.
        self.pending = Pending(max_bytes=max_pending_bytes, max_items=max_buffered_events)
        self._max_entry = max_entry_events
        self._backoff = (backoff_min, backoff_max)
        # Items: (run_id, event) tuples and MetaWrites, in order, flushed by
        # one committer at a time. Not abandoned on cancellation: what stays
        # queued stays counted as pending (and is logged at close).
        self._queue: CommitQueue[Item] = CommitQueue(
            self._flush,
            size=item_size,
            max_bytes=_FLUSH_MAX_BYTES,
            linger=flush_interval,
            linger_items=flush_events,
        )
        self._appended = 0  # items ever queued
        self._durable = 0  # items acknowledged by Redis (a prefix of the queue's history)
        self._scripts_loaded = False
        #: Times the scripts were loaded into Redis (at the first flush, and after a NOSCRIPT).
        self.script_loads = 0
        self._fenced: set[str] = set()
        #: Runs whose events Redis refused because another instance declared them dead.
        self.fenced = 0
        self._flushed = trio.lowlevel.ParkingLot()
        #: False while flushes fail (Redis unreachable).
        self.healthy = True
        self.flush_errors = 0
        self.events_written = 0
        self.flushes = 0
        self.last_error: str | None = None

    # -- producers' side (no checkpoints) ------------------------------------------

    @property
    def pending_events(self) -> int:
        return self.pending.events

    def hold(self, run_id: str, log: ReplayLog) -> None:
        """Keep ``log`` from trimming the run's events until they are durable
        (see :class:`~trio_streams.log.redis._pending.Pending`). Call it
        before the run's first event."""
        self.pending.hold(run_id, log)

    def append_nowait(self, run_id: str, event: Event) -> None:
        """Queue an event.

        Raises:
            StoreOverflow: it does not fit in ``max_pending_bytes`` (a
                terminal event always does; a refused run's is dropped).
        """
        if not self.pending.admit_event(run_id, event, healthy=self.healthy):
            return
        self._appended += 1
        self._queue.push((run_id, event))

    def enqueue_meta(self, write: MetaWrite, *, first: bool = False) -> int | None:
        """Queue a metadata write; return the ticket :meth:`wait_durable` takes.

        Args:
            write: the write; a final one always fits.
            first: it is the run's first write (its start): if it does not
                fit, the run is refused, and nothing of it is ever written.

        Returns:
            The ticket, or ``None`` for the final write of a refused run
            (dropped: the store has nothing of that run).

        Raises:
            StoreOverflow: a write that is not final does not fit.
        """
        if not self.pending.admit_meta(write, first=first, healthy=self.healthy):
            return None
        self._appended += 1
        self._queue.push(write)
        return self._appended

    def ticket(self) -> int:
        """A ticket covering everything queued so far."""
        return self._appended

    async def wait_durable(self, ticket: int) -> None:
        """Return once every item up to ``ticket`` is in Redis.

        Cancellation: only the wait is cancelled; the items stay queued.
        """
        if self._durable >= ticket:
            await trio.lowlevel.checkpoint()
            return
        while self._durable < ticket:
            self._queue.urge()  # no lingering (flush_interval) for a batch someone waits for
            await self._flushed.park()

    # -- the flusher -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush what is queued, from now until cancelled: the committer runs
        in a nursery of this task whenever items wait.

        Cancellation: the flush in flight is abandoned (its items stay
        counted as pending); queued items stay queued.
        """
        async with trio.open_nursery() as nursery:
            self._queue.attach(nursery)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._queue.attach(None)

    async def _flush(self, batch: list[Item]) -> None:
        """Send ``batch`` until Redis has it (retrying through an outage), then settle it."""
        frozen = freeze_batch(batch, self._max_entry)
        await self._send_until_done(frozen)
        self._landed(frozen)

    def _landed(self, frozen: Frozen) -> None:
        """Redis has acknowledged ``frozen``: settle it and wake who waits for it."""
        self._durable += frozen.items
        self.pending.settle(
            events=frozen.events,
            meta=frozen.metas,
            nbytes=frozen.nbytes,
            durable=frozen.durable,
            finals=frozen.finals,
        )
        self.events_written += frozen.events
        self.flushes += 1
        self._flushed.unpark_all()
        if self.persisted is not None and frozen.oldest is not None:
            self.persisted(frozen.oldest)

    def _freeze(self) -> Frozen:
        """Take the head of the queue (up to ``_FLUSH_MAX_BYTES``) as the next flush."""
        return freeze_batch(self._queue.take(), self._max_entry)

    async def _send_until_done(self, frozen: Frozen) -> None:
        delay, backoff_max = self._backoff
        failures = 0
        while True:
            try:
                await self._send(frozen.commands)
            except Exception as exc:
                self.flush_errors += 1
                failures += 1
                self.healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log = logger.error if failures == 1 else logger.warning
                log(
                    "redis flush of %d commands failed (%s); attempt %d, retry in %.2fs, %d events buffered",
                    len(frozen.commands),
                    self.last_error,
                    failures,
                    delay,
                    self.pending.events,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, backoff_max)
                continue
            if not self.healthy:
                logger.warning("redis reachable again: flushed after %d failed attempts", failures)
                self.healthy = True
                self.last_error = None
            return

    async def _send(self, commands: list[Entry | MetaWrite]) -> None:
        """One pipeline of ``commands`` (sent twice if Redis had lost the
        scripts); raises what a command failed with.

        Cancellation: what Redis got of the pipeline is unknown, as for any command.
        """
        if not self._scripts_loaded:
            await self._load_scripts()
        checks, results = await self._pipeline(commands)
        if any(isinstance(result, NoScriptError) for result in results):
            # Redis lost its script cache (a restart, SCRIPT FLUSH): load them and
            # send it all again (an entry that made it is skipped, as on any retry).
            await self._load_scripts()
            checks, results = await self._pipeline(commands)
        self._check(checks, results)

    async def _load_scripts(self) -> None:
        self._scripts_loaded = False
        client = self._client()
        for source in SHAS:
            await client.script_load(source)
        self._scripts_loaded = True
        self.script_loads += 1

    async def _pipeline(self, commands: list[Entry | MetaWrite]) -> tuple[list[Check], Any]:
        client = self._client()
        # A single Redis takes a flush's entries in one script call (one wake-up
        # of a mirror's XREAD); a Cluster's calls stay one per run (one slot each).
        batch = not isinstance(client, RedisCluster)
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            checks = queue_commands(pipe, commands, self._keys, self._ttls, self._instance, batch=batch)
        return checks, pipe.results or ()

    def _check(self, checks: list[Check], results: Any) -> None:
        for (kind, run_ids), result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, NoScriptError):
                    self._scripts_loaded = False  # the retry loads them first
                if self._health is not None and timed_out(result):
                    # Redis did not answer: fail fast everywhere (and wake
                    # the waits that are pointless without it) until it does.
                    raise self._health.failed(f"{type(result).__name__}: {result}") from result
                raise result
            if kind == "appends":
                for run_id, answer in zip(run_ids, result, strict=True):
                    self._appended_one(run_id, answer)
            elif kind == "append":
                self._appended_one(run_ids[0], result)
            elif kind == "save_meta" and result == 0:
                logger.error(
                    "run %s was declared dead by another instance: its metadata stays final", run_ids[0]
                )

    def _appended_one(self, run_id: str, answer: Any) -> None:
        # 1 appended, 0 a retried entry that had made it (already written), -1 fenced.
        if answer == -1 and run_id not in self._fenced:
            self._fenced.add(run_id)
            self.fenced += 1
            logger.error("run %s was declared dead by another instance: its events are refused", run_id)
