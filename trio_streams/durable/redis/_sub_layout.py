"""How Durable Streams subscriptions are laid out in Redis (pure: no I/O).

Keys (a subscription's identity is the hash tag, so its keys share a slot)::

    {prefix}ds:sub:{<id>}:state            a subscription of the shared namespace: hash of
                                           v (version), config, created, cb (callback URL),
                                           gen, status, wake (JSON, "" for none), ended
                                           (JSON: the last ended wakes' tokens), retry
                                           (JSON [failures, attempts, next_attempt_at
                                           (Redis time, s), error]; "" or absent: none)
    {prefix}ds:sub:{<id>}:links            hash: stream path -> JSON [explicit, glob, acked, tail]
    {prefix}ds:sub:u:{<owner>/<id>}:...    the same in ``owner``'s namespace (escaped as
                                           the streams' tags: :func:`~._layout.owned_tag`)
    {prefix}ds:subs                        set: every subscription (JSON [owner, id])
    {prefix}ds:sub-leases                  sorted set: subscription -> its lease's end
                                           (Redis time, ms), for the sweepers
    {prefix}ds:sub-changes                 stream: subscriptions whose configuration or
                                           members changed (``o`` owner, ``s`` id, ``i``
                                           the instance) (capped)

Links are a hash of their own so that a change writes only the links it
changed (an append moves one stream's tail; a subscription may have
thousands): :data:`SAVE` takes the fields that changed, and checks the
version the change was decided on (compare-and-set; the caller retries on
a conflict). :data:`LOAD` reads both hashes and Redis ``TIME`` in one
atomic step: a lease is in Redis time, the same clock for every instance.
The set, the sorted set and the stream are global keys (other slots on a
Cluster), written apart from a subscription's script: the set *before* a
create (a member without state is skipped) and after a delete, the sorted
set after a lease changed (a sweeper's full pass finds a lease it lacks).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .._errors import SUBSCRIPTION_UNREADABLE, DurableStreamError
from .._offsets import Offset
from .._sub_config import SubscriptionConfig
from .._sub_state import Link, Retry, Subscription, Wake
from ._layout import owned_tag

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._sub_index import SubscriptionKey as Key

logger = logging.getLogger("trio_streams.durable.subscriptions")

#: How many change announcements the stream keeps (about): followers need only the newest.
CHANGES_MAXLEN: Final = 10_000

#: KEYS: state, links. Returns {TIME seconds, TIME microseconds[, state fields, link fields]}
#: (no state: no subscription).
LOAD: Final = """
local t = redis.call('TIME')
local s = redis.call('HGETALL', KEYS[1])
if #s == 0 then return {t[1], t[2]} end
return {t[1], t[2], s, redis.call('HGETALL', KEYS[2])}
"""

#: KEYS: state, links. ARGV[1]: the version the change was decided on ("": the
#: subscription must not exist), ARGV[2]: JSON {"s": [field, value, ...] of the
#: state, "l": [path, value, ...] of links set, "d": [path, ...] of links removed}.
#: Returns 1 if saved (the version + 1), 0 if the version moved.
SAVE: Final = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
local spec = cjson.decode(ARGV[2])
redis.call('HSET', KEYS[1], 'v', tostring((tonumber(v) or 0) + 1))
local function each(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end
each('HSET', KEYS[1], spec.s)
each('HSET', KEYS[2], spec.l)
each('HDEL', KEYS[2], spec.d)
return 1
"""

#: KEYS: the lease index. ARGV[1]: how many at most. Returns [member, score, ...]
#: of the leases whose end (ms) has passed by Redis ``TIME`` (a script: on a
#: Cluster, TIME alone names no node; this runs on the index's).
DUE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
"""

#: KEYS: the lease index. ARGV: member, score. Removes the member if its score
#: is still that one (a newer lease indexed meanwhile stays). Returns 1 if removed.
DROP_LEASE: Final = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class SubKeys:
    prefix: str

    def _tag(self, key: Key) -> str:
        owner, subscription_id = key
        if owner is None:
            return f"{self.prefix}ds:sub:{{{subscription_id}}}"
        return f"{self.prefix}ds:sub:u:{{{owned_tag(owner, subscription_id)}}}"

    def state(self, key: Key) -> str:
        return f"{self._tag(key)}:state"

    def links(self, key: Key) -> str:
        return f"{self._tag(key)}:links"

    @property
    def all(self) -> str:
        return f"{self.prefix}ds:subs"

    @property
    def leases(self) -> str:
        return f"{self.prefix}ds:sub-leases"

    @property
    def changes(self) -> str:
        return f"{self.prefix}ds:sub-changes"


def member(key: Key) -> str:
    """``key`` as a member of the set and sorted set."""
    return json.dumps(list(key), separators=(",", ":"))


def key_of(value: bytes | str) -> Key:
    owner, subscription_id = json.loads(value)
    return (owner, subscription_id)


# -- the codec ---------------------------------------------------------------------------


def encode_state(subscription: Subscription) -> dict[str, str]:
    """The state hash's fields (all but ``v``) of ``subscription``."""
    config = subscription.config
    wake = subscription.wake
    return {
        "config": json.dumps(
            [
                config.type,
                config.pattern,
                list(config.streams),
                config.webhook_url,
                config.wake_stream,
                config.lease_ttl_ms,
                config.description,
            ],
            separators=(",", ":"),
        ),
        "created": subscription.created_at,
        "cb": subscription.callback_url,
        "gen": str(subscription.generation),
        "status": subscription.status,
        "wake": "" if wake is None else _encode_wake(wake),
        "ended": json.dumps(list(subscription.ended_tokens), separators=(",", ":")),
        "retry": _encode_retry(subscription.retry),
    }


