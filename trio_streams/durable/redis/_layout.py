"""How a Durable Stream is laid out in Redis (pure: no I/O).

Keys (the stream's identity is the hash tag, so one stream's keys share a slot)::

    {prefix}ds:{<name>}:meta              a stream of the shared namespace: hash of
                                          configuration, tail, writer state, lifetime, version
    {prefix}ds:{<name>}:data              its data: one entry per append, id ``<start>-<seq>``
    {prefix}ds:u:{<owner>/<name>}:meta    the same for ``name`` in ``owner``'s namespace
    {prefix}ds:u:{<owner>/<name>}:data      (both escaped: see :func:`owned_tag`)
    {prefix}ds:notify                     stream: every changed stream, ``n`` its name and
                                          ``o`` its owner (absent: shared) (capped)
    {prefix}ds:incarnation                counter: a new id for every created stream (never
                                          shown: ETags are keyed with ``ds:etag-key``)
    {prefix}ds:etag-key                   32 random bytes every instance keys ETags with
                                          (set once: see :func:`etag_id`)
    {prefix}ds:signing-key                the webhook signing key every instance shares
                                          (Ed25519, PKCS#8 PEM; set once: see durable/_webhook_key.py)

The shared namespace keeps the layout from before streams had owners, so
streams written then are its streams (docs/durable.md, "Owners"). Owned
keys are their own family (``ds:u:`` where a shared key has ``ds:{``), so
no owned stream's key is ever a shared stream's; within it the tag
escapes ``%``, ``{`` and ``}`` (and ``/`` in the owner), so the owner ends
at the first ``/`` and the tag is exactly the stream's identity, with no
brace to cut a Cluster hash tag short: the encoding is injective, and each
stream hashes on all of ``(owner, name)``. A fork's ``src`` names its
source in the fork's own namespace (forks never cross namespaces).

A data entry's id is the append's first position and the seq of the
boundary after it: both grow with every append, so ids are increasing, and
``XREVRANGE data <pos>-<max> - COUNT 1`` finds the append holding ``pos``.
The entry's one field ``d`` is the data: the bytes, or in JSON mode the
compactly encoded messages joined by newlines (they never hold a raw one).

The meta hash's ``v`` counts its changes. Every write is one call of
:data:`COMMIT`, which checks the versions its decision was made on and,
only if none moved, applies the write: optimistic concurrency, so appends
from any number of instances are serialized per stream. A version is
checked together with the stream's incarnation (``inc``), since ``v``
starts again at 1 when a stream is deleted and created anew.

Every script call touches the keys of one stream only (its hash tag), and
the global keys (``ds:notify``, ``ds:incarnation``) are written apart on a
Redis Cluster, so the layout works unchanged on a single Redis and on a
Cluster: a fork reaches its source by name (``src``), one key at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Final

from .._access import StreamId
from .._headers import ExpiresAt, is_json
from .._offsets import START, Offset
from .._producers import ProducerClaim, ProducerState

#: The largest seq part of a stream id (an unsigned 64-bit integer).
MAX_ID_SEQ: Final = 2**64 - 1
#: How many notifications the notify stream keeps (about): readers need only the newest.
NOTIFY_MAXLEN: Final = 10_000

#: Check the streams, then apply commands -- atomically. KEYS: the meta keys
#: to check (all in one slot). ARGV[1]: JSON ``{"c": [check, ...], "o":
#: [[command, arg, ...], ...]}``, a check being ``false`` (the stream must
#: not exist), ``{"v": version, "i": incarnation}`` (it is at that version
#: of that incarnation) or ``{"i": incarnation}`` (that incarnation exists,
#: not soft-deleted); an integer argument n stands for ARGV[n] (data
#: payloads, which JSON cannot carry). Returns 1 if applied, 0 if a check failed.
#:
#: With ``"a": {"i": incarnation, "k": data key, "n": [units, ...], "t":
#: total}`` (plain appends, see :func:`~._plan.plain_appends`; no checks
#: then), the appends are placed at the tail KEYS[1] has *now*, whatever its
#: version: if it is that incarnation, neither closed nor soft-deleted and
#: without a deadline, each payload ARGV[j + 1] is XADDed at the running tail
#: and the hash gets the next version and the new tail; the reply is then the
#: version and tail they were placed after (0 if the stream is not so, or its
#: offsets would pass what a double holds exactly). Then ``o`` is applied.
COMMIT: Final = """
local spec = cjson.decode(ARGV[1])
for i, want in ipairs(spec.c) do
  local have = redis.call('HMGET', KEYS[i], 'v', 'inc', 'del')
  if want == false then
    if have[1] then return 0 end
  elseif want.v then
    if have[1] ~= want.v or have[2] ~= want.i then return 0 end
  elseif have[2] ~= want.i or have[3] == '1' then
    return 0
  end
