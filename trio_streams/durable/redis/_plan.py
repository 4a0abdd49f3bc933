"""Planning a Redis commit of a batch of appends to one stream (pure: no I/O).

:func:`plan_batch` decides every append of a batch in order with
:func:`~.._append.plan_append`, each one on the stream as the appends
before it leave it -- exactly what the memory store does one call at a
time -- and turns the accepted ones into the commands of one
:data:`~._layout.COMMIT` call: an ``XADD`` per append with data,
then one ``HSET`` of the meta hash at the next version. The answers are
only decided here; they hold once the commit applied (its check is the
version the batch was planned on), and are thrown away if it did not.

A batch that changes nothing (refusals, producer retries, closing a
closed stream) still commits its check, so that no answer comes from a
view of the stream that another instance has moved meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._append import plan_append
from .._errors import DurableStreamError
from .._offsets import Offset
from .._producers import ProducerState
from .._stream import AppendOutcome
from ._layout import NOTIFY_MAXLEN, encode_data, entry_id, meta_fields
from ._notify import notify_fields

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._access import StreamId
    from .._log import Data
    from .._stream import AppendRequest
    from ._layout import Keys, Meta

#: Redis removes a stream's keys this long after its deadline, if no request
#: expired it first (room for clocks that disagree; requests use the deadline).
EXPIRY_GRACE = 60.0


@dataclass(slots=True)
class BatchPlan:
    """One commit for a batch of appends, and each append's answer once it applied."""

    #: The stream as it is once the commit applied.
    after: Meta
    ops: list[list[Any]]
    payloads: list[bytes]
    #: One per append, in order: its outcome, or the protocol's refusal.
    answers: list[AppendOutcome | DurableStreamError]
    #: A new version (data, close or writer state): readers are notified.
    changed: bool
    #: The appends with data, as their entries will be: (start, seq, data).
    entries: list[tuple[int, int, Data]]


def plan_batch(keys: Keys, meta: Meta, requests: Sequence[AppendRequest], now: float) -> BatchPlan:
    """Decide ``requests`` in order on ``meta`` (see the module docstring).

    ``now`` is POSIX time (a TTL stream's deadline moves to ``now + ttl``).
    """
    current = meta
    answers: list[AppendOutcome | DurableStreamError] = []
    ops: list[list[Any]] = []
    payloads: list[bytes] = []
    entries: list[tuple[int, int, Data]] = []
    changed = touched = False
    for request in requests:
        try:
            decision = plan_append(current, request)
        except DurableStreamError as exc:
            answers.append(exc)
            continue
        if isinstance(decision, AppendOutcome):  # a retry, or closing a closed stream
            answers.append(decision)
            touched = True
            continue
        data = decision.data
        if data:
            payloads.append(encode_data(data))
            xadd_id = entry_id(current.tail.position, current.tail.seq + 1)
            ops.append(["XADD", keys.data(meta.stream_id), xadd_id, "d", len(payloads) + 1])
            entries.append((current.tail.position, current.tail.seq + 1, data))
        current = _applied(current, request, data)
        answers.append(_answer(current, request, data))
        changed = True
    if changed:
        current = replace(current, version=str(int(meta.version) + 1), deadline=_deadline(meta, now))
        ops.append(["HSET", keys.meta(meta.stream_id), "v", current.version, *_flat(meta_fields(current))])
        ops += lifetime(keys, current)
    elif touched and meta.ttl is not None:
        # Not a change readers or writers act on: the same version, a later deadline.
        current = replace(current, deadline=_deadline(meta, now))
        ops.append(["HSET", keys.meta(meta.stream_id), "dl", repr(current.deadline)])
        ops += lifetime(keys, current)
    return BatchPlan(current, ops, payloads, answers, changed, entries)


def _applied(meta: Meta, request: AppendRequest, data: Data | None) -> Meta:
    """``meta`` once the accepted ``request`` (adding ``data``) is applied."""
    tail = meta.tail if not data else Offset(meta.tail.seq + 1, meta.tail.position + len(data))
    claim = request.producer
    producers = meta.producers
    if claim is not None:
        producers = {**producers, claim.id: ProducerState(claim.epoch, claim.seq)}
    return replace(
        meta,
        tail=tail,
        producers=producers,
        last_stream_seq=meta.last_stream_seq if request.stream_seq is None else request.stream_seq,
        closed=meta.closed or request.close,
        closed_by=claim if request.close else meta.closed_by,
    )


def _answer(after: Meta, request: AppendRequest, data: Data | None) -> AppendOutcome:
    claim = request.producer
    if claim is None:
        return AppendOutcome(204, after.tail, after.closed)
    status = 200 if data else 204
    return AppendOutcome(status, after.tail, after.closed, producer_epoch=claim.epoch, producer_seq=claim.seq)


def _deadline(meta: Meta, now: float) -> float | None:
    return meta.deadline if meta.ttl is None else now + meta.ttl


def lifetime(keys: Keys, meta: Meta) -> list[list[Any]]:
    """Redis key TTLs as a backstop for the stored deadline of ``meta`` (as it
    will be after the commit): a stream nobody looks up again still goes,
    :data:`EXPIRY_GRACE` after its deadline. A stream that forks read
    (or a soft-deleted one) has none: it must outlive its deadline."""
    names = (keys.meta(meta.stream_id), keys.data(meta.stream_id))
    # A fork has none either: Redis dropping its keys would leave its
    # source counting it for ever; a lookup removes an expired fork properly.
    if meta.deadline is None or meta.forks > 0 or meta.soft_deleted or meta.source is not None:
        return [["PERSIST", key] for key in names]
    at = str(int((meta.deadline + EXPIRY_GRACE) * 1000))
    return [["PEXPIREAT", key, at] for key in names]


def notify_op(keys: Keys, ident: StreamId, origin: str) -> list[Any]:
    """The command announcing that ``ident`` changed, from the instance ``origin``
    (see :mod:`._notify`)."""
    return ["XADD", keys.notify, "MAXLEN", "~", str(NOTIFY_MAXLEN), "*", *notify_fields(ident, origin)]


def version_check(meta: Meta) -> dict[str, str]:
    """The :data:`~._layout.COMMIT` check: ``meta``'s stream is still at its version."""
    return {"v": meta.version, "i": str(meta.incarnation)}


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]
