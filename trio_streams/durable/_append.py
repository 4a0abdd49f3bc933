"""Deciding an append: the protocol's checks, in its order, before anything changes.

:func:`plan_append` is pure: given a stream and a request it either refuses
(raising :class:`DurableStreamError` with the protocol's status and
headers), answers without writing (a producer's retry, closing a closed
stream), or returns the data to commit. The store commits in the same
synchronous step, so nothing can change in between.

The order is the protocol's: an empty body needs ``Stream-Closed``; a
closed stream answers first (a retry of the closing append is a success,
a stale producer epoch is still 403, a close-only request is idempotent,
anything else is 409 with ``Stream-Closed``); then the content type; then
the body (JSON must parse); then the producer (stale 403, bad new epoch
400, gap 409, retry 204); then ``Stream-Seq`` (byte order, per stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import DurableStreamError, bad_request, conflict
from ._producers import Verdict, judge
from ._stream import AppendOutcome, to_data

if TYPE_CHECKING:
    from ._log import Data
    from ._stream import AppendRequest, DurableStream


@dataclass(frozen=True, slots=True)
class Commit:
    """An accepted append: the data to add (``None``: a close only)."""

    data: Data | None


def outcome(
    stream: DurableStream, status: int, epoch: int | None = None, seq: int | None = None
) -> AppendOutcome:
    return AppendOutcome(status, stream.tail, stream.closed, producer_epoch=epoch, producer_seq=seq)


def plan_append(stream: DurableStream, request: AppendRequest) -> AppendOutcome | Commit:
    """What to do with ``request`` on ``stream`` (see the module docstring).

    Raises:
        DurableStreamError: the protocol's refusal.
    """
    body, claim = request.body, request.producer
    if not body and not request.close:
        raise bad_request("empty_body", "an append needs a body (or Stream-Closed: true to close)")
    judgement = None if claim is None else judge(stream.producers.get(claim.id), claim)
    if stream.closed:
        if judgement is not None and judgement.verdict is Verdict.DUPLICATE:
            return outcome(stream, 204, judgement.epoch, judgement.last_seq)
        if judgement is not None and judgement.verdict is Verdict.STALE:
            raise _stale(judgement.epoch)
        if not body:
            return outcome(stream, 204)
        raise conflict(
            "stream_closed",
            f"{stream.name!r} is closed",
            {"Stream-Closed": "true", "Stream-Next-Offset": str(stream.tail)},
        )
    if body:
        if request.content_type is None:
            raise bad_request("missing_content_type", "an append with a body needs a Content-Type")
        if request.content_type != stream.content_type:
            raise conflict(
                "content_type_mismatch",
                f"{stream.name!r} holds {stream.content_type}, not {request.content_type}",
            )
    data = to_data(body, json_mode=stream.json, creating=False) if body else None
    if judgement is not None:
        assert claim is not None
        verdict = judgement.verdict
        if verdict is Verdict.STALE:
            raise _stale(judgement.epoch)
        if verdict is Verdict.BAD_EPOCH_SEQ:
            raise bad_request("producer_epoch_seq", "a new Producer-Epoch must start at Producer-Seq 0")
        if verdict is Verdict.GAP:
            raise conflict(
                "producer_seq_gap",
                f"Producer-Seq {claim.seq} skips ahead; expected {judgement.expected_seq}",
                {
                    "Producer-Expected-Seq": str(judgement.expected_seq),
                    "Producer-Received-Seq": str(claim.seq),
                },
            )
        if verdict is Verdict.DUPLICATE:
            return outcome(stream, 204, judgement.epoch, judgement.last_seq)
    last = stream.last_stream_seq
    if request.stream_seq is not None and last is not None and request.stream_seq <= last:
        raise conflict("stream_seq_regression", f"Stream-Seq {request.stream_seq!r} is not after {last!r}")
    return Commit(data)


def _stale(epoch: int) -> DurableStreamError:
    return DurableStreamError(
        403,
        "producer_epoch_stale",
        f"a newer Producer-Epoch ({epoch}) holds this producer id",
        headers={"Producer-Epoch": str(epoch)},
    )
