"""JSON the strict way, in both directions (pure, no I/O).

What goes out is JSON every parser accepts (RFC 8259): no ``NaN`` or
``Infinity``, text that encodes as UTF-8. What comes in from clients is
held to the same rule, plus limits that keep a small body from costing a
deep stack: :func:`parse_json` refuses nesting deeper than
:data:`MAX_JSON_DEPTH` (Python's own parser would raise ``RecursionError``
-- a 500 -- at about a thousand levels, and a document just under that
limit would then fail again wherever it is re-encoded), ``NaN`` /
``Infinity`` / ``-Infinity``, numbers too large for a double (``1e999``,
which Python would read as ``inf``, and integers like ``10**400``, which
it would keep but a JavaScript client would read as ``Infinity``), lone UTF-16 surrogate escapes
(``"\\ud800"``, which cannot be encoded as UTF-8 afterwards) and bytes
that are not UTF-8. Every refusal is an :class:`InvalidJson`, a
``ValueError`` whose message says what was wrong, for a 400.
"""

from __future__ import annotations

import json
import math
import re
import sys
from json.encoder import encode_basestring
from typing import Any, Final

from .._errors import StreamError

#: How deeply arrays and objects may nest in a client's JSON.
MAX_JSON_DEPTH: Final = 128

# One encoder for all: ``json.dumps`` with non-default options builds a new
# encoder per call, which costs more than encoding a small payload.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_encode = _encoder.encode

# What ``_encode`` ends in for a container, built once: ``JSONEncoder.encode``
# makes a new C encoder per call, which costs more than a small payload's
# encoding. Without a markers dict (one would be shared by every caller and
# left dirty by an error), a value that contains itself is found by the
# recursion limit instead: still a ValueError, as "nested too deeply".
# (json.encoder.c_make_encoder is the C accelerator, absent from typeshed.)
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_container = (
    None
    if _make_encoder is None
    else _make_encoder(None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
)
_INFINITIES: Final = (math.inf, -math.inf)

# Only a \u escape of a surrogate can put one in a parsed string: the bytes
# were strict UTF-8, which cannot encode a surrogate at all.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# An integer past a double's range has at least 309 digits (JSON has no
# leading zeros); only a text with such a run of digits needs the walk.
_MAX_DOUBLE: Final = sys.float_info.max
_LONG_DIGITS = re.compile(r"[0-9]{309}")


class InvalidJson(StreamError, ValueError):
    """Input that is not strict JSON, or breaks a limit (the message says which)."""


def encode_json(data: Any) -> str:
    """Encode ``data`` as compact, strict JSON text.

    The text never contains a newline (SSE framing relies on it) and
    always encodes as UTF-8.

    Raises:
        TypeError: a value JSON has no form for (an object, bytes...).
        ValueError: ``NaN`` or an infinity, a string with a lone
            surrogate, a circular reference, or nesting too deep to encode.
    """
    # Scalars, what producers emit most, take one C call each, as the
    # encoder itself would encode them.
    kind = type(data)
    if kind is str:
        text = encode_basestring(data)
        if not text.isascii():
            _check_encodable(text)
        return text
    if kind is int:
        return int.__repr__(data)
    if data is None:
        return "null"
    if data is True:
        return "true"
    if data is False:
        return "false"
    if kind is float:
        if data != data or data in _INFINITIES:
            raise ValueError("NaN, Infinity and -Infinity are not JSON; send null or a string")
        return float.__repr__(data)
    try:
        if _encode_container is not None and (kind is dict or kind is list):
            text = "".join(_encode_container(data, 0))
        else:
            text = _encode(data)
    except ValueError as exc:
        if str(exc).startswith("Out of range float"):
            raise ValueError("NaN, Infinity and -Infinity are not JSON; send null or a string") from None
        raise
    except RecursionError:
        raise ValueError("the value is nested too deeply (or contains itself) to encode as JSON") from None
    if not text.isascii():
        _check_encodable(text)
    return text


def _check_encodable(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone UTF-16 surrogate, which is not valid Unicode") from None


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a client's JSON strictly (see the module docstring).

    A UTF-8 byte order mark at the start is skipped (RFC 8259 allows a
    parser to); UTF-16 and UTF-32 are refused.

    Raises:
        InvalidJson: the message says what is wrong.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidJson(f"the body is not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    try:
        value = _decoder.decode(text)
    except RecursionError:
        raise InvalidJson(f"JSON nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, or an integer over Python's digit limit
        if "integer string conversion" in str(exc):  # thousands of digits: far past a double
            raise InvalidJson("an integer with more than 4300 digits is out of range") from None
        raise InvalidJson(str(exc)) from None
    # Only walk the value when a limit could be broken: a text with fewer
    # brackets than the depth limit cannot nest past it.
    deep = text.count("[") + text.count("{") > max_depth
    huge = len(text) >= 309 and _LONG_DIGITS.search(text) is not None
    if deep or huge or _SURROGATE_ESCAPE.search(text):
        _check(value, max_depth)
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidJson(f"the number {text[:32]} is out of range")
    return number


_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _check(value: Any, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth``, strings with lone surrogates and
    integers past a double's range (no recursion)."""
    _check_integers([value])
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
            _check_strings(node.keys())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise InvalidJson(f"JSON nested more than {max_depth} levels deep")
        strings = [child for child in children if isinstance(child, str)]
        _check_strings(strings)
        _check_integers(children)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    if isinstance(value, str):
        _check_strings([value])


def _check_integers(values: Any) -> None:
    for value in values:
        if type(value) is int and abs(value) > _MAX_DOUBLE:
            raise InvalidJson(f"the number {str(value)[:32]}... is out of range")


def _check_strings(strings: Any) -> None:
    for string in strings:
        if not string.isascii():
            try:
                string.encode()
            except UnicodeEncodeError:
                raise InvalidJson("a string holds a lone UTF-16 surrogate escape (e.g. \\ud800)") from None
