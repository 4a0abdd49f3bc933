"""A run's record: its status, its metadata snapshot, how it ended.

Plain data, shared by the run engine and the stores (which persist
:class:`RunInfo`), so a store's interface needs nothing of :mod:`..runs._run`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final, Literal

OnConflict = Literal["reject", "interrupt", "enqueue", "rollback"]
#: The cancel reason of a run that ``rollback`` replaced: such a run is
#: deleted (events and record) once its terminal event is durable. Reserved:
#: ``Hub.cancel`` refuses it from callers.
ROLLED_BACK: Final = "rolled_back"
OnDisconnect = Literal["continue", "cancel"]


class RunStatus(enum.StrEnum):
    """Where a run is in its life. The last four are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def finished(self) -> bool:
        """True once the run's terminal event is published."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A snapshot of a run's metadata: what stores persist and APIs return.

    Attributes:
        result: the producer's result; after a cancel, the partial result it
            had saved (and ``partial`` is true).
        error: ``{"code": ..., "message": ...}`` for a run that ended in
            ``error`` or ``dead``.
        reason: why a run was cancelled (``"cancelled"``, ``"disconnected"``,
            ``"interrupted"``, ``"rolled_back"``, ``"max_age"``, ``"hub_closed"`` or the reason a
            caller gave), ``None`` otherwise.
        finalize_error: what went wrong while finalizing (a failing or hanging
            ``on_finish`` hook); the terminal event is published regardless.
    """

    run_id: str
    key: str | None
    owner: str | None
    status: RunStatus
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    last_seq: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    partial: bool = False
    error: dict[str, str] | None = None
    reason: str | None = None
    finalize_error: str | None = None
    awaiting_input: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict (the HTTP status document's fields)."""
        return {
            "run_id": self.run_id,
            "key": self.key,
            "owner": self.owner,
            "status": self.status.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "last_seq": self.last_seq,
            "metadata": self.metadata,
            "result": self.result,
            "partial": self.partial,
            "error": self.error,
            "reason": self.reason,
            "finalize_error": self.finalize_error,
            "awaiting_input": self.awaiting_input,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunInfo:
        """The inverse of :meth:`to_json`."""
        return cls(
            run_id=doc["run_id"],
            key=doc.get("key"),
            owner=doc.get("owner"),
            status=RunStatus(doc["status"]),
            created_at=doc["created_at"],
            started_at=doc.get("started_at"),
            ended_at=doc.get("ended_at"),
            last_seq=doc.get("last_seq", 0),
            metadata=doc.get("metadata") or {},
            result=doc.get("result"),
            partial=doc.get("partial", False),
            error=doc.get("error"),
            reason=doc.get("reason"),
            finalize_error=doc.get("finalize_error"),
            awaiting_input=doc.get("awaiting_input", False),
        )


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended, as the ``on_finish`` hook sees it (before the terminal event)."""

    status: RunStatus
    result: Any
    partial: bool
    reason: str | None
    error: dict[str, str] | None
