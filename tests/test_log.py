"""ReplayLog: bounds by count and bytes, trimming, reads by cursor."""

from __future__ import annotations

from typing import Any

import pytest

from trio_streams import Event, ReplayLog


def ev(seq: int, data: str = "x", type: str = "token") -> Event:
    return Event.create(seq, type, data, 0.0)


def fill(log: ReplayLog, count: int, start: int = 1) -> None:
    for seq in range(start, start + count):
        log.append(ev(seq))


def test_read_after_returns_events_after_cursor() -> None:
    log = ReplayLog(max_events=100)
    fill(log, 10)
    assert [e.seq for e in log.read_after(0)] == list(range(1, 11))
    assert [e.seq for e in log.read_after(7)] == [8, 9, 10]
    assert log.read_after(10) == []
    assert [e.seq for e in log.read_after(3, limit=2)] == [4, 5]


def test_append_refuses_out_of_order_seq() -> None:
    log = ReplayLog()
    log.append(ev(1))
    with pytest.raises(ValueError, match="expected seq 2"):
        log.append(ev(3))
    with pytest.raises(ValueError, match="expected seq 2"):
        log.append(ev(1))


def test_trims_by_count_keeping_newest() -> None:
    log = ReplayLog(max_events=3)
    fill(log, 10)
    assert len(log) == 3
    assert log.first_seq == 8
    assert log.trimmed == 7
    # A cursor behind the head gets what is retained; the caller sees the gap
    # from first_seq.
    assert [e.seq for e in log.read_after(2)] == [8, 9, 10]


def test_trims_by_bytes() -> None:
    one = ev(1, "y" * 100).size
    log = ReplayLog(max_events=1000, max_bytes=one * 4)
    for seq in range(1, 11):
        log.append(ev(seq, "y" * 100))
    assert len(log) == 4
    assert log.nbytes == one * 4
    assert log.first_seq == 7


def test_newest_event_is_kept_even_if_it_alone_exceeds_bytes() -> None:
    log = ReplayLog(max_events=10, max_bytes=10)
    fill(log, 3)
    log.append(Event.create(4, "done", {"result": "z" * 1000}, 0.0))
    assert len(log) == 1
    assert log.read_after(0)[0].type == "done"


def test_compaction_keeps_reads_correct() -> None:
    log = ReplayLog(max_events=5)
    fill(log, 5000)
    assert len(log._entries) < 600  # the dead prefix was compacted away
    assert [e.seq for e in log.read_after(4997)] == [4998, 4999, 5000]
    assert [e.seq for e in log.read_after(0)] == [4996, 4997, 4998, 4999, 5000]


def test_empty_log() -> None:
    log = ReplayLog()
    assert log.first_seq == 1
    assert log.last_seq == 0
    assert log.read_after(0) == []
    stats = log.statistics()
    assert (stats.events, stats.nbytes, stats.first_seq, stats.last_seq, stats.trimmed) == (0, 0, 1, 0, 0)


@pytest.mark.parametrize("kwargs", [{"max_events": 0}, {"max_bytes": 0}])
def test_rejects_invalid_bounds(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReplayLog(**kwargs)
