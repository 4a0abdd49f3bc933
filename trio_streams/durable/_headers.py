"""Parsing the protocol's request headers and query parameters (pure functions).

Every parser raises :class:`DurableStreamError` (400) with a message naming
the header, so a bad request is always a clear JSON error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ._errors import bad_request
from ._offsets import BEGINNING, NOW, Offset

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
#: The most digits a header's integer may have (int() of a long string is slow, and
#: refused past 4300 digits).
_MAX_DIGITS = 16
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
#: Above 10 years a TTL is a typo rather than a plan.
MAX_TTL = 10 * 365 * 24 * 3600


def media_type(value: str | None) -> str | None:
    """The media type of a ``Content-Type`` value, lower-cased, parameters dropped.

    ``None`` or blank -> ``None``.

    Raises:
        DurableStreamError: not ``type/subtype``.
    """
    if value is None or not value.strip():
        return None
    essence = value.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.match(essence):
        raise bad_request("invalid_content_type", f"Content-Type must be type/subtype, not {value[:64]!r}")
    return essence


def is_json(content_type: str) -> bool:
    return content_type == "application/json"


def is_text(content_type: str) -> bool:
    """SSE carries text/* and JSON as text; everything else is base64-encoded."""
    return content_type.startswith("text/") or is_json(content_type)


def flag(value: str | None) -> bool:
    """``Stream-Closed``: only ``true`` (any case) counts; anything else is absent."""
    return value is not None and value.strip().lower() == "true"


def non_negative(value: str, name: str) -> int:
    """A plain decimal integer: no sign, no leading zeros, no point or exponent."""
    code = f"invalid_{name.lower().replace('-', '_')}"
    if not _DECIMAL.match(value):
        raise bad_request(
            code, f"{name} must be a non-negative integer without sign or leading zeros, not {value[:32]!r}"
        )
    if len(value) > _MAX_DIGITS:
        raise bad_request(code, f"{name} has {len(value)} digits; at most {_MAX_DIGITS} digits")
    return int(value)


def ttl(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) > _MAX_DIGITS and _DECIMAL.match(text):
        raise bad_request("invalid_stream_ttl", f"Stream-TTL may be at most {MAX_TTL} seconds")
    seconds = non_negative(text, "Stream-TTL")
    if seconds > MAX_TTL:
        raise bad_request("invalid_stream_ttl", f"Stream-TTL may be at most {MAX_TTL} seconds")
    return seconds


@dataclass(frozen=True, slots=True)
class ExpiresAt:
    """``Stream-Expires-At``: the text as sent (echoed on HEAD) and its POSIX time."""

    text: str
    timestamp: float


def expires_at(value: str | None) -> ExpiresAt | None:
    """An RFC 3339 timestamp with a time and a zone (``Z`` or ``+hh:mm``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if "T" not in text.upper():
            raise ValueError("no time")
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(
            "invalid_stream_expires_at", f"Stream-Expires-At must be an RFC 3339 timestamp, not {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        raise bad_request("invalid_stream_expires_at", "Stream-Expires-At needs a time zone (Z or +hh:mm)")
    return ExpiresAt(text, moment.timestamp())


#: A read position: an offset, the beginning (``-1``) or the tail (``now``).
ReadFrom = Offset | str


def read_from(values: list[str]) -> ReadFrom:
    """The ``offset`` query parameter (absent: the beginning).

    Raises:
        DurableStreamError: repeated, empty, or not an offset this server minted.
    """
    if not values:
        return BEGINNING
    if len(values) > 1:
        raise bad_request("invalid_offset", "give the offset parameter once")
    value = values[0]
    if value in (BEGINNING, NOW):
        return value
    try:
        return Offset.parse(value)
    except ValueError:
        raise bad_request(
            "invalid_offset",
            f"offset must be -1, now, or an offset from Stream-Next-Offset, not {value[:64]!r}",
        ) from None


def fork_offset(value: str | None) -> Offset | None:
    if value is None:
        return None
    try:
        return Offset.parse(value.strip())
    except ValueError:
        raise bad_request(
            "invalid_fork_offset", f"Stream-Fork-Offset is not an offset: {value[:64]!r}"
        ) from None
