"""Parsing durations (``15s``, ``500ms``, ``2m``) and sizes (``1MiB``) for the CLI."""

from __future__ import annotations

import argparse
import math
import re

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1024**2, "gb": 10**9, "gib": 1024**3}


def parse_duration(text: str) -> float:
    """``"15s"``, ``"500ms"``, ``"2m"``, ``"1h"``, ``"7d"`` or plain seconds (``"2.5"``) as seconds.

    Raises:
        ValueError: anything else, or a value that is not finite.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 15s, 500ms, 2m, 1h, 7d)")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"not a finite duration: {text!r}")
    return value


def parse_size(text: str) -> int:
    """``"1048576"``, ``"1MiB"``, ``"64KB"`` as bytes.

    Raises:
        ValueError: anything else.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 1MiB, 64KB, 4096)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def duration_arg(text: str) -> float:
    """An argparse ``type=`` for a non-negative duration."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration_arg(text: str) -> float:
    """An argparse ``type=`` for a duration above zero."""
    value = duration_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero, not {text!r}")
    return value


#: The longest Redis key lifetime a flag takes: Redis wants the expiry in ms in 64 bits
#: (beyond, every write failed), and above 10 years a lifetime is a typo, not a plan.
MAX_REDIS_TTL = 3650 * 86400.0


def redis_ttl_arg(text: str) -> float:
    """An argparse ``type=`` for a Redis lifetime: above zero, at most :data:`MAX_REDIS_TTL`."""
    value = positive_duration_arg(text)
    if value > MAX_REDIS_TTL:
        raise argparse.ArgumentTypeError(f"must be at most 3650d (10 years), not {text!r}")
    return value


def size_arg(text: str) -> int:
    """An argparse ``type=`` for a positive size in bytes."""
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, not {text!r}")
    return value
