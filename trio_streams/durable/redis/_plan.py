"""Planning a Redis commit of a batch of appends to one stream (pure: no I/O).

:func:`plan_batch` decides every append of a batch in order with
:func:`~.._append.plan_append`, each one on the stream as the appends
before it leave it -- exactly what the memory store does one call at a
time -- and turns the accepted ones into the commands of one
:data:`~._layout.COMMIT` call: an ``XADD`` per append with data,
then one ``HSET`` of the meta hash at the next version, of the fields the
batch changed only (:func:`changed_fields`), and the keys' Redis TTLs when
the stream has a deadline (:func:`lifetime`). The answers are
only decided here; they hold once the commit applied (its check is the
version the batch was planned on), and are thrown away if it did not.

A batch that changes nothing (refusals, producer retries, closing a
closed stream) still commits its check, so that no answer comes from a
view of the stream that another instance has moved meanwhile.

*Plain appends* (data only: no producer, ``Stream-Seq`` or close) to a
stream without a deadline depend on nothing of the stream but its
incarnation, content type, closed and soft-deleted state, and where its tail
is: :func:`plain_appends` sends them without a version check, and the
script places them at the tail the stream has when it runs (see
:data:`~._layout.COMMIT`), so that appends to one stream from several
instances (``serve --workers``) do not fail each other's checks and pay a
load and a second commit. Its reply says where they went; if another
instance wrote since the view they were planned on, :func:`rebased` plans
them again there -- the same answers the script's placement gives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._append import plan_append
from .._errors import DurableStreamError
from .._offsets import Offset
from .._producers import ProducerState
from .._stream import AppendOutcome
from ._layout import NOTIFY_MAXLEN, closer_text, encode_data, entry_id, producers_text
from ._notify import notify_fields

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._access import StreamId
    from .._log import Data
    from .._stream import AppendRequest
    from ._layout import Keys, Meta

#: The largest integer a double (Lua's number) holds exactly: the script
#: places plain appends only below it.
LUA_EXACT = 2**53 - 1

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
    # A working copy, moved on in place append by append (``meta`` stays as it is).
    current = replace(meta)
    data_key = keys.data(meta.stream_id)
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
            ops.append(["XADD", data_key, xadd_id, "d", len(payloads) + 1])
            entries.append((current.tail.position, current.tail.seq + 1, data))
        _apply(current, request, data)
        answers.append(_answer(current, request, data))
        changed = True
    if changed:
        current.version, current.deadline = str(int(meta.version) + 1), _deadline(meta, now)
        ops.append(["HSET", keys.meta(meta.stream_id), "v", current.version, *changed_fields(meta, current)])
        if meta.deadline is not None or current.deadline is not None:
            # Without a deadline before or after, the keys have no Redis TTL
            # (every lifetime written for this stream was PERSIST): nothing to renew.
            ops += lifetime(keys, current)
    elif touched and meta.ttl is not None:
        # Not a change readers or writers act on: the same version, a later deadline.
        current.deadline = _deadline(meta, now)
        ops.append(["HSET", keys.meta(meta.stream_id), "dl", repr(current.deadline)])
        ops += lifetime(keys, current)
    return BatchPlan(current, ops, payloads, answers, changed, entries)


def changed_fields(before: Meta, after: Meta) -> list[str]:
    """The meta hash fields (flat ``[field, value, ...]``, encoded as
    :func:`~._layout.meta_fields` does) that a batch planned on ``before``
    changed in ``after``: of the fields an append can change (tail,
    producers, ``Stream-Seq``, closed and by whom, deadline), those that moved.

    Sound because the hash at ``before``'s version holds ``before``'s
    fields: every write that changes one bumps the version, except the
    deadline (``dl``, renewed by reads without a new version), which is
    therefore written whenever ``after`` has one that may move (a TTL).
    """
    fields: list[str] = []
    if after.tail != before.tail:
        fields += ["tail", str(after.tail)]
    if after.producers != before.producers:
        fields += ["prod", producers_text(after.producers)]
    if after.last_stream_seq is not None and after.last_stream_seq != before.last_stream_seq:
        fields += ["sseq", after.last_stream_seq]
    if after.closed != before.closed:
        fields += ["closed", "1" if after.closed else "0"]
    if after.closed_by is not None and after.closed_by != before.closed_by:
        fields += ["cby", closer_text(after.closed_by)]
    if after.deadline is not None and (after.ttl is not None or after.deadline != before.deadline):
        fields += ["dl", repr(after.deadline)]
    return fields


def _apply(meta: Meta, request: AppendRequest, data: Data | None) -> None:
    """Move ``meta`` (a working copy) on by the accepted ``request`` (adding ``data``)."""
    if data:
        meta.tail = Offset(meta.tail.seq + 1, meta.tail.position + len(data))
    claim = request.producer
    if claim is not None:
        # A new dict: the one of the state planned on is not changed.
        meta.producers = {**meta.producers, claim.id: ProducerState(claim.epoch, claim.seq)}
    if request.stream_seq is not None:
        meta.last_stream_seq = request.stream_seq
    if request.close:
        meta.closed, meta.closed_by = True, claim


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


def is_plain(request: AppendRequest) -> bool:
    """True for an append of data only (no producer, ``Stream-Seq`` or close):
    its decision does not depend on the stream's writer state."""
    return (
        bool(request.body) and request.producer is None and request.stream_seq is None and not request.close
    )


def plain_appends(
    keys: Keys, meta: Meta, requests: Sequence[AppendRequest], plan: BatchPlan
) -> dict[str, Any] | None:
    """The ``a`` part of a :data:`~._layout.COMMIT` spec that places ``plan``'s
    appends wherever the stream's tail is when the script runs; ``None`` if
    the batch is not only plain appends with data to a stream (as ``meta``
    says) open, not soft-deleted and without a deadline."""
    if not plan.changed or meta.closed or meta.soft_deleted:
        return None
    if meta.deadline is not None or meta.ttl is not None or meta.expires_at is not None:
        return None
    if not all(map(is_plain, requests)):
        return None
    units = [len(data) for _start, _seq, data in plan.entries]
    total = sum(units)
    if meta.tail.seq + len(units) > LUA_EXACT or meta.tail.position + total > LUA_EXACT:
        return None
    return {"i": str(meta.incarnation), "k": keys.data(meta.stream_id), "n": units, "t": total}


def rebased(
    keys: Keys, meta: Meta, requests: Sequence[AppendRequest], version: str, tail: Offset, now: float
) -> BatchPlan:
    """The plan of the plain appends ``requests`` as the script placed them:
    after ``version`` and ``tail`` (its reply), where another instance's writes
    had moved the stream since ``meta``. The same decisions as on ``meta``
    (a plain append's depends on nothing those writes can change without
    failing the script's checks); the view it leaves is partial
    (:attr:`~._layout.Meta.partial`: their writer state is not known here)."""
    return plan_batch(keys, replace(meta, version=version, tail=tail, partial=True), requests, now)
