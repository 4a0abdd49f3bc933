"""Runs read as Durable Streams (``runs/<run_id>``): what was trimmed is a gap message, never skipped."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from trio_streams import MemoryStore, open_hub
from trio_streams.durable._offsets import Offset
from trio_streams.durable._runs import RunSource
from trio_streams.testing import Script


def _gap(missed: int, first_available: int) -> dict[str, Any]:
    return {
        "seq": None,
        "type": "gap",
        "data": {"missed": missed, "first_available": first_available},
        "timestamp": None,
    }


def _messages(pieces: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(message) for piece in pieces for message in piece]


async def test_a_live_log_behind_what_the_store_kept_reads_as_one_gap(autojump_clock) -> None:
    # 21 events (20 and the terminal one); the store keeps the last 5, the log 3.
    store = MemoryStore(max_events_per_run=5)
    async with open_hub(store, log_max_events=3, grace_period=60) as hub:
        run = await hub.start(Script().emit_many(20))
        await run.wait()
        source = RunSource(hub, await hub.get_info(run.id))
        before = trio.current_time()
        found = await source.read(0)
        assert trio.current_time() == before, "a catch-up read never waits"
        assert run.subscribers == 0, "the read's subscription has ended"
    messages = _messages(found.pieces)
    assert messages[0] == _gap(16, 17)
    assert [message["seq"] for message in messages[1:]] == [17, 18, 19, 20, 21]
    assert messages[-1]["type"] == "done"
    assert found.end == Offset(21, 21)
    assert (found.up_to_date, found.closed) == (True, True)


@pytest.mark.parametrize("evicted", [False, True], ids=["live-log", "stored-run"])
async def test_a_gap_of_exactly_one_event_in_the_middle(autojump_clock, evicted: bool) -> None:
    # 10 events, log and store bounded at 8: 1 and 2 exist nowhere any more.
    # A reader at 1 (it has event 1) missed exactly one: event 2.
    store = MemoryStore(max_events_per_run=8)
    async with open_hub(store, log_max_events=8, grace_period=0 if evicted else 60) as hub:
        run = await hub.start(Script().emit_many(9))
        await run.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert (hub.get(run.id) is None) is evicted
        source = RunSource(hub, await hub.get_info(run.id))
        found = await source.read(1)
        assert trio.current_time() == 0
    messages = _messages(found.pieces)
    assert messages[0] == _gap(1, 3)
    assert [message["seq"] for message in messages[1:]] == list(range(3, 11))
    assert found.end == Offset(10, 10)


async def test_nothing_trimmed_no_gap(autojump_clock) -> None:
    async with open_hub(log_max_events=3) as hub:
        run = await hub.start(Script().emit_many(20))
        await run.wait()
        found = await RunSource(hub, await hub.get_info(run.id)).read(0)
    assert [message["seq"] for message in _messages(found.pieces)] == list(range(1, 22))
