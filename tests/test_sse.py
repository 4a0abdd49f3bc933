"""SSE framing: the one field-safe encoder, and the runs' frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams import Event, Gap, Heartbeat
from trio_streams.bench._httpclient import SSEParser
from trio_streams.protocol._sse import (
    comment_frame,
    encode_batch,
    encode_event,
    encode_item,
    event_frame,
    event_frame_bytes,
    retry_frame,
)


def test_event_frame() -> None:
    event = Event.create(7, "token", {"text": "a\nb"}, 0.0)
    assert encode_event(event) == 'id: 7\nevent: token\ndata: {"text":"a\\nb"}\n\n'


def test_non_ascii_is_sent_as_utf8() -> None:
    event = Event.create(1, "token", "héllo ✓", 0.0)
    assert encode_batch([event]) == 'id: 1\nevent: token\ndata: "héllo ✓"\n\n'.encode()


def test_gap_has_no_id_so_last_event_id_stays_real() -> None:
    frame = encode_item(Gap(missed=5, first_available=9))
    assert frame == 'event: gap\ndata: {"missed":5,"first_available":9}\n\n'
    assert "id:" not in frame


def test_heartbeat_is_a_comment() -> None:
    assert encode_item(Heartbeat(1.0)) == ": heartbeat\n\n"


def test_batch_is_one_buffer_in_order() -> None:
    events = [Event.create(i, "token", i, 0.0) for i in range(1, 4)]
    assert encode_batch(events).count(b"\n\n") == 3
    assert encode_batch(events).index(b"id: 2") < encode_batch(events).index(b"id: 3")


def test_retry_frame() -> None:
    assert retry_frame(2500) == b"retry: 2500\n\n"


def test_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        encode_item("nope")  # type: ignore[arg-type]


# -- the one field-safe encoder (both protocols) ------------------------------

HOSTILE_FIELDS = ["tok\nid: 999", "tok\rid: 999", "tok\r\ndata: injected", "a\n\nevent: done", "nul\0", "\n"]


@pytest.mark.parametrize("value", HOSTILE_FIELDS)
def test_event_and_id_fields_refuse_cr_lf_and_nul(value: str) -> None:
    for frame in (event_frame, lambda data, **fields: event_frame_bytes(data.encode(), **fields)):
        with pytest.raises(ValueError, match="may not contain CR, LF or NUL"):
            frame("x", event=value)
        with pytest.raises(ValueError, match="may not contain CR, LF or NUL"):
            frame("x", id=value)


def test_a_runs_event_with_a_forged_type_is_refused_not_written() -> None:
    # Only a store written by something else could hold one (emit refuses it).
    event = Event(3, "tok\nid: 999\ndata: injected", None, 0.0, "null")
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        encode_batch([event])


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("a\nb", ["a", "b"]),
        ("a\rb", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("a\n\nevent: done\nid: 999", ["a", "", "event: done", "id: 999"]),
        ("end\n", ["end", ""]),
        ("\r\r\n\n", ["", "", "", ""]),
        (" lead", [" lead"]),
    ],
)
def test_data_is_split_on_every_line_ending(data: str, lines: list[str]) -> None:
    assert event_frame(data, event="m") == "event: m\n" + "".join(f"data: {line}\n" for line in lines) + "\n"
    compact = b"".join(
        (b"data: " if line.startswith(" ") else b"data:") + line.encode() + b"\n" for line in lines
    )
    assert event_frame_bytes(data.encode(), event="m") == b"event: m\n" + compact + b"\n"


def test_comments_cannot_end_early() -> None:
    assert comment_frame("heartbeat") == ": heartbeat\n\n"
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        comment_frame("x\ndata: y")


def test_valid_frames_are_byte_for_byte_what_both_protocols_always_sent() -> None:
    event = Event.create(12, "token", {"t": " x"}, 0.0)
    assert encode_event(event) == 'id: 12\nevent: token\ndata: {"t":" x"}\n\n'
    assert event_frame_bytes(b'[{"a":1}]', event="data") == b'event: data\ndata:[{"a":1}]\n\n'
    assert event_frame_bytes(b" leading", event="data") == b"event: data\ndata:  leading\n\n"
    assert event_frame_bytes(b"", event="data") == b"event: data\ndata:\n\n"


safe_field = st.text(min_size=1, max_size=40).filter(lambda t: not any(c in t for c in "\r\n\0"))


@given(st.text(max_size=200), safe_field, safe_field)
def test_any_payload_round_trips_through_a_spec_parser(data: str, event: str, ident: str) -> None:
    normalized = data.replace("\r\n", "\n").replace("\r", "\n")
    for frame in (
        event_frame(data, event=event, id=ident).encode(),
        event_frame_bytes(data.encode(), event=event, id=ident),
    ):
        [message] = SSEParser().feed(frame)
        assert (message.event, message.id, message.data) == (event, ident, normalized)


@given(
    st.builds(
        lambda a, bad, b: a + bad + b,
        st.text(max_size=20),
        st.sampled_from(["\r", "\n", "\0"]),
        st.text(max_size=20),
    )
)
def test_any_field_with_a_line_break_or_nul_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        event_frame("x", event=value)
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        event_frame_bytes(b"x", id=value)


@given(st.integers(1, 2**53), st.text(min_size=1, max_size=70), st.text(max_size=60))
def test_the_runs_fast_path_writes_exactly_what_the_encoder_writes(
    seq: int, type: str, data_json: str
) -> None:
    event = Event(seq, type, None, 0.0, data_json)
    try:
        expected = event_frame(data_json, event=type, id=str(seq))
    except ValueError:
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            encode_event(event)
    else:
        assert encode_event(event) == expected
