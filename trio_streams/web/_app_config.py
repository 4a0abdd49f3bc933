"""``TrioStreams`` options from the app's config, the Quart way (``app.config["TRIO_STREAMS_*"]``).

``init_app`` reads these keys for every option not given to ``TrioStreams(...)``
(an argument always wins). Values are Python values as Quart config holds
them: numbers of seconds for durations, integers for sizes and counts.

- the extension's own: ``TRIO_STREAMS_URL_PREFIX`` (str), ``TRIO_STREAMS_HEARTBEAT``,
  ``TRIO_STREAMS_SHUTDOWN_GRACE``, ``TRIO_STREAMS_CANCEL_WAIT_TIMEOUT``,
  ``TRIO_STREAMS_LONG_POLL_TIMEOUT``, ``TRIO_STREAMS_SSE_RECYCLE`` (seconds),
  ``TRIO_STREAMS_RETRY_MS``, ``TRIO_STREAMS_MAX_BODY``, ``TRIO_STREAMS_DURABLE_MAX_BODY`` (int);
- the hub's (:class:`~trio_streams.HubConfig` fields): ``TRIO_STREAMS_GRACE_PERIOD``,
  ``TRIO_STREAMS_FINALIZE_TIMEOUT``, ``TRIO_STREAMS_MAX_RUNS``, ``TRIO_STREAMS_MAX_MEMORY``, ...
  -- every field but ``on_finish``, upper-cased.

Not read from config: the store, auth tokens and the Durable Streams
settings chosen at construction (``store=``, ``auth=``, ``durable_streams=``,
``durable_access=``): they are objects or decide what is mounted, and a
secret belongs in an argument the app builds from its own secret source.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from ..runs._config import HubConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "TRIO_STREAMS_"

#: The extension's options read from config, with the kind of value each takes.
EXTENSION_OPTIONS: dict[str, str] = {
    "url_prefix": "str",
    "heartbeat": "positive",
    "shutdown_grace": "non-negative",
    "cancel_wait_timeout": "positive",
    "long_poll_timeout": "positive",
    "sse_recycle": "positive",
    "retry_ms": "int",
    "max_body": "int",
    "durable_max_body": "int",
}

#: The hub's options read from config (checked by :class:`HubConfig` itself, once a
#: number is a number: a string met a comparison, and said so in Python's words).
HUB_OPTIONS = tuple(f.name for f in fields(HubConfig) if f.name != "on_finish")
_DEFAULTS = HubConfig()


def config_options(config: Mapping[str, Any], given: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The extension's and the hub's options that ``config`` sets and the caller did not give.

    Raises:
        ValueError: a value that does not fit its option, naming the key.
    """
    extension: dict[str, Any] = {}
    for name, kind in EXTENSION_OPTIONS.items():
        key = PREFIX + name.upper()
        if key in config and name not in given:
            extension[name] = _checked(key, kind, config[key])
    hub = {
        name: config[PREFIX + name.upper()]
        for name in HUB_OPTIONS
        if PREFIX + name.upper() in config and name not in given
    }
    for name, value in hub.items():
        default = getattr(_DEFAULTS, name)
        numeric = default is None or (isinstance(default, int | float) and not isinstance(default, bool))
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float | None)):
            raise ValueError(f"app.config[{PREFIX + name.upper()!r}]: must be a number, not {value!r}")
        try:
            replace(HubConfig(), **{name: value})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"app.config[{PREFIX + name.upper()!r}]: {exc}") from None
    return extension, hub


def _checked(key: str, kind: str, value: object) -> object:
    where = f"app.config[{key!r}]"
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where}: must be a string, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: must be a number, not {value!r}")
    if kind == "int":
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: must be a positive integer, not {value!r}")
    elif kind == "positive" and not value > 0:
        raise ValueError(f"{where}: must be more than zero seconds, not {value!r}")
    elif kind == "non-negative" and not value >= 0:
        raise ValueError(f"{where}: must be zero or more seconds, not {value!r}")
    return value
