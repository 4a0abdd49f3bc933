"""SSE framing."""

from __future__ import annotations

import pytest

from trio_streams import Event, Gap, Heartbeat
from trio_streams._sse import encode_batch, encode_event, encode_item, retry_frame


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
