"""Redis key layout (pure: no I/O).

Every key of one run carries the run id as its hash tag, so a run's keys share
one Redis Cluster slot and a Lua script may touch them all::

    {prefix}run:{<id>}:events   stream: the run's events, batched into entries
    {prefix}run:{<id>}:meta     hash: status, owner, key, times, result, ...
    {prefix}run:{<id>}:lease    string (PX TTL): the owning instance's id

Indexes live outside any run's slot (each is one key, so one slot)::

    {prefix}runs                zset run id -> created_at (every run; listings)
    {prefix}running             zset run id -> created_at (queued or running)
    {prefix}owner:<enc(owner)>:runs  zset run id -> created_at (one owner's runs)
    {prefix}owner:<enc(owner)>:live  zset run id -> created_at (one owner's live runs)
    {prefix}control             stream: cancel requests and key turns, read by every instance
    {prefix}layout              string: the layout version (see ``_redis_layout.py``)

A run key belongs to its owner: the key space is (owner, key), and each
(owner, key) has a *key slot* of its own, hash-tagged on the encoded pair
(so its keys share one cluster slot, and one Lua script decides a claim)::

    {prefix}key:{<enc(owner, key)>}        hash: run (the holder), fence, at
    {prefix}key:{<enc(owner, key)>}:queue  list: runs waiting for the key, FIFO
    {prefix}key:{<enc(owner, key)>}:gone:<enc(run)>  string (PX TTL): a withdrawn
                                           claim (a late claim of that run is refused)

An ``Idempotency-Key`` of ``POST /v1/runs`` is per owner too, one string of
its own (``_idempotency.py``)::

    {prefix}idem:{<enc(owner, key)>}       string (PX TTL): ``p <token> <digest>``
                                           while its request starts the run, then
                                           ``r <digest> <run id>``

Indexes are hints, never the truth: a reader that finds an entry whose meta
hash expired or whose run has finished removes it (self-healing).

Encoding (injective): a string is percent-encoded, every byte outside
``[A-Za-z0-9_-]`` as ``%XX`` (UTF-8, upper-case hex), so it never holds ``:``,
``.``, ``{`` or ``}``; an owner is ``-`` for ``None`` and ``u<encoded>`` for a
string (so ``None``, ``""`` and ``"None"`` differ); a pair is
``<owner>.<key>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNSAFE = re.compile(rb"[^A-Za-z0-9_-]")


def encode_part(text: str) -> str:
    """``text`` percent-encoded: only ``[A-Za-z0-9_-]`` stay as they are (injective)."""
    raw = text.encode("utf-8", "surrogatepass")
    return _UNSAFE.sub(lambda match: b"%%%02X" % match.group()[0], raw).decode("ascii")


def encode_owner(owner: str | None) -> str:
    """An owner as a key-name part: ``-`` for ``None``, ``u`` + the encoded string otherwise."""
    return "-" if owner is None else "u" + encode_part(owner)


def encode_key_id(owner: str | None, key: str) -> str:
    """An (owner, key) pair as one hash-tag-safe name part: ``<owner>.<key>`` (injective)."""
    return f"{encode_owner(owner)}.{encode_part(key)}"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Builds the key names for one prefix. Two prefixes never share a key."""

    prefix: str

    def events(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}:events"

    def meta(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}:meta"

    def lease(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}:lease"

    @property
    def runs(self) -> str:
        return f"{self.prefix}runs"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    def owner_runs(self, owner: str) -> str:
        return f"{self.prefix}owner:{encode_owner(owner)}:runs"

    def owner_live(self, owner: str) -> str:
        return f"{self.prefix}owner:{encode_owner(owner)}:live"

    @property
    def control(self) -> str:
        return f"{self.prefix}control"

    def tails(self, instance: str) -> str:
        """The wake stream of ``instance``'s shared read of followed runs (``_tails.py``)."""
        return f"{self.prefix}tails:{{{encode_part(instance)}}}"

    @property
    def layout(self) -> str:
        return f"{self.prefix}layout"

    def key_slot(self, owner: str | None, key: str) -> str:
        """The hash naming the run that holds (owner, key) now, and its fencing counter."""
        return f"{self.prefix}key:{{{encode_key_id(owner, key)}}}"

    def key_queue(self, owner: str | None, key: str) -> str:
        """The FIFO of runs waiting for (owner, key) (same cluster slot as :meth:`key_slot`)."""
        return f"{self.prefix}key:{{{encode_key_id(owner, key)}}}:queue"

    def key_gone(self, owner: str | None, key: str, run_id: str) -> str:
        """Marks ``run_id``'s claim on (owner, key) withdrawn (same cluster slot)."""
        return f"{self.prefix}key:{{{encode_key_id(owner, key)}}}:gone:{encode_part(run_id)}"

    def idempotency(self, owner: str | None, key: str) -> str:
        """The ``Idempotency-Key`` record of (owner, key): one key, so one cluster slot."""
        return f"{self.prefix}idem:{{{encode_key_id(owner, key)}}}"
