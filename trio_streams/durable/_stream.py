"""One durable stream: its configuration, data, writer state and lifetime."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..log import Changed
from ..log._json import InvalidJson, encode_json, parse_json
from ._access import StreamId
from ._errors import bad_request
from ._headers import is_json

if TYPE_CHECKING:
    from ._headers import ExpiresAt
    from ._log import Data, StreamLog
    from ._offsets import Offset
    from ._producers import ProducerClaim, ProducerState


@dataclass(frozen=True, slots=True)
class ForkSpec:
    """``Stream-Forked-From`` and friends, as requested."""

    source: str
    offset: Offset | None
    sub_offset: int


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A ``PUT``: what the client asked for (compared on an idempotent re-create)."""

    content_type: str | None
    ttl: int | None = None
    expires_at: ExpiresAt | None = None
    closed: bool = False
    fork: ForkSpec | None = None
    body: bytes = b""

    def config(self, content_type: str) -> tuple[Any, ...]:
        """What must match for a re-create to be idempotent (the body does not count)."""
        expires = None if self.expires_at is None else self.expires_at.timestamp
        return (content_type, self.ttl, expires, self.fork)


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A ``POST``: data (maybe empty), optional close, optional writer headers."""

    body: bytes
    content_type: str | None = None
    close: bool = False
    producer: ProducerClaim | None = None
    stream_seq: str | None = None


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """How an append went: the status to answer and the headers to send."""

    status: int
    next_offset: Offset
    closed: bool
    producer: ProducerClaim | None = None
    #: The highest seq accepted for the producer (``Producer-Seq``).
    producer_seq: int | None = None
    producer_epoch: int | None = None


@dataclass(eq=False)
class DurableStream:
    """A stream held by :class:`~trio_streams.durable.DurableStreamStore`.

    Attributes:
        name: its path below the mount point.
        owner: whose namespace it is in (``None``: the shared one); see :mod:`._access`.
        incarnation: unique per store: a count of every stream created (never shown).
        etag_id: its ETags' id, random (16 bytes, url-safe base64): unrelated to
            other streams' (no order, no count) and never a re-created stream's.
        config: what an idempotent ``PUT`` must match.
        deadline: the trio time at which it expires (``None``: never).
        source: the stream this one forks (its log is ``log.parent``).
        forks: how many live forks read this stream's log.
        soft_deleted: deleted while forks still read it (410 to clients).
    """

    name: str
    incarnation: int
    content_type: str
    log: StreamLog
    config: tuple[Any, ...]
    owner: str | None = None
    ttl: int | None = None
    expires_at: ExpiresAt | None = None
    deadline: float | None = None
    closed: bool = False
    closed_by: ProducerClaim | None = None
    producers: dict[str, ProducerState] = field(default_factory=dict)
    last_stream_seq: str | None = None
    source: DurableStream | None = None
    forks: int = 0
    soft_deleted: bool = False
    #: Bytes of data this stream's own log holds.
    nbytes: int = 0
    etag_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    #: Readers that wait (long-poll, SSE) wait here; notified whenever data is
    #: appended, the stream closes, or it goes away (the log engine's one wake-up).
    changed: Changed = field(default_factory=Changed)

    @property
    def stream_id(self) -> StreamId:
        return StreamId(self.owner, self.name)

    @property
    def json(self) -> bool:
        return is_json(self.content_type)

    @property
    def tail(self) -> Offset:
        return self.log.tail

    def notify(self) -> None:
        """Wake every reader waiting on this stream (long-poll, SSE)."""
        self.changed.notify()


def to_data(body: bytes, *, json_mode: bool, creating: bool) -> Data:
    """A request body as log data: bytes as they are, JSON as flattened messages.

    In JSON mode a top-level array is flattened one level (each element a
    message); any other value is one message. The body is parsed strictly
    (:func:`trio_streams.log._json.parse_json`: no ``NaN``/``Infinity``, no
    number out of a double's range, no lone surrogate, nesting at most 128
    deep) and messages are re-encoded compactly (no raw newlines), which
    SSE framing relies on.

    Raises:
        DurableStreamError: 400 ``invalid_json`` for a body that is not
            strict JSON, or an empty array in an append (``creating``
            allows it: an empty initial stream).
    """
    if not json_mode:
        return body
    if not body and creating:  # a PUT without a body: an empty stream
        return ()
    try:
        value = parse_json(body)
    except InvalidJson as exc:
        raise bad_request("invalid_json", f"the body is not valid JSON: {exc}") from None
    messages = value if isinstance(value, list) else [value]
    if not messages and not creating:
        raise bad_request(
            "empty_json_array", "an empty JSON array appends nothing; send at least one message"
        )
    return tuple(_encode(message) for message in messages)


def _encode(message: Any) -> bytes:
    # Cannot fail: parse_json let through only what strict JSON can hold.
    return encode_json(message).encode()
