"""The batched, idempotent writer behind :class:`RedisStore`.

Theory of operation
-------------------
``append_nowait`` (the hub's hot path) and ``enqueue_meta`` put items on one
ordered queue and never block: a :class:`~trio_streams.log._group_commit.CommitQueue`,
the group-commit core Durable Streams' writer uses too. When nothing is in
flight, the first item is flushed at once (no timer on the append path);
what arrives while a flush is in flight goes in the next one, so busy runs
share round trips. A flush *freezes* the head of the queue (up to
``_FLUSH_MAX_BYTES``) into commands -- consecutive events of a run become
one stream entry with the id ``<last>-<first>`` (appended by the
``APPEND_EVENTS`` script), a metadata write becomes ``SAVE_META`` plus index
and TTL updates -- and sends them as one pipeline. (``flush_interval > 0``
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

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import trio
from coredis.exceptions import NoScriptError

from .._group_commit import CommitQueue
from ._codec import encode_batch, entry_id
from ._health import timed_out
from ._pending import MetaWrite, Pending
from ._scripts import APPEND_EVENTS, SAVE_META

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._events import Event
    from .._replay_log import ReplayLog
    from ._client import Client
    from ._health import RedisHealth
    from ._keys import RedisKeys

logger = logging.getLogger("trio_streams.redis")


#: The owner renews its leases this many times per ``Ttls.lease``.
RENEWALS_PER_LEASE = 6
#: The part of ``Ttls.lease`` others wait, after the lease key is gone, before
#: they claim the run (a live owner re-creates a lease within it).
CLAIM_GRACE = 1 / 3


@dataclass(frozen=True, slots=True)
class Ttls:
    """How long keys live, in seconds (see docs/redis.md).

    Attributes:
        running: meta and events of a live run; refreshed by its owner every
            lease renewal, so they outlive a crashed owner by this much.
        finished: a finished run's meta hash (and index entries).
        events_finished: a finished run's events stream.
        lease: how long after its owner stops renewing a run is declared
            ``dead``: the lease key lives ``lease * (1 - CLAIM_GRACE)`` and is
            renewed ``RENEWALS_PER_LEASE`` times per ``lease``; others claim
            the run once they have seen the key missing for ``lease *
            CLAIM_GRACE`` (time for a live owner to re-create a lease that
            expired while Redis was down).
    """

    running: float = 24 * 3600.0
    finished: float = 7 * 24 * 3600.0
    events_finished: float = 24 * 3600.0
    lease: float = 10.0

    @property
    def lease_key(self) -> float:
        """Seconds the lease key itself lives."""
        return self.lease * (1 - CLAIM_GRACE)

    @property
    def renew_every(self) -> float:
        return self.lease / RENEWALS_PER_LEASE

    def __post_init__(self) -> None:
        for name in ("running", "finished", "events_finished", "lease"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"ttl {name} must be a positive number of seconds")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


#: One flush takes at most about this many bytes of the queue (at least one
#: item): after a long outage the backlog goes out as several pipelines, each
#: well within ``stream_timeout``, rather than one huge one.
_FLUSH_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Entry:
    run_id: str
    # The same Event objects the run's log holds, encoded per attempt: a batch
    # retried through an outage holds no second copy of them.
    events: list[Event]

    @property
    def first(self) -> int:
        return self.events[0].seq

    @property
    def last(self) -> int:
        return self.events[-1].seq


@dataclass(slots=True)
class _Frozen:
    commands: list[_Entry | MetaWrite]
    items: int
    events: int
    metas: int
    nbytes: int
    #: The last seq of each run's events in the flush.
    durable: dict[str, int]
    #: Runs whose final metadata is in the flush.
    finals: list[str]
    #: The timestamp of the flush's first (oldest) event; ``None``: no event in it.
    oldest: float | None


#: What the writer queues: an event of a run, or a metadata write.
_Item: TypeAlias = "tuple[str, Event] | MetaWrite"

# The flush's scripts go out as EVALSHA of these digests. (A coredis pipeline
# given Script objects first sends SCRIPT EXISTS and waits for its answer: a
# second round trip on every flush, which the events' readers elsewhere wait
# for.) They are loaded once, and again when Redis answers NOSCRIPT.
_SHAS = {source: hashlib.sha1(source.encode()).hexdigest() for source in (APPEND_EVENTS, SAVE_META)}


def _item_size(item: _Item) -> int:
    return item.size if isinstance(item, MetaWrite) else item[1].size


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
        self._queue: CommitQueue[_Item] = CommitQueue(
            self._flush,
            size=_item_size,
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

    async def _flush(self, batch: list[_Item]) -> None:
        """Send ``batch`` until Redis has it (retrying through an outage), then settle it."""
        frozen = self._freeze_batch(batch)
        await self._send_until_done(frozen)
        self._landed(frozen)

    def _landed(self, frozen: _Frozen) -> None:
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

    def _freeze(self) -> _Frozen:
        """Take the head of the queue (up to ``_FLUSH_MAX_BYTES``) as the next flush."""
        return self._freeze_batch(self._queue.take())

    def _freeze_batch(self, batch: list[_Item]) -> _Frozen:
        """Turn ``batch`` (items in queue order) into the commands of one flush."""
        commands: list[_Entry | MetaWrite] = []
        open_batches: dict[str, list[Event]] = {}
        durable: dict[str, int] = {}
        finals: list[str] = []
        events = metas = nbytes = 0
        oldest: float | None = None

        def close(run_id: str) -> None:
            entry = open_batches.pop(run_id, None)
            if entry:
                commands.append(_Entry(run_id, entry))

        for item in batch:
            if isinstance(item, MetaWrite):
                close(item.run_id)
                commands.append(item)
                metas += 1
                nbytes += item.size
                if item.final:
                    finals.append(item.run_id)
                continue
            run_id, event = item
            if oldest is None:
                oldest = event.timestamp
            events += 1
            nbytes += event.size
            durable[run_id] = event.seq
            entry = open_batches.get(run_id)
            if entry is None:
                open_batches[run_id] = [event]
            else:
                entry.append(event)
                if len(entry) >= self._max_entry:
                    close(run_id)
        for run_id in list(open_batches):
            close(run_id)
        return _Frozen(commands, len(batch), events, metas, nbytes, durable, finals, oldest)

    async def _send_until_done(self, frozen: _Frozen) -> None:
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

    async def _send(self, commands: list[_Entry | MetaWrite]) -> None:
        """One pipeline of ``commands`` (sent twice if Redis had lost the
        scripts); raises what a command failed with.

        Cancellation: what Redis got of the pipeline is unknown, as for any command.
        """
        if not self._scripts_loaded:
            await self._load_scripts()
        kinds, owners, results = await self._pipeline(commands)
        if any(isinstance(result, NoScriptError) for result in results):
            # Redis lost its script cache (a restart, SCRIPT FLUSH): load them and
            # send it all again (an entry that made it is skipped, as on any retry).
            await self._load_scripts()
            kinds, owners, results = await self._pipeline(commands)
        self._check(kinds, owners, results)

    async def _load_scripts(self) -> None:
        self._scripts_loaded = False
        client = self._client()
        for source in _SHAS:
            await client.script_load(source)
        self._scripts_loaded = True
        self.script_loads += 1

    async def _pipeline(self, commands: list[_Entry | MetaWrite]) -> tuple[list[str], list[str], Any]:
        keys = self._keys
        ttls = self._ttls
        kinds: list[str] = []
        owners: list[str] = []  # the run of each command, for the log
        async with self._client().pipeline(transaction=False, raise_on_error=False) as pipe:
            for command in commands:
                before = len(kinds)
                run_id = command.run_id
                if isinstance(command, _Entry):
                    pipe.evalsha(
                        _SHAS[APPEND_EVENTS],
                        keys=[keys.events(run_id), keys.meta(run_id)],
                        args=[
                            entry_id(command.first, command.last),
                            encode_batch(command.events),
                            command.last,
                        ],
                    )
                    kinds.append("append")
                    if command.first == 1:
                        # The stream's first entry creates it: give it its TTL.
                        # The owner's lease renewal refreshes it from then on.
                        pipe.pexpire(keys.events(run_id), _ms(ttls.running))
                        kinds.append("pexpire")
                else:
                    kinds += self._queue_meta(pipe, command)
                owners += [run_id] * (len(kinds) - before)
        return kinds, owners, pipe.results or ()

    def _check(self, kinds: list[str], owners: list[str], results: Any) -> None:
        for kind, run_id, result in zip(kinds, owners, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, NoScriptError):
                    self._scripts_loaded = False  # the retry loads them first
                if self._health is not None and timed_out(result):
                    # Redis did not answer: fail fast everywhere (and wake
                    # the waits that are pointless without it) until it does.
                    raise self._health.failed(f"{type(result).__name__}: {result}") from result
                raise result
            # append: 0 is a retried entry that had made it (already written).
            if kind == "append" and result == -1 and run_id not in self._fenced:
                self._fenced.add(run_id)
                self.fenced += 1
                logger.error("run %s was declared dead by another instance: its events are refused", run_id)
            if kind == "save_meta" and result == 0:
                logger.error("run %s was declared dead by another instance: its metadata stays final", run_id)

    def _queue_meta(self, pipe: Any, write: MetaWrite) -> list[str]:
        keys = self._keys
        ttls = self._ttls
        run_id = write.run_id
        kinds = ["save_meta"]
        args: list[str | int] = [_ms(ttls.finished if write.final else ttls.running)]
        for name, value in write.fields.items():
            args += (name, value)
        pipe.evalsha(_SHAS[SAVE_META], keys=[keys.meta(run_id)], args=args)
        score = {run_id: write.created_at}
        owner = write.owner
        pipe.zadd(keys.runs, score)
        kinds.append("zadd")
        if owner is not None:
            pipe.zadd(keys.owner_runs(owner), score)
            pipe.pexpire(keys.owner_runs(owner), _ms(ttls.finished + ttls.running))
            kinds += ("zadd", "pexpire")
        if write.live:
            pipe.zadd(keys.running, score)
            pipe.set(keys.lease(run_id), self._instance, px=_ms(ttls.lease_key))
            kinds += ("zadd", "set")
            if owner is not None:
                pipe.zadd(keys.owner_live(owner), score)
                pipe.pexpire(keys.owner_live(owner), _ms(ttls.running))
                kinds += ("zadd", "pexpire")
        if write.final:
            cutoff = time.time() - ttls.finished - ttls.running
            pipe.zrem(keys.running, [run_id])
            pipe.delete([keys.lease(run_id)])
            pipe.pexpire(keys.events(run_id), _ms(ttls.events_finished))
            pipe.zremrangebyscore(keys.runs, "-inf", cutoff)
            kinds += ("zrem", "del", "pexpire", "zremrangebyscore")
            if owner is not None:
                pipe.zrem(keys.owner_live(owner), [run_id])
                pipe.zremrangebyscore(keys.owner_runs(owner), "-inf", cutoff)
                kinds += ("zrem", "zremrangebyscore")
        return kinds