def _encode_retry(retry: Retry) -> str:
    # (Written by the same SAVE as the wake and its lease: one compare-and-set.)
    if not (retry.failures or retry.attempts or retry.next_attempt_at is not None):
        return ""
    return json.dumps(
        [retry.failures, retry.attempts, retry.next_attempt_at, retry.error], separators=(",", ":")
    )


def _decode_retry(value: str) -> Retry:
    """A stored retry schedule; ``""`` (or a state saved before there was one): none."""
    if not value:
        return Retry()
    try:
        failures, attempts, next_attempt_at, error = json.loads(value)
        return Retry(
            int(failures),
            int(attempts),
            None if next_attempt_at is None else float(next_attempt_at),
            str(error),
        )
    except (ValueError, TypeError):
        # A schedule only times the next attempt: without it, one is due now. An error
        # here would end the reload or sweep that decodes it (and the registry with it).
        logger.warning("subscriptions: a stored retry schedule does not decode (%.80r): none", value)
        return Retry()


def _encode_wake(wake: Wake) -> str:
    document = {
        "id": wake.wake_id,
        "gen": wake.generation,
        "stream": wake.stream,
        "snap": {path: str(offset) for path, offset in wake.snapshot.items()},
        "token": wake.token,
        "holder": wake.holder,
        "lease": wake.lease_deadline,
        "dlv": wake.deliverer,
    }
    return json.dumps(document, separators=(",", ":"))


def encode_link(link: Link) -> str:
    return json.dumps(
        [int(link.explicit), int(link.glob), str(link.acked), str(link.tail)], separators=(",", ":")
    )


def encode_links(subscription: Subscription) -> dict[str, str]:
    return {path: encode_link(link) for path, link in subscription.links.items()}


def decode(key: Key, state: Mapping[bytes, bytes], links: Mapping[bytes, bytes]) -> Subscription:
    """The subscription ``key`` from its state and links hashes (as Redis returned them).

    Raises:
        DurableStreamError: 503 ``subscription_unreadable`` when they do not decode
            (damaged or hand-edited): requests for it are refused; the registry's loops skip it.
    """
    try:
        return _decode(key, state, links)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # UnicodeDecodeError and json's errors are ValueErrors.
        problem = f"the stored state of subscription {key[1]!r} does not decode ({type(exc).__name__})"
        raise DurableStreamError(503, SUBSCRIPTION_UNREADABLE, problem) from None


def _decode(key: Key, state: Mapping[bytes, bytes], links: Mapping[bytes, bytes]) -> Subscription:
    fields = {name.decode(): value.decode() for name, value in state.items()}
    kind, pattern, streams, url, wake_stream, lease_ttl_ms, description = json.loads(fields["config"])
    config = SubscriptionConfig(kind, pattern, tuple(streams), url, wake_stream, lease_ttl_ms, description)
    subscription = Subscription(
        key[0], key[1], config, fields["created"], callback_url=fields.get("cb", ""), status=fields["status"]
    )
    subscription.generation = int(fields["gen"])
    subscription.ended_tokens.extend(json.loads(fields.get("ended", "[]")))
    subscription.retry = _decode_retry(fields.get("retry", ""))
    if fields.get("wake"):
        subscription.wake = _decode_wake(json.loads(fields["wake"]))
    for path, value in links.items():
        explicit, glob, acked, tail = json.loads(value)
        subscription.links[path.decode()] = Link(
            bool(explicit), bool(glob), Offset.parse(acked), Offset.parse(tail)
        )
    return subscription


def _decode_wake(document: dict[str, Any]) -> Wake:
    return Wake(
        document["id"],
        document["gen"],
        document["stream"],
        {path: Offset.parse(offset) for path, offset in document["snap"].items()},
        token=document["token"],
        holder=document["holder"],
        lease_deadline=document["lease"],
        deliverer=document["dlv"],
    )


def changes(
    before: tuple[dict[str, str], dict[str, str]], after: tuple[dict[str, str], dict[str, str]]
) -> dict[str, list[str]] | None:
    """What :data:`SAVE` writes to go from ``before`` to ``after`` (state and links
    fields), or ``None`` when nothing changed."""
    state = [
        item for name, value in after[0].items() if before[0].get(name) != value for item in (name, value)
    ]
    links = [
        item for path, value in after[1].items() if before[1].get(path) != value for item in (path, value)
    ]
    removed = [path for path in before[1] if path not in after[1]]
    if not (state or links or removed):
        return None
    return {"s": state, "l": links, "d": removed}
