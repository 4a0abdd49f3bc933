"""RedisStore: runs' events and metadata in Redis (or a Redis Cluster), through coredis.

``RedisStore(url, prefix=...)`` is handed to :func:`~trio_streams.open_hub`,
which starts it (a connection check, the batched writer, lease renewal) in its
own nursery and closes it (flush, then disconnect) when the hub ends.
Configuration, key layout, TTLs and failure behaviour: ``docs/redis.md``.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import coredis
import trio

from .._run_info import ROLLED_BACK, RunInfo, RunStatus
from .._store import IdempotencyRecords, KeyClaim, SharedStore, StoreStatistics
from ._claims import ClaimRef, KeyClaims
from ._client import Client, safe_url
from ._codec import info_to_hash
from ._connection import RedisConnection as RedisConnection
from ._connection import RedisUnavailable as RedisUnavailable
from ._connection import names_a_cluster as names_a_cluster
from ._idempotency import RedisIdempotency
from ._layout import LAYOUT_VERSION as LAYOUT_VERSION
from ._layout import LayoutMismatch as LayoutMismatch
from ._layout import check_layout as check_layout
from ._pending import DEFAULT_MAX_PENDING_BYTES, MetaWrite
from ._reader import get_run, list_runs, read_events
from ._remote import RemoteRuns
from ._scripts import RENEW_LEASE
from ._server import open_embedded_redis as open_embedded_redis
from ._tails import TailMux
from ._writer import RedisWriter, Ttls

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._budget import MemoryBudget
    from .._events import Event
    from .._replay_log import ReplayLog
    from .._run_info import OnConflict

logger = logging.getLogger("trio_streams.redis")
#: The longest key lifetime (and lease) a store takes, in seconds: ten years (the CLI's
#: flags say the same, cli/_units.py).
MAX_TTL = 3650 * 86400.0

#: XRANGE entries read per round trip when resuming.
_READ_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class RedisStoreStatistics(StoreStatistics):
    """:class:`StoreStatistics` plus the Redis writer's state.

    Attributes:
        healthy: False while flushes fail (Redis unreachable); the runs go on
            in memory, within ``max_pending_bytes``.
        pending_bytes: bytes of events and metadata writes not yet durable.
        pending_meta: metadata writes not yet durable.
        max_pending_bytes: the bound on ``pending_bytes``.
        overflows: events and metadata writes refused because the buffer was
            full (each fails its run).
        refused_runs: runs refused at their start (the store records
            nothing of them).
        flushes: pipelines written.
        last_error: the latest flush error while unhealthy.
        claimed_dead: runs of dead owners this instance marked ``dead``.
        fenced: runs of this instance whose events Redis refused because
            another instance had declared them ``dead``.
        answering: False while the connection is unhealthy (a command
            timed out; requests that need Redis fail fast until the probe
            sees it answer: docs/redis.md, "Health").
        outages: times the connection turned unhealthy.
    """

    healthy: bool = True
    pending_bytes: int = 0
    pending_meta: int = 0
    max_pending_bytes: int = 0
    overflows: int = 0
    refused_runs: int = 0
    flushes: int = 0
    last_error: str | None = None
    claimed_dead: int = 0
    fenced: int = 0
    answering: bool = True
    outages: int = 0


class RedisStore(SharedStore):
    """Persists runs in Redis, shared by every hub instance that uses the
    same URL and prefix; see ``docs/redis.md``.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS)
            or ``unix://path``; credentials and TLS pass through to coredis.
        prefix: prepended to every key; stores with different prefixes on one
            Redis never see each other's runs.
        cluster: ``url`` names a node of a Redis Cluster. ``None`` (the
            default): as the URL says with ``?cluster=yes``, else no.
        flush_events: with ``flush_interval``, flush once this many items are queued ...
        flush_interval: ... or this many seconds after the first one. 0 (the
            default): no waiting -- an item is flushed at once when nothing
            is in flight, and what arrives during a flush goes in the next
            one (group commit, see docs/redis.md).
        max_pending_bytes: bytes of events and metadata writes accepted but
            not yet durable (queued, in flight, or waiting out an outage),
            each event counted once. A run whose event, or whose start, does
            not fit fails loudly (``error``, code ``store_overflow``); other
            runs' reads are unaffected. See docs/redis.md for the outage
            this survives. Under a hub, at most its ``max_pending_bytes``
            (the memory budget's not-yet-durable share).
        max_buffered_events: deprecated (use ``max_pending_bytes``): also
            bound the events and metadata writes not yet durable to this many.
        max_entry_events: events batched into one stream entry, at most.
        ttl_running, ttl_finished, ttl_events_finished, lease_ttl: key
            lifetimes in seconds (see :class:`Ttls`).
        idempotency_ttl: seconds an ``Idempotency-Key`` of ``POST /v1/runs``
            is remembered, for every instance on this prefix. ``None`` (the
            default): ``ttl_running + ttl_finished``, as long as the run it
            names is normally kept.
        connect_timeout: bound on the startup check and on each connect.
        stream_timeout: bound on each command's reply. A command that times
            out makes requests that need Redis fail fast (``RedisUnavailable``,
            503) until a probe sees Redis answer (docs/redis.md, "Health").
        backoff_min, backoff_max: retry delays of a failing flush.
        instance_id: names this store's owner lease (default: host, pid, random).
        follow_block: seconds one ``XREAD BLOCK`` of a follower waits before
            it checks the run's owner is alive.
        optimized: set ``coredis.Config.optimized`` (skips coredis's runtime
            argument validation: 30-80% more commands per second).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "trio_streams:",
        cluster: bool | None = None,
        flush_events: int = 2048,
        flush_interval: float = 0.0,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_buffered_events: int | None = None,
        max_entry_events: int = 512,
        ttl_running: float = 24 * 3600.0,
        ttl_finished: float = 7 * 24 * 3600.0,
        ttl_events_finished: float = 24 * 3600.0,
        lease_ttl: float = 10.0,
        idempotency_ttl: float | None = None,
        connect_timeout: float = 5.0,
        stream_timeout: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        instance_id: str | None = None,
        follow_block: float = 1.0,
        optimized: bool = True,
    ) -> None:
        for name, value in (
            ("flush_events", flush_events),
            ("max_pending_bytes", max_pending_bytes),
            ("max_buffered_events", 1 if max_buffered_events is None else max_buffered_events),
            ("max_entry_events", max_entry_events),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if max_buffered_events is not None:
            warnings.warn(
                "RedisStore(max_buffered_events=...) is deprecated: bound the not-yet-durable "
                "data in bytes with max_pending_bytes",
                DeprecationWarning,
                stacklevel=2,
            )
        if not 0 <= flush_interval < math.inf:
            raise ValueError(f"flush_interval must be a number >= 0, not {flush_interval}")
        for name, number in (
            ("connect_timeout", connect_timeout),
            ("stream_timeout", stream_timeout),
            ("backoff_min", backoff_min),
            ("backoff_max", backoff_max),
        ):
            if not 0 < number < math.inf:
                raise ValueError(f"{name} must be a positive number, not {number}")
        for name, number in (
            ("ttl_running", ttl_running),
            ("ttl_finished", ttl_finished),
            ("ttl_events_finished", ttl_events_finished),
            ("lease_ttl", lease_ttl),
            ("idempotency_ttl", idempotency_ttl or 1.0),
        ):
            if number > MAX_TTL:  # Redis takes an expiry in ms in 64 bits: beyond, every write fails
                raise ValueError(f"{name} must be at most {MAX_TTL:g} s (10 years), not {number:g}")
        if idempotency_ttl is None:
            idempotency_ttl = ttl_running + ttl_finished
        elif not 0 < idempotency_ttl < math.inf:
            raise ValueError(f"idempotency_ttl must be a positive number, not {idempotency_ttl}")
        if optimized:
            coredis.Config.optimized = True
        connection = RedisConnection(
            url,
            prefix=prefix,
            cluster=cluster,
            connect_timeout=connect_timeout,
            stream_timeout=stream_timeout,
        )
        #: The Redis connection layer (URL, keys, health), shared with Durable Streams.
        self.connection = connection
        self.url = connection.url
        self.prefix = prefix
        self.keys = connection.keys
        # Rolled-back runs whose end is stored: their key waits for delete_run.
        self._rolled_back: dict[str, ClaimRef] = {}
        self.ttls = Ttls(ttl_running, ttl_finished, ttl_events_finished, lease_ttl)
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        #: True when ``url`` names a Redis Cluster node.
        self.cluster = connection.cluster
        self._connect_timeout = connect_timeout
        self._max_pending_bytes = max_pending_bytes
        self._writer = RedisWriter(
            self._require_client,
            self.keys,
            instance=self.instance_id,
            ttls=self.ttls,
            flush_events=flush_events,
            flush_interval=flush_interval,
            max_pending_bytes=max_pending_bytes,
            max_buffered_events=max_buffered_events,
            max_entry_events=max_entry_events,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            health=connection.health,
        )
        self._follow_block = follow_block
        self._remote = RemoteRuns(
            self._require_client, self.keys, self.ttls, instance=self.instance_id, block_seconds=follow_block
        )
        remote = self._remote
        self._claims = KeyClaims(
            self._require_client,
            self.keys,
            self.ttls,
            claim_dead=remote.claim_dead,
            lease_gone=remote.lease_gone,
            request_cancel=remote.request_cancel,
            announce_turn=remote.announce_turn,
        )
        self._idempotency = RedisIdempotency(self._require_client, self.keys, idempotency_ttl)
        remote.turn_handler = self._claims.wake
        remote.release_key = self._claims.release
        self._scope = trio.CancelScope()
        self._started = False
        self._stopped = trio.Event()
        self._open = False
        # Live runs this instance owns: their lease is renewed, their TTLs refreshed.
        self._live: dict[str, RunInfo] = {}
        self._runs_saved = 0

    def __repr__(self) -> str:
        return f"<RedisStore {safe_url(self.url)} prefix={self.prefix!r}>"

    @property
    def client(self) -> Client:
        """The coredis client (usable between :meth:`start` and :meth:`aclose`)."""
        return self._require_client()

    def _require_client(self) -> Client:
        if not self._open:
            raise trio.ClosedResourceError("the RedisStore is not started, or closed")
        return self.connection.client()

    def observe_persisted(self, observer: Callable[[float], None] | None) -> None:
        """Each acknowledged flush's oldest event timestamp, to ``observer`` (see ``Store``)."""
        self._writer.persisted = observer

    def durable_storage(self) -> RedisConnection | None:
        """This store's connection, for Durable Streams beside the runs
        (``RedisDurableStore.attach``), on a single Redis or a Cluster."""
        return self.connection

    def idempotency_records(self) -> IdempotencyRecords:
        """``Idempotency-Key`` records in Redis, seen by every instance on this prefix."""
        return self._idempotency

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Connect (checking the URL, credentials and TLS within
        ``connect_timeout``), then start the writer and lease renewal in
        ``nursery``.

        Raises:
            RedisUnavailable: Redis cannot be reached or refuses us; the
                message says why (e.g. a wrong password).
            RuntimeError: the store was started before.
        """
        if self._started:
            raise RuntimeError("a RedisStore can be started once")
        self._started = True
        await nursery.start(self._serve)

    async def _serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                async with self.connection.open():
                    self._open = True
                    async with trio.open_nursery() as nursery:
                        await nursery.start(self._writer.run)
                        await nursery.start(self._remote.watch_control)
                        nursery.start_soon(self._maintain)
                        nursery.start_soon(self._remote.reap)
                        if not self.cluster:  # a Cluster's streams cannot share one read
                            tails = TailMux(
                                self._require_client,
                                self.keys.tails(self.instance_id),
                                block_seconds=self._follow_block,
                            )
                            await nursery.start(tails.run)
                            self._remote.tails = tails
                        logger.info("redis store %s ready (instance %s)", self, self.instance_id)
                        task_status.started()
        finally:
            self._remote.tails = None
            self._open = False
            self._stopped.set()

    async def aclose(self) -> None:
        """Flush everything accepted, then disconnect. Idempotent.

        Cancellation: the flush is abandoned (what was not written is lost,
        and logged); the client is closed regardless.
        """
        if not self._started or self._stopped.is_set():
            await trio.lowlevel.checkpoint()
            return
        try:
            if self._open:
                await self._writer.wait_durable(self._writer.ticket())
        finally:
            pending = self._writer.pending_events
            if pending:
                logger.error("redis store closed with %d events never written", pending)
            self._scope.cancel(reason="store closed")
            with trio.move_on_after(self._connect_timeout, shield=True):
                await self._stopped.wait()

    async def _maintain(self) -> None:
        """Renew the leases of this instance's live runs, refresh their TTLs,
        and act on cancel intents recorded while a message could be missed."""
        ttls = self.ttls
        keys = self.keys
        renew: Any = None
        while True:
            await trio.sleep(ttls.renew_every)
            if not self._live:
                continue
            runs = list(self._live.values())
            try:
                if renew is None:
                    renew = self.client.register_script(RENEW_LEASE)
                async with self.client.pipeline(transaction=False) as pipe:
                    checks = []
                    for info in runs:
                        run_id = info.run_id
                        lease = renew(
                            keys=[keys.meta(run_id), keys.lease(run_id)],
                            args=[self.instance_id, int(ttls.lease_key * 1000)],
                            client=pipe,
                        )
                        cancel = pipe.hget(keys.meta(run_id), "cancel")
                        holds = None
                        if info.status is RunStatus.RUNNING:
                            holds = self._claims.queue_refresh(pipe, run_id)
                        checks.append((info, lease, cancel, holds))
                        pipe.pexpire(keys.meta(run_id), int(ttls.running * 1000))
                        pipe.pexpire(keys.events(run_id), int(ttls.running * 1000))
                for info, lease, cancel, holds in checks:
                    reason = await cancel
                    if not await lease and info.run_id in self._live:
                        logger.error("run %s: declared dead by another instance (lease lost)", info.run_id)
                        self._remote.cancel_local(info.run_id, "owner_lost")
                    elif not await _holds(holds) and info.run_id in self._live:
                        # Its key went to another run (declared dead meanwhile):
                        # never two live runs for one key.
                        logger.error("run %s: no longer holds its key; cancelled", info.run_id)
                        self._remote.cancel_local(info.run_id, "key_lost")
                    elif reason is not None:
                        self._remote.cancel_local(info.run_id, str(reason))
            except Exception as exc:
                logger.warning("redis lease renewal of %d runs failed: %s", len(runs), exc)

    # -- the Store interface ------------------------------------------------------------

    async def save_run(self, info: RunInfo) -> None:
        """Queue the metadata write; wait until it is in Redis unless Redis is
        unreachable or stops answering meanwhile (then the run goes on, and
        the write follows when it is back).

        Raises:
            StoreOverflow: the write does not fit in ``max_pending_bytes``;
                if it was the run's first, the store records nothing of the run.
        """
        first = info.run_id not in self._live
        ticket = self._writer.enqueue_meta(self._meta_write(info, final=False), first=first)
        if not info.status.finished:
            if first:
                self._runs_saved += 1
            self._live[info.run_id] = info
        if ticket is not None and self._writer.healthy and self.connection.healthy:
            # Not while Redis does not answer: the write follows when it does.
            with self.connection.health.until_unhealthy():
                await self._writer.wait_durable(ticket)
        else:
            await trio.lowlevel.checkpoint()

    def _meta_write(self, info: RunInfo, *, final: bool) -> MetaWrite:
        fields = info_to_hash(info)
        fields["instance"] = self.instance_id
        fields["lease_ms"] = str(int(self.ttls.lease * 1000))  # the claim grace of others follows it
        return MetaWrite(
            info.run_id,
            fields,
            info.owner,
            info.created_at,
            live=not info.status.finished,
            final=final,
        )

    def use_memory_budget(self, budget: MemoryBudget) -> None:
        """Bound the writer's not-yet-durable bytes by the hub's sub-budget too.

        The writer's bound becomes ``min(max_pending_bytes, budget.max_pending_bytes)``
        (in the writer's measure, the events' encoded size); the events
        themselves count in the budget at their full cost through their runs'
        logs, which hold them until they are durable.
        """
        pending = self._writer.pending
        pending.max_bytes = min(self._max_pending_bytes, budget.max_pending_bytes)

    def hold_log(self, run_id: str, log: ReplayLog) -> None:
        """The log trims only what the writer has flushed (see :meth:`Store.hold_log`)."""
        self._writer.hold(run_id, log)

    def append_nowait(self, run_id: str, event: Event) -> None:
        """Queue the event for the next flush (raises :class:`StoreOverflow` past the bound)."""
        self._writer.append_nowait(run_id, event)

    async def finish_run(self, info: RunInfo) -> None:
        """Queue the final metadata after the run's events and wait until all are in Redis.

        Cancellation (the hub's ``store_timeout``): the writes stay queued and
        go out when Redis is reachable again.
        """
        self._live.pop(info.run_id, None)
        # No longer refreshed: if the release below never happens (Redis
        # down past store_timeout), the next run's waiter heals the key.
        ref = self._claims.claims.pop(info.run_id, None)
        ticket = self._writer.enqueue_meta(self._meta_write(info, final=True))
        if ticket is None:
            # Refused at its start: Redis has nothing of the run, not even its key.
            logger.error(
                "run %s ended %s; the store refused it, so it is not recorded", info.run_id, info.status.value
            )
            await trio.lowlevel.checkpoint()
            return
        await self._writer.wait_durable(ticket)
        if ref is not None and info.status is RunStatus.CANCELLED and info.reason == ROLLED_BACK:
            # Rolled back: its key goes to the run that replaced it only once
            # it is deleted (delete_run, which the hub calls next).
            self._rolled_back[info.run_id] = ref
            return
        if ref is not None:
            # Only now that its end is stored: the next run may start at once.
            try:
                await self._claims.release(ref.owner, ref.key, info.run_id)
            except Exception as exc:
                # Healed by the next run's waiter, which sees this run finished.
                logger.warning("run %s: could not release its key (%s)", info.run_id, exc)

    async def delete_run(self, run_id: str) -> None:
        """Delete the run's meta hash, lease and index entries; its events
        stream expires ``lease_ttl`` later (idempotent: a run with no meta
        hash is already gone). Then, for a run rolled back, release its key
        (held since :meth:`finish_run`): the run that replaced it starts only
        once it is gone, wherever that runs. If the delete fails, the key is
        still released (logged); if this is cancelled first, the key heals
        as any lost release does (the next run's waiter, after a lease).

        Nothing opens a run without its meta hash (a 404 on every instance),
        so the events are unreachable at once; they linger only so that an
        instance already following the run (between two reads) still reads
        its terminal event instead of an end without one.
        """
        ref = self._rolled_back.pop(run_id, None)
        try:
            info = await get_run(self.client, self.keys, run_id)
            if info is not None:
                await self._delete(run_id, info.owner)
        except Exception as exc:
            if ref is None:
                raise
            logger.warning("run %s: could not delete the rolled-back run (%s)", run_id, exc)
        if ref is not None:
            try:
                await self._claims.release(ref.owner, ref.key, run_id)
            except Exception as exc:
                logger.warning("run %s: could not release its key (%s)", run_id, exc)

    async def _delete(self, run_id: str, owner: str | None) -> None:
        keys = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            # One DEL: the run's keys share its hash tag (one cluster slot).
            pipe.delete([keys.meta(run_id), keys.lease(run_id)])
            pipe.pexpire(keys.events(run_id), max(1, int(self.ttls.lease * 1000)))
            for index in (keys.runs, keys.running):
                pipe.zrem(index, [run_id])
            if owner is not None:
                pipe.zrem(keys.owner_runs(owner), [run_id])
                pipe.zrem(keys.owner_live(owner), [run_id])
        logger.info("run %s deleted (rolled back)", run_id)

    async def read_events(self, run_id: str, after: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with ``seq > after``: an XRANGE from the entry holding ``after + 1``."""
        return await read_events(self.client, self.keys, run_id, after, limit)

    async def get_run(self, run_id: str) -> RunInfo | None:
        """The stored metadata; for a live run, ``last_seq`` is the last event flushed."""
        return await get_run(self.client, self.keys, run_id)

    async def list_runs(
        self, *, owner: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Stored runs, newest first, from an index (entries whose meta expired are removed)."""
        return await list_runs(self.client, self.keys, owner=owner, status=status, limit=limit)

    # -- shared between instances --------------------------------------------------------

    def set_cancel_handler(self, handler: Callable[[str, str], None]) -> None:
        """Called with (run_id, reason) when another instance cancels a run."""

        def owned_only(run_id: str, reason: str) -> None:
            if run_id in self._live or run_id in self._claims.claims:
                handler(run_id, reason)

        self._remote.set_cancel_handler(owned_only)

    async def follow(self, run_id: str, after: int, deliver: Callable[[list[Event]], None]) -> bool:
        """See :meth:`Store.follow`: XRANGE to catch up, then ``XREAD BLOCK``;
        claims the run ``dead`` if its owner's lease expired."""
        return await self._remote.follow(run_id, after, deliver)

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Record the cancel intent in the run's meta hash and announce it on the control stream."""
        await self._remote.request_cancel(run_id, reason)

    async def claim_key(
        self, owner: str | None, key: str, run_id: str, on_conflict: OnConflict, max_queued: int
    ) -> KeyClaim:
        """Claim (owner, key) for ``run_id`` in its key slot (one Lua script); see
        :meth:`SharedStore.claim_key` and ``docs/redis.md``."""
        return await self._claims.claim(owner, key, run_id, on_conflict, max_queued)

    async def wait_key_turn(self, owner: str | None, key: str, run_id: str) -> int:
        """Wait for a turn message (or ask the key slot every ``lease_ttl / 6``)
        until ``run_id`` holds its key; see :meth:`SharedStore.wait_key_turn`."""
        return await self._claims.wait_turn(owner, key, run_id)

    async def release_key(self, owner: str | None, key: str, run_id: str, *, withdraw: bool = False) -> None:
        """Release (owner, key) or leave its queue; the next run is woken wherever it waits."""
        await self._claims.release(owner, key, run_id, withdraw=withdraw)

    async def key_holder_of(self, owner: str | None, key: str) -> str | None:
        """The run holding (owner, key) now, on any instance."""
        return await self._claims.holder_of(owner, key)

    async def claim_dead(self, run_id: str) -> int:
        """Mark the run ``dead`` if its owner's lease expired (atomic); the dead event's seq or 0."""
        return await self._remote.claim_dead(run_id)

    async def ping(self) -> None:
        """PING Redis (raises if it is unreachable)."""
        await self.client.ping()

    def statistics(self) -> RedisStoreStatistics:
        """What this instance wrote and its writer's state.

        ``runs`` counts runs this instance saved, ``events`` the events it
        wrote (Redis itself is not counted: that would not be cheap).
        """
        writer = self._writer
        pending = writer.pending
        return RedisStoreStatistics(
            runs=self._runs_saved,
            events=writer.events_written,
            pending_events=pending.events,
            flush_errors=writer.flush_errors,
            healthy=writer.healthy,
            pending_bytes=pending.nbytes,
            pending_meta=pending.meta,
            max_pending_bytes=pending.max_bytes,
            overflows=pending.overflows,
            refused_runs=pending.refused_runs,
            flushes=writer.flushes,
            last_error=writer.last_error,
            claimed_dead=self._remote.claimed_dead,
            fenced=writer.fenced,
            answering=self.connection.healthy,
            outages=self.connection.health.outages,
        )


async def _holds(reply: Any) -> bool:
    """A queued key refresh's answer (True when nothing was queued: no key claim)."""
    return True if reply is None else bool(await reply)


__all__ = [
    "LAYOUT_VERSION",
    "LayoutMismatch",
    "RedisConnection",
    "RedisStore",
    "RedisStoreStatistics",
    "RedisUnavailable",
    "Ttls",
    "check_layout",
    "names_a_cluster",
    "open_embedded_redis",
]
