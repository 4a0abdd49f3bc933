"""SSE framing for Durable Streams: ``data`` events, then a ``control`` event after each.

Payload lines are split on CR, LF and CRLF and each goes out as its own
``data:`` line, so no payload can end an event or forge a field: an embedded
blank line or ``event: control`` arrives as literal data. Binary streams go
out base64-encoded; JSON streams as one array per event.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._log import Data

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
#: Base64 text per ``data:`` line (a multiple of 4, so each line decodes alone too).
_BASE64_LINE = 4096
_DATA = (b"data:", b"data: ")


def data_event(pieces: list[Data], *, json_mode: bool, binary: bool) -> bytes:
    """One ``event: data`` carrying ``pieces`` (the whole batch)."""
    if json_mode:
        messages = [message for piece in pieces if isinstance(piece, tuple) for message in piece]
        return b"event: data\ndata:[" + b",".join(messages) + b"]\n\n"
    payload = b"".join(piece for piece in pieces if isinstance(piece, bytes))
    if binary:
        text = base64.b64encode(payload)
        lines = [text[i : i + _BASE64_LINE] for i in range(0, len(text), _BASE64_LINE)] or [b""]
    else:
        lines = _LINE_BREAK.split(payload)
    # A reader drops one space after "data:"; a line that starts with one gets another.
    return b"event: data\n" + b"".join(_DATA[line[:1] == b" "] + line + b"\n" for line in lines) + b"\n"


def control_event(next_offset: str, *, cursor: str | None, up_to_date: bool, closed: bool) -> bytes:
    """One ``event: control``: where to resume, and whether the reader is caught up or at EOF."""
    control: dict[str, object] = {"streamNextOffset": next_offset}
    if closed:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        if cursor is not None:
            control["streamCursor"] = cursor
        if up_to_date:
            control["upToDate"] = True
    return b"event: control\ndata:" + json.dumps(control, separators=(",", ":")).encode() + b"\n\n"
