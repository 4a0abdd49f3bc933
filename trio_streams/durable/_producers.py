"""Idempotent producers: ``Producer-Id/Epoch/Seq`` validation, as a pure state machine.

Theory of operation
-------------------
Each stream keeps, per producer id, the newest epoch it has seen and the
highest seq accepted in that epoch. A request ``(epoch, seq)`` is judged
against that state *before* anything is written, and the state moves only
when the append it guards is committed -- both happen in one synchronous
step of the store (no checkpoint in between), which is what serializes
validation and append per ``(stream, producer)`` as the protocol requires.

- ``epoch < state.epoch``: a zombie from an older session -> ``STALE`` (403).
- ``epoch > state.epoch``: a new session; it must start at ``seq == 0``
  (else ``BAD_EPOCH_SEQ``, 400), and is accepted.
- same epoch: ``seq <= last`` is a retry -> ``DUPLICATE`` (204, nothing
  written); ``seq == last + 1`` is accepted; anything higher is a ``GAP``
  (409, with the expected seq).
- an unknown producer must start at ``seq == 0`` (else a ``GAP``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

#: JavaScript's largest safe integer: the protocol's bound on epochs and seqs.
MAX_SAFE_INTEGER = 2**53 - 1
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    STALE = "stale"
    BAD_EPOCH_SEQ = "bad_epoch_seq"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class ProducerClaim:
    """The producer headers of one request."""

    id: str
    epoch: int
    seq: int


@dataclass(slots=True)
class ProducerState:
    """What a stream remembers about one producer."""

    epoch: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    #: The server's epoch (echoed on 403) and the seq the producer should send next (on a gap).
    epoch: int
    expected_seq: int
    #: The highest seq accepted in ``epoch`` (for ``Producer-Seq`` on duplicates).
    last_seq: int


def judge(state: ProducerState | None, claim: ProducerClaim) -> Judgement:
    """Decide what to do with ``claim`` given the producer's ``state`` (``None``: unknown)."""
    if state is None:
        if claim.seq != 0:
            return Judgement(Verdict.GAP, claim.epoch, 0, -1)
        return Judgement(Verdict.ACCEPT, claim.epoch, 1, 0)
    if claim.epoch < state.epoch:
        return Judgement(Verdict.STALE, state.epoch, state.last_seq + 1, state.last_seq)
    if claim.epoch > state.epoch:
        if claim.seq != 0:
            return Judgement(Verdict.BAD_EPOCH_SEQ, state.epoch, 0, state.last_seq)
        return Judgement(Verdict.ACCEPT, claim.epoch, 1, 0)
    if claim.seq <= state.last_seq:
        return Judgement(Verdict.DUPLICATE, state.epoch, state.last_seq + 1, state.last_seq)
    if claim.seq == state.last_seq + 1:
        return Judgement(Verdict.ACCEPT, state.epoch, claim.seq + 1, claim.seq)
    return Judgement(Verdict.GAP, state.epoch, state.last_seq + 1, state.last_seq)


def parse_claim(producer_id: str | None, epoch: str | None, seq: str | None) -> ProducerClaim | None:
    """The producer headers as a claim, ``None`` if none was sent.

    Raises:
        ValueError: some but not all were sent, an empty id, or a number
            that is not a plain non-negative decimal integer <= 2**53-1.
    """
    given = [value is not None for value in (producer_id, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("Producer-Id, Producer-Epoch and Producer-Seq must be sent together")
    if not producer_id or epoch is None or seq is None:
        raise ValueError("Producer-Id must not be empty")
    return ProducerClaim(
        producer_id, _safe_integer(epoch, "Producer-Epoch"), _safe_integer(seq, "Producer-Seq")
    )


def _safe_integer(text: str, name: str) -> int:
    if not _DECIMAL.match(text) or len(text) > 16 or int(text) > MAX_SAFE_INTEGER:
        raise ValueError(f"{name} must be a non-negative integer <= 2**53-1, not {text[:32]!r}")
    return int(text)
