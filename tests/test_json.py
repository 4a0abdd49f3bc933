"""Strict JSON both ways: what clients may send, and what the package ever writes."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams import StreamError
from trio_streams.log._json import MAX_JSON_DEPTH, InvalidJson, encode_json, parse_json

NESTED_200KB = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    with pytest.raises(InvalidJson, match=f"{constant} is not JSON"):
        parse_json(f'{{"metadata": {{"x": [1, {constant}]}}}}'.encode())


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1.5e309"])
def test_numbers_out_of_a_doubles_range_are_refused(number: str) -> None:
    # Python would read them as inf, and then write "Infinity": not JSON.
    with pytest.raises(InvalidJson, match="out of range"):
        parse_json(f'{{"x": {number}}}')


@pytest.mark.parametrize("number", ["1" + "0" * 400, "-" + "9" * 309, "1" + "0" * 5000, "2" * 400])
def test_integers_out_of_a_doubles_range_are_refused(number: str) -> None:
    # Python keeps them exactly, but a JavaScript client reads them as Infinity;
    # one past Python's digit limit was a message advising sys.set_int_max_str_digits.
    with pytest.raises(InvalidJson, match="out of range"):
        parse_json(f'{{"x": [{number}]}}')
    with pytest.raises(InvalidJson, match="out of range"):
        parse_json(number)


def test_the_largest_integer_a_double_holds_is_kept() -> None:
    largest = int(sys.float_info.max)
    assert parse_json(f'{{"x": {largest}, "s": "{"9" * 400}"}}') == {"x": largest, "s": "9" * 400}


def test_numbers_in_range_are_kept_exactly() -> None:
    assert parse_json(b"[1e308, -2.5e-300, 0.1, 12345678901234567890, -0]") == [
        1e308,
        -2.5e-300,
        0.1,
        12345678901234567890,
        0,
    ]


def test_a_200kb_nested_body_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(InvalidJson, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        parse_json(NESTED_200KB)
    with pytest.raises(InvalidJson, match="nested more than"):
        parse_json(b'{"a":' * 40_000 + b"1" + b"}" * 40_000)


def test_the_depth_limit_is_exact() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(deepest) is not None
    with pytest.raises(InvalidJson, match="nested"):
        parse_json("[" + deepest + "]")
    # Objects count as levels too, wherever they sit.
    mixed = '{"a":[' * (MAX_JSON_DEPTH // 2) + "1" + "]}" * (MAX_JSON_DEPTH // 2)
    assert parse_json(mixed) is not None
    with pytest.raises(InvalidJson, match="nested"):
        parse_json("[" + mixed + "]")
    # Brackets inside strings are not nesting.
    assert parse_json(json.dumps(["[" * 1000, {"k": "{" * 1000}])) == ["[" * 1000, {"k": "{" * 1000}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'["ok", ["\\uDBFF"]]',
        b'"\\ud83d"',
        b'{"x": "\\ude00\\ud83d"}',  # reversed pair: two lone halves
    ],
)
def test_lone_surrogate_escapes_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidJson, match="surrogate"):
        parse_json(body)


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert parse_json(b'{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}
    assert parse_json(b'["\\\\ud800"]') == ["\\ud800"]  # a backslash, then text


@pytest.mark.parametrize(
    "body",
    [b'{"x": "\xff\xfe"}', '{"x": 1}'.encode("utf-16"), '{"x": 1}'.encode("utf-32")],
)
def test_bytes_that_are_not_utf8_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidJson, match="not UTF-8"):
        parse_json(body)


def test_a_utf8_byte_order_mark_is_skipped() -> None:
    assert parse_json(b'\xef\xbb\xbf{"x": 1}') == {"x": 1}


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1} x', b"[1,]", b"'single'", b"9" * 5000])
def test_malformed_json_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_json(body)


def test_invalid_json_is_a_value_error_under_the_one_error_root() -> None:
    assert issubclass(InvalidJson, ValueError)
    assert issubclass(InvalidJson, StreamError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"a": [1, math.nan]}])
def test_encode_refuses_nan_and_infinity_with_a_clear_message(value: object) -> None:
    with pytest.raises(ValueError, match="NaN, Infinity and -Infinity are not JSON"):
        encode_json(value)


def test_encode_refuses_lone_surrogates_and_too_deep_values() -> None:
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        encode_json({"x": "\ud800"})
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_json(deep)


def test_encode_output_is_compact_and_unescaped() -> None:
    text = encode_json({"a": [1, 2.5, None, True], "t": "héllo\n✓"})
    assert text == '{"a":[1,2.5,null,true],"t":"héllo\\n✓"}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_whatever_encode_writes_parse_reads_back(value: object) -> None:
    text = encode_json(value)
    assert "\n" not in text
    assert parse_json(text.encode()) == value
    # And any strict parser agrees with it.
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == value
