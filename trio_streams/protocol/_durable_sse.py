"""SSE framing for Durable Streams: ``data`` events, then a ``control`` event after each.

Frames are written by the package's one field-safe encoder
(:func:`trio_streams.protocol._sse.event_frame_bytes`): payload lines are split on
CR, LF and CRLF and each goes out as its own ``data:`` line, so no payload
can end an event or forge a field: an embedded blank line or
``event: control`` arrives as literal data. Binary streams go out
base64-encoded; JSON streams as one array per event.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from ._sse import event_frame_bytes

if TYPE_CHECKING:
    from ..durable._log import Data

#: Base64 text per ``data:`` line (a multiple of 4, so each line decodes alone too).
_BASE64_LINE = 4096


def data_event(pieces: list[Data], *, json_mode: bool, binary: bool) -> bytes:
    """One ``event: data`` carrying ``pieces`` (the whole batch)."""
    if json_mode:
        messages = [message for piece in pieces if isinstance(piece, tuple) for message in piece]
        return event_frame_bytes(b"[" + b",".join(messages) + b"]", event="data")
    payload = b"".join(piece for piece in pieces if isinstance(piece, bytes))
    if binary:
        text = base64.b64encode(payload)
        payload = b"\n".join(text[i : i + _BASE64_LINE] for i in range(0, len(text), _BASE64_LINE))
    return event_frame_bytes(payload, event="data")


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
    return event_frame_bytes(json.dumps(control, separators=(",", ":")).encode(), event="control")
