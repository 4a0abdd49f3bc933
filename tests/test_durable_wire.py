"""Durable Streams wire pieces: SSE framing, cursors, header parsing, and the log's reads (properties)."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.bench._httpclient import SSEParser
from trio_streams.durable import DurableStreamError, Offset
from trio_streams.durable._cursor import EPOCH, INTERVAL, next_cursor
from trio_streams.durable._headers import expires_at, media_type, non_negative, read_from, ttl
from trio_streams.durable._log import StreamLog
from trio_streams.durable._producers import parse_claim
from trio_streams.protocol._durable_sse import control_event, data_event


def parse(frames: bytes) -> list[tuple[str, str]]:
    return [(message.event, message.data) for message in SSEParser().feed(frames)]


@given(st.binary(max_size=200))
def test_text_payloads_cannot_forge_events(payload: bytes):
    frames = data_event([payload], json_mode=False, binary=False) + control_event(
        "x", cursor="1", up_to_date=True, closed=False
    )
    events = parse(frames)
    assert [event for event, _ in events] == ["data", "control"]
    # Line breaks are normalized to LF; nothing else changes.
    expected = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("utf-8", "replace")
    assert events[0][1] == expected


@given(st.binary(max_size=20_000))
def test_binary_payloads_round_trip_as_base64(payload: bytes):
    events = parse(data_event([payload[:7], payload[7:]], json_mode=False, binary=True))
    assert base64.b64decode(events[0][1].replace("\n", "")) == payload


def test_json_events_are_one_array_and_control_events_follow_the_protocol():
    events = parse(data_event([(b'{"a":1}',), (b"2", b'"x"')], json_mode=True, binary=False))
    assert json.loads(events[0][1]) == [{"a": 1}, 2, "x"]
    open_control = json.loads(parse(control_event("o", cursor="7", up_to_date=False, closed=False))[0][1])
    assert open_control == {"streamNextOffset": "o", "streamCursor": "7"}
    closed = json.loads(parse(control_event("o", cursor="7", up_to_date=False, closed=True))[0][1])
    assert closed == {"streamNextOffset": "o", "streamClosed": True, "upToDate": True}


def test_cursors_are_intervals_and_always_move_past_an_echoed_one():
    now = EPOCH + 1000 * INTERVAL + 5
    assert next_cursor(None, now) == "1000"
    assert next_cursor("999", now) == "1000"
    jitter = random.Random(7)
    for echoed in ("1000", "5000"):
        assert int(next_cursor(echoed, now, jitter=jitter)) > int(echoed)
    assert next_cursor("not-a-number", now) == "1000"


def test_header_parsers():
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type("  ") is None
    assert ttl("3600") == 3600
    assert read_from([]) == "-1"
    assert read_from(["now"]) == "now"
    assert read_from(["0000000000000001_0000000000000002"]) == Offset(1, 2)
    assert expires_at("2030-01-01T00:00:00+02:00") is not None
    for call in (
        lambda: media_type("json"),
        lambda: ttl("+1"),
        lambda: ttl("1e3"),
        lambda: ttl("99999999999"),
        lambda: non_negative("05", "Stream-Fork-Sub-Offset"),
        lambda: read_from(["a", "b"]),
        lambda: read_from(["../x"]),
        lambda: expires_at("2030-01-01"),
        lambda: expires_at("2030-01-01T00:00:00"),
    ):
        with pytest.raises(DurableStreamError) as refused:
            call()
        assert refused.value.status == 400
    assert parse_claim(None, None, None) is None
    for headers in (("p", "0", None), ("", "0", "0"), ("p", "-1", "0"), ("p", "0", "9007199254740992")):
        with pytest.raises(ValueError, match="Producer"):
            parse_claim(*headers)


@given(st.lists(st.binary(min_size=1, max_size=30), min_size=1, max_size=12), st.data())
def test_log_reads_and_forks_agree_with_plain_concatenation(chunks: list[bytes], data: st.DataObject):
    log = StreamLog(json=False)
    boundaries = [log.tail]
    for chunk in chunks:
        boundaries.append(log.append(chunk))
    whole = b"".join(chunks)
    budget = data.draw(st.integers(min_value=1, max_value=400))
    for boundary in boundaries:
        # Reading page by page from any boundary returns exactly the rest.
        position, pages = boundary.position, []
        while position < log.tail.position:
            page = log.read(position, max_bytes=budget)
            assert page.end.position > position
            pages.append(b"".join(piece for piece in page.pieces if isinstance(piece, bytes)))
            position = page.end.position
        assert b"".join(pages) == whole[boundary.position :]
        assert log.offset_at(boundary.position) == boundary
    # A fork at any boundary reads the source's prefix, then its own appends.
    base = data.draw(st.sampled_from(boundaries))
    fork = StreamLog(json=False, parent=log, base=base)
    fork.append(b"!")
    log.append(b"source-only")
    found = fork.read(0, max_bytes=10**6)
    assert (
        b"".join(piece for piece in found.pieces if isinstance(piece, bytes)) == whole[: base.position] + b"!"
    )
    assert str(found.end) > str(base)
