"""``Idempotency-Key`` records in Redis: every instance on a prefix sees them.

One string per (owner, key) (``RedisKeys.idempotency``): ``p <token>
<digest>`` while the request that claimed it starts its run (a pending
claim, with a short TTL, so an instance that died mid-start frees the key),
then ``r <digest> <run id>`` for the records' TTL. Each step is a Lua script
on that one key, so it is atomic on a single Redis and on a Cluster alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._store import IdempotencyRecord, IdempotencyRecords

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._client import Client
    from ._keys import RedisKeys

#: The record there, or (when the key is free) a pending claim set with its TTL.
#: KEYS: record. ARGV: token, digest, pending TTL ms. Returns the old value or nil.
_CLAIM: Final = """
local old = redis.call('GET', KEYS[1])
if old then return old end
redis.call('SET', KEYS[1], 'p ' .. ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return false
"""

#: The pending claim ``token`` (or, expired, nothing) becomes the run's record.
#: KEYS: record. ARGV: token, digest, run id, TTL ms. Returns 1, or 0 if another claim holds it.
_RECORD: Final = """
local old = redis.call('GET', KEYS[1])
if old and old ~= 'p ' .. ARGV[1] .. ' ' .. ARGV[2] then return 0 end
redis.call('SET', KEYS[1], 'r ' .. ARGV[2] .. ' ' .. ARGV[3], 'PX', ARGV[4])
return 1
"""

#: Drop the pending claim ``token``, and only it. KEYS: record. ARGV: token.
_RELEASE: Final = """
local old = redis.call('GET', KEYS[1])
if old and string.sub(old, 1, #ARGV[1] + 3) == 'p ' .. ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def parse_record(value: str) -> IdempotencyRecord:
    """A stored value as a record (``p <token> <digest>`` or ``r <digest> <run id>``)."""
    kind, first, second = value.split(" ", 2)
    if kind == "p":
        return IdempotencyRecord(fingerprint=second, run_id=None)
    return IdempotencyRecord(fingerprint=first, run_id=second)


class RedisIdempotency(IdempotencyRecords):
    """The records of one prefix (see the module docstring).

    Args:
        client: returns the entered coredis client.
        keys: the key layout.
        ttl: seconds a record (the run a key started) is kept.
    """

    def __init__(self, client: Callable[[], Client], keys: RedisKeys, ttl: float) -> None:
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self._scripts: dict[str, Any] = {}

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client().register_script(source)
        return script

    async def claim(
        self, owner: str | None, key: str, fingerprint: str, token: str, pending_ttl: float
    ) -> IdempotencyRecord | None:
        """See :meth:`IdempotencyRecords.claim`."""
        old = await self._script(_CLAIM)(
            keys=[self._keys.idempotency(owner, key)], args=[token, fingerprint, _ms(pending_ttl)]
        )
        return None if old is None else parse_record(str(old))

    async def record(self, owner: str | None, key: str, token: str, fingerprint: str, run_id: str) -> bool:
        """See :meth:`IdempotencyRecords.record`."""
        done = await self._script(_RECORD)(
            keys=[self._keys.idempotency(owner, key)], args=[token, fingerprint, run_id, _ms(self.ttl)]
        )
        return int(done) == 1

    async def release(self, owner: str | None, key: str, token: str) -> None:
        """See :meth:`IdempotencyRecords.release`."""
        await self._script(_RELEASE)(keys=[self._keys.idempotency(owner, key)], args=[token])
