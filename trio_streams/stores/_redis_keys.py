"""Redis key layout (pure: no I/O).

Every key of one run carries the run id as its hash tag, so a run's keys share
one Redis Cluster slot and a Lua script may touch them all::

    {prefix}run:{<id>}:events   stream: the run's events, batched into entries
    {prefix}run:{<id>}:meta     hash: status, owner, key, times, result, ...
    {prefix}run:{<id>}:lease    string (PX TTL): the owning instance's id

Indexes live outside any run's slot (each is one key, so one slot)::

    {prefix}runs                zset run id -> created_at (every run; listings)
    {prefix}running             zset run id -> created_at (queued or running)
    {prefix}owner:<owner>:runs  zset run id -> created_at (one owner's runs)
    {prefix}owner:<owner>:live  zset run id -> created_at (one owner's live runs)
    {prefix}control             stream: cancel requests to whichever instance owns a run
    {prefix}key:<key>           string: the id of the run that holds a key now

Indexes are hints, never the truth: a reader that finds an entry whose meta
hash expired or whose run has finished removes it (self-healing).
"""

from __future__ import annotations

from dataclasses import dataclass


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
        return f"{self.prefix}owner:{owner}:runs"

    def owner_live(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}:live"

    @property
    def control(self) -> str:
        return f"{self.prefix}control"

    def key_holder(self, key: str) -> str:
        return f"{self.prefix}key:{key}"
