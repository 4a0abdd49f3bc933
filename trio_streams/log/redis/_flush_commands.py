"""What one flush of :class:`~trio_streams.log.redis._writer.RedisWriter` sends to Redis.

The writer's queue holds items (a run's event, or a metadata write) in
order; a flush takes its head and *freezes* it (:func:`freeze_batch`):
consecutive events of a run become one stream entry (:class:`Entry`, id
``<last>-<first>``, appended by the ``APPEND_EVENTS`` script), a metadata
write stays one (``SAVE_META`` plus index and TTL updates), in queue order
per run. :func:`queue_commands` puts those commands on a pipeline. Sending,
retrying and settling them is the writer's.

On a single Redis the entries go out together: :func:`plan` groups them into
as few ``APPEND_BATCH`` calls as the order per run allows (one, unless a run's
metadata write sits between two of its entries' places, or a flush holds more
than :data:`MAX_BATCH_ENTRIES` entries), so a mirror's
blocked ``XREAD`` is served once per flush with every run it moved, not once
per entry (Redis serves blocked clients after each top-level command). A
Cluster keeps one ``APPEND_EVENTS`` per entry (a call's keys share a slot).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from ._codec import encode_batch, entry_id
from ._pending import MetaWrite
from ._scripts import APPEND_BATCH, APPEND_EVENTS, SAVE_META

if TYPE_CHECKING:
    from .._events import Event
    from ._keys import RedisKeys
    from ._ttls import Ttls


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True, slots=True)
class Entry:
    """Consecutive events of one run: one stream entry (``APPEND_EVENTS``)."""

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
class Frozen:
    """One flush: its commands, and what it settles once Redis has it."""

    commands: list[Entry | MetaWrite]
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
Item: TypeAlias = "tuple[str, Event] | MetaWrite"

# The flush's scripts go out as EVALSHA of these digests. (A coredis pipeline
# given Script objects first sends SCRIPT EXISTS and waits for its answer: a
# second round trip on every flush, which the events' readers elsewhere wait
# for.) They are loaded once, and again when Redis answers NOSCRIPT.
SHAS = {
    source: hashlib.sha1(source.encode()).hexdigest() for source in (APPEND_EVENTS, APPEND_BATCH, SAVE_META)
}

#: Entries one ``APPEND_BATCH`` call takes, at most. A script holds Redis (every
#: client) until it ends, and cannot be killed once it wrote: a flush of
#: 100,000 runs' entries (8 MB of small events) was one 0.8 s call; this many
#: is a few ms.
MAX_BATCH_ENTRIES = 512

#: One queued command's kind and the runs it is for (one, or an ``appends``
#: batch's, one per answer in its reply), for checking its result.
Check: TypeAlias = "tuple[str, tuple[str, ...]]"


def item_size(item: Item) -> int:
    return item.size if isinstance(item, MetaWrite) else item[1].size


def freeze_batch(batch: list[Item], max_entry: int) -> Frozen:
    """``batch`` (items in queue order) as one flush's commands, ``max_entry`` events per entry at most."""
    commands: list[Entry | MetaWrite] = []
    open_batches: dict[str, list[Event]] = {}
    durable: dict[str, int] = {}
    finals: list[str] = []
    events = metas = nbytes = 0
    oldest: float | None = None

    def close(run_id: str) -> None:
        entry = open_batches.pop(run_id, None)
        if entry:
            commands.append(Entry(run_id, entry))

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
            if len(entry) >= max_entry:
                close(run_id)
    for run_id in list(open_batches):
        close(run_id)
    return Frozen(commands, len(batch), events, metas, nbytes, durable, finals, oldest)


def plan(commands: list[Entry | MetaWrite]) -> list[list[Entry] | MetaWrite]:
    """``commands`` as steps: metadata writes as they are, entries gathered into batches.

    An entry joins the open batch (placed where that batch's first entry was)
    unless a metadata write of its own run came after that place: then it
    opens a new batch, here (as does an entry that finds the open batch
    full: :data:`MAX_BATCH_ENTRIES`). So per run the order is the queue's;
    only another run's metadata write can be overtaken.
    """
    steps: list[list[Entry] | MetaWrite] = []
    batch: list[Entry] | None = None
    since: set[str] = set()  # runs with a metadata write after the open batch's place
    for command in commands:
        if isinstance(command, MetaWrite):
            steps.append(command)
            if batch is not None:
                since.add(command.run_id)
        elif batch is None or command.run_id in since or len(batch) >= MAX_BATCH_ENTRIES:
            batch = [command]
            steps.append(batch)
            since = set()
        else:
            batch.append(command)
    return steps


def queue_commands(
    pipe: Any,
    commands: list[Entry | MetaWrite],
    keys: RedisKeys,
    ttls: Ttls,
    instance: str,
    *,
    batch: bool = False,
) -> list[Check]:
    """Queue ``commands`` on ``pipe`` (their entries in ``APPEND_BATCH`` calls if
    ``batch``: a single Redis); what each queued command is, to check its result."""
    if batch:
        checks: list[Check] = []
        for step in plan(commands):
            if isinstance(step, MetaWrite):
                checks += _queue_meta(pipe, step, keys, ttls, instance)
            else:
                checks.append(_queue_batch(pipe, step, keys, ttls))
        return checks
    checks = []
    for command in commands:
        if isinstance(command, MetaWrite):
            checks += _queue_meta(pipe, command, keys, ttls, instance)
            continue
        run_id = command.run_id
        pipe.evalsha(
            SHAS[APPEND_EVENTS],
            keys=[keys.events(run_id), keys.meta(run_id)],
            args=[entry_id(command.first, command.last), encode_batch(command.events), command.last],
        )
        checks.append(("append", (run_id,)))
        if command.first == 1:
            # The stream's first entry creates it: give it its TTL.
            # The owner's lease renewal refreshes it from then on.
            pipe.pexpire(keys.events(run_id), _ms(ttls.running))
            checks.append(("pexpire", (run_id,)))
    return checks


def _queue_batch(pipe: Any, entries: list[Entry], keys: RedisKeys, ttls: Ttls) -> Check:
    names: list[str] = []
    args: list[str | int] = []
    running = _ms(ttls.running)
    for entry in entries:
        run_id = entry.run_id
        names += (keys.events(run_id), keys.meta(run_id))
        # A run's first entry creates its stream: its TTL (renewed by the owner's lease renewal).
        ttl = running if entry.first == 1 else 0
        args += (entry_id(entry.first, entry.last), encode_batch(entry.events), entry.last, ttl)
    pipe.evalsha(SHAS[APPEND_BATCH], keys=names, args=args)
    return ("appends", tuple(entry.run_id for entry in entries))


def _queue_meta(pipe: Any, write: MetaWrite, keys: RedisKeys, ttls: Ttls, instance: str) -> list[Check]:
    run_id = write.run_id
    kinds = ["save_meta"]
    args: list[str | int] = [_ms(ttls.finished if write.final else ttls.running)]
    for name, value in write.fields.items():
        args += (name, value)
    pipe.evalsha(SHAS[SAVE_META], keys=[keys.meta(run_id)], args=args)
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
        pipe.set(keys.lease(run_id), instance, px=_ms(ttls.lease_key))
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
    return [(kind, (run_id,)) for kind in kinds]
