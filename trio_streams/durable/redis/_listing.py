"""Listing one namespace's Durable Streams in Redis, with their tails (subscriptions' backfill).

Theory of operation
-------------------
The meta keys are the truth about which streams exist, so the listing is a
``SCAN`` over them (``MATCH`` on the namespace's key family; on a Redis
Cluster, every master in turn), each batch of keys read with one pipelined
``HGETALL`` per key. Soft-deleted and expired streams are left out, as the
memory store leaves them out (an expired one is deleted by its next lookup,
not by a listing: listing never writes).

Why not a set of names per owner, kept with create and delete? On a Cluster
it cannot be kept atomically with them: a stream's keys are on the slot of
its hash tag, and a namespace's set would be on another slot, which the
commit script cannot touch. It would then be written apart (before a
create, after a delete), and a concurrent delete and re-create can leave it
missing a live stream -- a subscription that never sees that stream -- unless
a repair protocol (incarnation-checked removals, lazy clean-up) is added,
and every create pays one more round trip on a Cluster. ``SCAN`` costs
nothing on the write path, is exact, and leaves nothing to repair after a
crash. Its cost is on the listing: O(keys in the database) commands on the
server, in bounded steps (:data:`SCAN_COUNT` keys per round trip, one
batch in memory at a time), paid once per pattern subscription created -- a
rare control-plane request. A listing concurrent with creates and deletes
sees what ``SCAN`` guarantees: every stream that exists for the whole
listing, and maybe those created or deleted during it.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Final

from .._access import StreamId
from ._layout import meta_from_hash, owned_tag

if TYPE_CHECKING:
    from collections.abc import Callable

    import coredis

    from .._offsets import Offset
    from ._layout import Keys

#: Keys asked of each ``SCAN`` step (and read per pipeline).
SCAN_COUNT: Final = 500

_GLOB_SPECIAL: Final = re.compile(r"([*?\[\]\\])")
_NAME_UNESCAPE: Final = re.compile("%(25|7B|7D)")
_UNESCAPED: Final = {"25": "%", "7B": "{", "7D": "}"}


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis ``MATCH`` pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def unescape_name(escaped: str) -> str:
    """The inverse of the name half of :func:`~._layout.owned_tag`."""
    return _NAME_UNESCAPE.sub(lambda match: _UNESCAPED[match.group(1)], escaped)


def meta_key_family(keys: Keys, owner: str | None) -> tuple[str, str]:
    """The text before and after the name in ``owner``'s meta keys."""
    if owner is None:
        return f"{keys.prefix}ds:{{", "}:meta"
    return f"{keys.prefix}ds:u:{{{owned_tag(owner, '')}", "}:meta"


def name_of(key: str, head: str, tail: str, owner: str | None) -> str | None:
    """The stream name of meta key ``key`` in the family ``(head, tail)`` (``None``: not one)."""
    if not (key.startswith(head) and key.endswith(tail)) or len(key) < len(head) + len(tail):
        return None
    inner = key[len(head) : len(key) - len(tail)]
    return inner if owner is None else unescape_name(inner)


async def list_tails(
    client: coredis.Redis[bytes] | coredis.RedisCluster[bytes],
    keys: Keys,
    owner: str | None,
    *,
    wall_clock: Callable[[], float] = time.time,
) -> list[tuple[str, Offset]]:
    """Every live stream of ``owner``'s namespace (not soft-deleted, not past its
    deadline) with its tail, in no particular order.

    Memory: one batch of :data:`SCAN_COUNT` keys (and their hashes) at a time,
    plus the result.

    Cancellation: nothing changes (it only reads); the listing is abandoned.
    """
    head, tail = meta_key_family(keys, owner)
    match = f"{glob_escape(head)}*{glob_escape(tail)}"
    found: list[tuple[str, Offset]] = []
    batch: list[tuple[str, str]] = []

    async def flush() -> None:
        async with client.pipeline(transaction=False) as pipe:
            replies = [pipe.hgetall(key) for _, key in batch]
        now = wall_clock()
        for (name, _), reply in zip(batch, replies, strict=True):
            meta = meta_from_hash(StreamId(owner, name), dict(await reply))
            if meta is None or meta.soft_deleted or (meta.deadline is not None and now >= meta.deadline):
                continue
            found.append((name, meta.tail))
        batch.clear()

    # coredis's RedisCluster.scan_iter walks every master in turn.
    async for raw in client.scan_iter(match=match, count=SCAN_COUNT):
        key = raw.decode()
        name = name_of(key, head, tail, owner)
        if name is None:
            continue
        batch.append((name, key))
        if len(batch) >= SCAN_COUNT:
            await flush()
    if batch:
        await flush()
    return found
