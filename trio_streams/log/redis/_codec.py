"""How events and run metadata look inside Redis (pure: no I/O).

Events: a stream entry holds a batch of consecutive events of one run (fewer,
larger entries are the big lever on throughput). Its id is
``<last seq>-<first seq>``: ids grow with seq, so

- resuming after seq N is ``XRANGE events (N+1)-0 +``: the first entry
  returned is the one holding N+1 (entries are contiguous), and
- a retried flush re-sends the same id, which Redis refuses as "equal or
  smaller than the target stream top item": the writer counts that as
  already written, so a retry never duplicates or reorders.

The entry's one field ``e`` is the batch, one event per line::

    <seq> TAB <timestamp> TAB <type as JSON string> TAB <data as compact JSON>

Compact JSON never contains a raw tab or newline, and ``data_json`` is the
text encoded once at publish time, so writing never re-encodes.

Metadata: one hash per run. ``status`` and ``last_seq`` are plain text (Lua
scripts compare them); every other :class:`RunInfo` field is JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from .._events import Event, encode_json
from .._run_info import RunInfo, RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

#: The stream entry field holding a batch.
FIELD: Final = "e"

_JSON_FIELDS: Final = (
    "run_id",
    "key",
    "owner",
    "created_at",
    "started_at",
    "ended_at",
    "metadata",
    "result",
    "partial",
    "error",
    "reason",
    "finalize_error",
    "awaiting_input",
)


def entry_id(first: int, last: int) -> str:
    """The stream id of an entry holding seqs ``first..last``."""
    return f"{last}-{first}"


def resume_start(after: int) -> str:
    """The XRANGE start that finds the entry holding seq ``after + 1``."""
    return f"{after + 1}-0"


# Event types repeat (a run has a handful): encode each once. Bounded.
_TYPE_JSON: dict[str, str] = {}
_TYPE_JSON_MAX: Final = 4096


def encode_type(type: str) -> str:
    """``type`` as a JSON string (cached)."""
    text = _TYPE_JSON.get(type)
    if text is None:
        text = encode_json(type)
        if len(_TYPE_JSON) < _TYPE_JSON_MAX:
            _TYPE_JSON[type] = text
    return text


def encode_batch(events: Sequence[Event]) -> str:
    """One entry's payload for consecutive events."""
    return "\n".join(
        f"{event.seq}\t{event.timestamp!r}\t{encode_type(event.type)}\t{event.data_json}" for event in events
    )


def _decode_type(text: str) -> str:
    if "\\" not in text:
        return text[1:-1]
    value = json.loads(text)
    if not isinstance(value, str):
        raise ValueError(f"event type is not a string: {text!r}")
    return value


def decode_batch(payload: str, after: int = 0) -> list[Event]:
    """The events of one entry with ``seq > after``."""
    events: list[Event] = []
    for line in payload.split("\n"):
        seq_text, ts_text, type_text, data_json = line.split("\t", 3)
        seq = int(seq_text)
        if seq <= after:
            continue
        events.append(Event(seq, _decode_type(type_text), json.loads(data_json), float(ts_text), data_json))
    return events


def info_to_hash(info: RunInfo) -> dict[str, str]:
    """The meta hash fields of a run's metadata."""
    doc = info.to_json()
    fields = {name: encode_json(doc[name]) for name in _JSON_FIELDS}
    fields["status"] = info.status.value
    fields["last_seq"] = str(info.last_seq)
    return fields


def info_from_hash(fields: Mapping[str, str]) -> RunInfo | None:
    """The metadata in a meta hash, or ``None`` for an empty (missing) hash."""
    if "status" not in fields or "run_id" not in fields:
        return None
    doc: dict[str, Any] = {name: json.loads(fields[name]) for name in _JSON_FIELDS if name in fields}
    doc["status"] = fields["status"]
    doc["last_seq"] = int(fields.get("last_seq", "0"))
    return RunInfo.from_json(doc)


def decode_entries(entries: Iterable[tuple[str, Mapping[str, str]]], after: int) -> list[Event]:
    """Events with ``seq > after`` from XRANGE entries, in order."""
    events: list[Event] = []
    for _id, fields in entries:
        payload = fields.get(FIELD)
        if payload:
            events.extend(decode_batch(payload, after))
    return events


def terminal_status(fields: Mapping[str, str]) -> RunStatus | None:
    """The run's status if the hash says it has finished, else ``None``."""
    status = fields.get("status")
    if status is None:
        return None
    value = RunStatus(status)
    return value if value.finished else None
