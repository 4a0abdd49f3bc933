"""The runs API's request parsing: start and cancel bodies, query arguments, resume points.

Pure: each function takes what the request carried and returns the checked
value, or raises the :class:`~._errors.ApiError` (400) the API answers.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, get_args

from ..log._json import InvalidJson, parse_json
from ..log._run_info import ROLLED_BACK
from ..runs._run import OnConflict, OnDisconnect
from ._errors import ApiError
from ._input_schema import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._messages import Request
    from ._runs_api import ProducerSpec

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_START_FIELDS = {"producer", "input", "key", "on_conflict", "on_disconnect", "metadata"}
MAX_KEY_LENGTH = 256
MAX_LIST_LIMIT = 1000
#: A start body larger than this has its input validated in a worker thread
#: (``handle_start_run``): validation costs about 35 µs per value, so a 1 MiB
#: input would hold the event loop for a second or more.
OFF_LOOP_BODY = 16 * 1024
#: A run's policies when neither the request nor its producer says.
DEFAULT_ON_CONFLICT: OnConflict = "reject"
DEFAULT_ON_DISCONNECT: OnDisconnect = "continue"


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object (400 ``invalid_json`` / ``invalid_body`` otherwise)."""
    try:
        doc = parse_json(body)
    except InvalidJson as exc:
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_body", f"{what} must be a JSON object")
    return doc


class StartSpec:
    """A checked ``POST /runs`` body: which producer, its parsed input, key and policies."""

    __slots__ = ("input", "key", "metadata", "on_conflict", "on_disconnect", "producer")

    def __init__(
        self, doc: dict[str, Any], producers: Mapping[str, ProducerSpec], *, input_checked: bool = False
    ) -> None:
        """``input_checked``: the caller ran :func:`check_input` already (off the loop, say)."""
        unknown = set(doc) - _START_FIELDS
        if unknown:
            raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
        name = doc.get("producer")
        if not isinstance(name, str):
            raise invalid("'producer' (a string) is required")
        registered = producers.get(name)
        if registered is None:
            known = ", ".join(sorted(producers)) or "none"
            raise ApiError(400, "unknown_producer", f"no producer named {name!r} (known: {known})")
        raw_input = doc.get("input")
        self.input = raw_input
        # The schema first (bounded: see _input_schema), then the producer's converter.
        if not input_checked:
            check_input(registered, raw_input)
        if registered.parse_input is not None:
            try:
                self.input = registered.parse_input(raw_input)
            except (ValueError, TypeError) as exc:
                raise ApiError(400, "invalid_input", f"input for {name!r}: {exc}") from None
        self.producer = registered
        key = doc.get("key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
            raise invalid(f"'key' must be a string of 1-{MAX_KEY_LENGTH} characters or null")
        self.key: str | None = key
        # The request wins; then the producer's own default; then the hub's.
        self.on_conflict: OnConflict = _choice(
            doc, "on_conflict", get_args(OnConflict), registered.on_conflict or DEFAULT_ON_CONFLICT
        )
        self.on_disconnect: OnDisconnect = _choice(
            doc, "on_disconnect", get_args(OnDisconnect), registered.on_disconnect or DEFAULT_ON_DISCONNECT
        )
        metadata = doc.get("metadata")
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict):  # false, 0, "" and [] too: not "no metadata"
            raise invalid("'metadata' must be an object or null")
        if "producer" in metadata:
            raise invalid("'metadata' may not use the reserved name 'producer'")
        self.metadata = {"producer": name, **metadata}


def parse_start(body: bytes, producers: Mapping[str, ProducerSpec]) -> StartSpec:
    """A ``POST /runs`` body, checked against the registered ``producers``."""
    return StartSpec(parse_json_object(body, "the body"), producers)


def check_input(registered: ProducerSpec, raw_input: Any) -> None:
    """``raw_input`` against ``registered``'s input schema (none: anything goes).

    Synchronous, and thread-safe (a compiled schema is read-only).

    Raises:
        ApiError: 400 ``invalid_input``, with ``field`` naming the value.
    """
    if registered.input_validator is not None:
        try:
            registered.input_validator.validate(raw_input)
        except InvalidInput as exc:
            raise ApiError(400, "invalid_input", str(exc), field=exc.field) from None


def _choice(doc: dict[str, Any], name: str, choices: tuple[Any, ...], default: str) -> Any:
    value = doc.get(name, default)
    if value not in choices:
        raise invalid(f"'{name}' must be one of: {', '.join(choices)}")
    return value


def invalid(message: str) -> ApiError:
    """A 400 ``invalid_body``."""
    return ApiError(400, "invalid_body", message)


def parse_cancel_reason(body: bytes) -> str:
    """A ``POST /runs/{id}/cancel`` body's reason (``"cancelled"`` for an empty body)."""
    if not body.strip():
        return "cancelled"
    doc = parse_json_object(body, "the body")
    unknown = set(doc) - {"reason"}
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    reason = doc.get("reason", "cancelled")
    if not isinstance(reason, str) or not 0 < len(reason) <= 200:
        raise invalid("'reason' must be a string of 1-200 characters")
    if reason == ROLLED_BACK:
        raise invalid(f"the reason {ROLLED_BACK!r} is reserved for on_conflict 'rollback'")
    return reason


def resume_point(request: Request) -> int:
    """The seq to resume after: ``Last-Event-ID`` (a reconnect) over ``?after``."""
    raw = request.arg("after")
    after = 0 if raw is None else _non_negative(raw, "after", "invalid_after")
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        return _non_negative(header.strip(), "Last-Event-ID", "invalid_last_event_id")
    return after


def _non_negative(raw: str, name: str, code: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, code, f"{name} must be a non-negative integer event id, not {raw[:40]!r}")
    return int(raw)


def int_arg(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    """Query argument ``name`` as an integer in ``[low, high]`` (400 ``invalid_<name>`` otherwise)."""
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -math.inf  # type: ignore[assignment]
    if not low <= value <= high:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer in [{low}, {high}]")
    return value


def bool_arg(request: Request, name: str) -> bool:
    """Query argument ``name`` as a boolean (``1``/``true``, ``0``/``false``; absent: False)."""
    raw = request.arg(name)
    if raw is None:
        return False
    if raw.lower() in {"1", "true"}:
        return True
    if raw.lower() in {"0", "false"}:
        return False
    raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
