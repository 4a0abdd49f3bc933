"""How ``trio-streams serve`` logs: ``--log-format text`` (one line per record, as
before) or ``json`` (one JSON object per line, for log collectors).

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, and the fields :data:`CONTEXT_FIELDS` where the log call gave
them with ``extra=`` (``run_id``, ``stream``, ``owner``, ``event``); an
exception adds ``exception`` (its traceback). Nothing else of the record is
copied: a field reaches the output only if it is named here, so an
``extra=`` added elsewhere cannot leak a secret (no token, password or
Redis URL is ever one of these fields).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

#: The record attributes a JSON line carries when the log call set them
#: (``worker`` and ``pid``: the ``serve --workers`` supervisor's records, and
#: every record of a worker process).
CONTEXT_FIELDS = ("run_id", "stream", "owner", "event", "worker", "pid")

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Line breaks and other control characters in a text line's message, escaped: a
#: client's cancel reason or run key ("x\n2026-... ERROR ...") could forge log lines.
_ESCAPES = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code != 0x09},
    0x0A: "\\n",
    0x0D: "\\r",
}


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, one line per record: a message's control characters are escaped
    (a traceback, which follows the message, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPES)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line: see the module docstring for its fields."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat, *, worker: int | None = None) -> None:
    """Log records at ``level`` and above to stderr, as text lines or JSON lines.

    Hypercorn's and Quart's records go through the same root handler, so
    they take the same format. Like ``logging.basicConfig``, does nothing if
    the root logger already has a handler. ``worker``: this process is that
    worker of ``serve --workers``; every record says so (``[worker N]`` after
    the logger's name, or a ``worker`` field).
    """
    handler = logging.StreamHandler(sys.stderr)
    text = TEXT_FORMAT if worker is None else TEXT_FORMAT.replace("%(name)s", f"%(name)s[worker {worker}]")
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(text))
    if worker is not None:
        handler.addFilter(_WorkerField(worker))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class _WorkerField(logging.Filter):
    """Sets ``worker`` on every record (a worker process's own)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True