end
local reply = 1
local a = spec.a
if a then
  local have = redis.call('HMGET', KEYS[1], 'v', 'inc', 'del', 'closed', 'dl', 'tail')
  if have[2] ~= a.i or have[3] == '1' or have[4] == '1' or have[5] or not have[6] then return 0 end
  local seq = tonumber(string.sub(have[6], 1, 16))
  local pos = tonumber(string.sub(have[6], 18))
  if seq + #a.n > 9007199254740991 or pos + a.t > 9007199254740991 then return 0 end
  for j, units in ipairs(a.n) do
    seq = seq + 1
    redis.call('XADD', a.k, string.format('%d-%d', pos, seq), 'd', ARGV[j + 1])
    pos = pos + units
  end
  local version = string.format('%d', tonumber(have[1]) + 1)
  redis.call('HSET', KEYS[1], 'v', version, 'tail', string.format('%016d_%016d', seq, pos))
  reply = {have[1], have[6]}
end
for _, op in ipairs(spec.o) do
  local args = {}
  for j, a in ipairs(op) do
    if type(a) == 'number' then args[j] = ARGV[a] else args[j] = a end
  end
  redis.call(unpack(args))
end
return reply
"""


#: KEYS[1] keeps ARGV[1] unless it holds a value; returns the value it holds
#: (one script: a SET NX then a GET could see the key deleted in between).
SET_ONCE: Final = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"


def etag_id(key: bytes, incarnation: int) -> str:
    """The ETag id of a stream's ``incarnation``: HMAC-SHA256 under ``key`` (the
    prefix's ``ds:etag-key``), 128 bits, url-safe base64 (22 characters).

    The incarnation is a counter of every stream created on the prefix, by
    every user: shown as is, a user's ETags would tell how many streams
    others created in between. Keyed, ids of different incarnations are
    unrelated to anyone without the key (no order, no count), while every
    instance on the prefix, sharing the key, gives a stream one ETag, and a
    re-created stream (a new incarnation) never has its predecessor's. No
    field of the meta hash is needed, so streams written before the key
    existed (or by an older release beside this one) get keyed ids too.
    """
    digest = hmac.new(key, str(incarnation).encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


_OWNER_ESCAPES: Final = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", "/": "%2F"})
_NAME_ESCAPES: Final = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def owned_tag(owner: str, name: str) -> str:
    """The hash tag of ``name`` in ``owner``'s namespace: ``<owner>/<name>``,
    percent-escaped so that it has no brace and the owner no ``/``.

    Injective: the first ``/`` ends the owner, and percent-escaping (``%``
    included) is undone uniquely on each side.
    """
    return f"{owner.translate(_OWNER_ESCAPES)}/{name.translate(_NAME_ESCAPES)}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def meta(self, ident: StreamId) -> str:
        return f"{self._stream(ident)}:meta"

    def data(self, ident: StreamId) -> str:
        return f"{self._stream(ident)}:data"

    def _stream(self, ident: StreamId) -> str:
        if ident.owner is None:
            # The shared namespace: the layout from before owners, unescaped.
            return f"{self.prefix}ds:{{{ident.name}}}"
        return f"{self.prefix}ds:u:{{{owned_tag(ident.owner, ident.name)}}}"

    @property
    def notify(self) -> str:
        return f"{self.prefix}ds:notify"

    @property
    def incarnation(self) -> str:
        return f"{self.prefix}ds:incarnation"

    @property
    def etag_key(self) -> str:
        return f"{self.prefix}ds:etag-key"


@dataclass(slots=True)
class Meta:
    """A snapshot of one stream's meta hash (what :func:`~.._append.plan_append` reads)."""

    name: str
    version: str
    incarnation: int
    content_type: str
    config: str
    tail: Offset
    closed: bool = False
    closed_by: ProducerClaim | None = None
    producers: dict[str, ProducerState] = field(default_factory=dict)
    last_stream_seq: str | None = None
    ttl: int | None = None
    expires_at: ExpiresAt | None = None
    #: POSIX time at which it expires (``None``: never).
    deadline: float | None = None
    source: str | None = None
    base: Offset = START
    forks: int = 0
    soft_deleted: bool = False
    #: Whose namespace the stream is in (``None``: the shared one); from its key, not its hash.
    owner: str | None = None
    #: Not from the hash either: True for a view of this instance's plain appends
    #: placed after changes from elsewhere (:func:`~._plan.rebased`). Its
    #: version, tail, incarnation, closed and soft-deleted state and what its
    #: creation fixed are current; its writer state (producers, ``Stream-Seq``,
    #: closer) and fork count may be behind, so only plain appends are planned on
    #: it (any other write loads the stream first).
    partial: bool = False

    @property
    def stream_id(self) -> StreamId:
        return StreamId(self.owner, self.name)

    @property
    def json(self) -> bool:
        return is_json(self.content_type)


