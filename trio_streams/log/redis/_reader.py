"""Reading runs back from Redis: events by seq range, metadata, listings."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from .._run_info import RunInfo, RunStatus
from ._codec import decode_batch, decode_entries, info_from_hash, resume_start

if TYPE_CHECKING:
    from .._events import Event
    from ._client import Client
    from ._keys import RedisKeys

logger = logging.getLogger("trio_streams.redis")

#: XRANGE entries read per round trip, at most, when resuming.
_READ_ENTRIES = 64


async def read_events(client: Client, keys: RedisKeys, run_id: str, after: int, limit: int) -> list[Event]:
    """Up to ``limit`` events with ``seq > after``: an XRANGE from the entry holding ``after + 1``."""
    if limit < 1:
        await trio.lowlevel.checkpoint()
        return []
    key = keys.events(run_id)
    start = resume_start(after)
    events: list[Event] = []
    # Entries hold up to max_entry_events each: ask for about as many
    # entries as ``limit`` needs (never decode far more than asked for).
    count = 2
    read_entries = 0
    while len(events) < limit:
        entries = await client.xrange(key, start=start, count=count)
        if not entries:
            break
        events.extend(decode_entries(((str(e.identifier), e.field_values) for e in entries), after))  # type: ignore[misc]
        read_entries += len(entries)
        if len(entries) < count:
            break
        start = f"({entries[-1].identifier!s}"
        per_entry = max(1.0, len(events) / read_entries)
        count = max(1, min(_READ_ENTRIES, math.ceil((limit - len(events)) / per_entry)))
    return events[:limit]


async def get_run(client: Client, keys: RedisKeys, run_id: str) -> RunInfo | None:
    """The stored metadata; for a live run, ``last_seq`` is the last event flushed."""
    async with client.pipeline(transaction=False) as pipe:
        meta = pipe.hgetall(keys.meta(run_id))
        top = pipe.xrevrange(keys.events(run_id), count=1)
    info = info_from_hash(await meta)
    if info is None:
        return None
    entries = await top
    if not info.status.finished and entries:
        payload = entries[0].field_values.get("e")
        terminal = terminal_from_entry(str(payload)) if payload else None
        if terminal is not None:
            # The terminal event is written just before the final meta.
            return finished_info(info, terminal)
        last = int(str(entries[0].identifier).split("-", 1)[0])
        if last > info.last_seq:
            info = _with_last_seq(info, last)
    return info


async def list_runs(
    client: Client,
    keys: RedisKeys,
    *,
    owner: str | None = None,
    status: RunStatus | None = None,
    limit: int = 100,
) -> list[RunInfo]:
    """Stored runs, newest first, from an index (entries whose meta expired are removed)."""
    live = status in (RunStatus.RUNNING, RunStatus.QUEUED)
    if owner is not None:
        index = keys.owner_live(owner) if live else keys.owner_runs(owner)
    else:
        index = keys.running if live else keys.runs
    found: list[RunInfo] = []
    stale: list[str] = []
    start = 0
    batch = max(limit, 16)
    while len(found) < limit:
        ids = [str(member) for member in await client.zrevrange(index, start, start + batch - 1)]
        if not ids:
            break
        start += len(ids)
        async with client.pipeline(transaction=False) as pipe:
            metas = [pipe.hgetall(keys.meta(run_id)) for run_id in ids]
        for run_id, pending in zip(ids, metas, strict=True):
            info = info_from_hash(await pending)
            if info is None or (live and info.status.finished):
                stale.append(run_id)
                continue
            if (owner is None or info.owner == owner) and (status is None or info.status == status):
                found.append(info)
    if stale:
        await client.zrem(index, stale)
        logger.info("redis index %s: removed %d stale entries", index, len(stale))
    return found[:limit]


def finished_info(info: RunInfo, terminal: Event) -> RunInfo:
    """``info`` as its terminal event (which carries the outcome) finishes it."""
    doc: dict[str, Any] = info.to_json()
    data = terminal.data if isinstance(terminal.data, dict) else {}
    doc.update(
        status=terminal.type,
        last_seq=terminal.seq,
        ended_at=terminal.timestamp,
        result=data.get("result"),
        partial=bool(data.get("partial", False)),
        reason=data.get("reason"),
        error=data.get("error"),
    )
    return RunInfo.from_json(doc)


def _with_last_seq(info: RunInfo, last_seq: int) -> RunInfo:
    doc: dict[str, Any] = info.to_json()
    doc["last_seq"] = last_seq
    return RunInfo.from_json(doc)


def terminal_from_entry(payload: str) -> Event | None:
    """The last event of an entry payload if it is terminal."""
    events = decode_batch(payload)
    return events[-1] if events and events[-1].terminal else None