def config_text(config: tuple[Any, ...]) -> str:
    """A stream's configuration (``CreateRequest.config``) as comparable text."""
    content_type, ttl, expires, fork = config
    fork_part = None if fork is None else [fork.source, _offset_text(fork.offset), fork.sub_offset]
    return json.dumps([content_type, ttl, expires, fork_part])


def _offset_text(offset: Offset | None) -> str | None:
    return None if offset is None else str(offset)


def meta_fields(meta: Meta) -> dict[str, str]:
    """Every field of ``meta`` but the version, as the hash stores them."""
    fields = {
        "inc": str(meta.incarnation),
        "ct": meta.content_type,
        "cfg": meta.config,
        "tail": str(meta.tail),
        "closed": "1" if meta.closed else "0",
        "prod": producers_text(meta.producers),
        "base": str(meta.base),
        "forks": str(meta.forks),
        "del": "1" if meta.soft_deleted else "0",
    }
    if meta.closed_by is not None:
        fields["cby"] = closer_text(meta.closed_by)
    if meta.last_stream_seq is not None:
        fields["sseq"] = meta.last_stream_seq
    if meta.ttl is not None:
        fields["ttl"] = str(meta.ttl)
    if meta.expires_at is not None:
        fields["exp"] = json.dumps([meta.expires_at.text, meta.expires_at.timestamp])
    if meta.deadline is not None:
        fields["dl"] = repr(meta.deadline)
    if meta.source is not None:
        fields["src"] = meta.source
    return fields


def producers_text(producers: dict[str, ProducerState]) -> str:
    """The ``prod`` field: each producer's epoch and last seq."""
    return json.dumps({key: [state.epoch, state.last_seq] for key, state in producers.items()})


def closer_text(claim: ProducerClaim) -> str:
    """The ``cby`` field: the producer claim that closed the stream."""
    return json.dumps([claim.id, claim.epoch, claim.seq])


def meta_from_hash(ident: StreamId, raw: dict[bytes, bytes]) -> Meta | None:
    """The snapshot of ``ident``'s meta hash (``None``: no such stream)."""
    if not raw:
        return None
    h = {key.decode(): value.decode() for key, value in raw.items()}
    if "v" not in h or "inc" not in h:
        return None  # only a stray field left (never written by us): no stream
    cby = h.get("cby")
    exp = h.get("exp")
    expires = None
    if exp is not None:
        text, timestamp = json.loads(exp)
        expires = ExpiresAt(text, timestamp)
    closed_by = None
    if cby is not None:
        producer, epoch, seq = json.loads(cby)
        closed_by = ProducerClaim(producer, epoch, seq)
    return Meta(
        name=ident.name,
        owner=ident.owner,
        version=h["v"],
        incarnation=int(h["inc"]),
        content_type=h["ct"],
        config=h["cfg"],
        tail=Offset.parse(h["tail"]),
        closed=h.get("closed") == "1",
        closed_by=closed_by,
        producers={key: ProducerState(epoch, seq) for key, (epoch, seq) in json.loads(h["prod"]).items()},
        last_stream_seq=h.get("sseq"),
        ttl=int(h["ttl"]) if "ttl" in h else None,
        expires_at=expires,
        deadline=float(h["dl"]) if "dl" in h else None,
        source=h.get("src"),
        base=Offset.parse(h["base"]),
        forks=int(h["forks"]),
        soft_deleted=h.get("del") == "1",
    )


def encode_data(data: bytes | tuple[bytes, ...]) -> bytes:
    return data if isinstance(data, bytes) else b"\n".join(data)


def decode_data(blob: bytes | str, *, json_mode: bool) -> bytes | tuple[bytes, ...]:
    if isinstance(blob, str):  # never: the client does not decode
        blob = blob.encode()
    return tuple(blob.split(b"\n")) if json_mode else blob


def entry_id(start: int, seq: int) -> str:
    return f"{start}-{seq}"


def parse_entry_id(ident: bytes | str) -> tuple[int, int]:
    text = ident.decode() if isinstance(ident, bytes) else ident
    start, _, seq = text.partition("-")
    return int(start), int(seq)
