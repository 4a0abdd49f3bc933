"""A hub's drain and the followers of runs another instance owns (mirrors).

Two hubs on one Redis stand for two servers, each served as ``serve`` does
(``open_hub``, wait for the stop, ``drain``, leave the block). Real Redis:
no mock clock; trio deadlines only guard against hangs, and every step is
ordered by events (an event read, a drain returned), never by timing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams import RunStatus, open_hub
from trio_streams.bench._httpclient import SSEParser
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore
from trio_streams.protocol._runs_sse import SHUTDOWN_FRAME, event_stream

from .test_redis_instances import Ticker

if TYPE_CHECKING:
    from trio_streams import Hub


pytestmark = pytest.mark.redis  # real redis-server processes


class Served:
    """One hub served as the server serves it: open, wait for ``stop``, drain, close."""

    def __init__(self, url: str, prefix: str, grace: float, **options: Any) -> None:
        self.store = RedisStore(url, prefix=prefix)
        self.grace = grace
        self.options = options
        self.stop = trio.Event()
        self.closed = trio.Event()
        self.hub: Hub | None = None

    async def serve(self, *, task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_hub(self.store, grace_period=0, **self.options) as hub:
            self.hub = hub
            task_status.started(hub)
            await self.stop.wait()
            await hub.drain(self.grace)
        self.closed.set()


async def follow(hub: Hub, run_id: str, first: trio.Event, into: list[Event]) -> None:
    async with hub.subscribe(run_id) as subscription:
        async for item in subscription:
            if isinstance(item, Event):
                into.append(item)
                first.set()


async def test_a_follower_of_a_remote_run_gets_its_terminal_when_both_instances_drain(redis_url, prefix):
    with trio.fail_after(20):
        owner = Served(redis_url, prefix, grace=0.2)
        # A long finalize budget: the follower's hub would hold it all if it
        # fell back; it returns as soon as the owner's terminal is delivered.
        follower = Served(redis_url, prefix, grace=0.2, finalize_timeout=30)
        async with trio.open_nursery() as nursery:
            a = await nursery.start(owner.serve)
            b = await nursery.start(follower.serve)
            run = await a.start(Ticker(interval=0.01))
            events: list[Event] = []
            first = trio.Event()
            nursery.start_soon(follow, b, run.id, first, events)
            await first.wait()
            assert b._mirrors is not None
            assert len(b._mirrors) == 1, "followed through a mirror"
            follower.stop.set()  # the follower's instance, with no runs of its own, drains first
            owner.stop.set()
        assert follower.closed.is_set()
        assert owner.closed.is_set()
        assert events[-1].type == "cancelled", "the follower got the run's terminal event"
        assert events[-1].data["reason"] == "shutdown"
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), "every event, in order"


async def test_a_follower_is_cut_at_grace_plus_finalize_when_the_owner_does_not_end(redis_url, prefix):
    with trio.fail_after(20):
        owner = Served(redis_url, prefix, grace=0)
        follower = Served(redis_url, prefix, grace=0.3, finalize_timeout=0.4)
        async with trio.open_nursery() as nursery:
            a = await nursery.start(owner.serve)
            b = await nursery.start(follower.serve)
            run = await a.start(Ticker(interval=0.01))
            api: Any = Api()  # the part of RunsApi the writer reads
            response = event_stream(api, b, run.id, 0)
            frames = response.frames
            assert (await anext(frames)).startswith(b"retry:")
            assert b"event: token" in await anext(frames)
            stopped = trio.current_time()
            follower.stop.set()  # the owner goes on: its run never ends within the drain
            rest = [frame async for frame in frames]
            ended = trio.current_time()
            assert b.closing
            assert ended >= stopped + 0.3 + 0.4, "the mirror kept following for grace + finalize"
            assert rest[-1] == SHUTDOWN_FRAME, "the cut stream says so, not a silent end"
            assert b"event: cancelled" not in b"".join(rest)
            await follower.closed.wait()
            owned = a.get(run.id)
            assert owned is not None
            assert owned.status is RunStatus.RUNNING, "cut, not ended"
            owner.stop.set()
        parsed = [m for m in SSEParser().feed(rest[-1]) if m.comment is None]
        assert [(m.event, json.loads(m.data)["reason"]) for m in parsed] == [("unavailable", "shutdown")]
        assert parsed[0].id is None, "no id: the client's Last-Event-ID stays its last real event"


class Api:
    """What ``event_stream`` reads of the runs API."""

    def __init__(self) -> None:
        self.sse_streams_open = 0
        self.counters: Counter[str] = Counter()
        self.retry_ms = 1000
        self.heartbeat = 15.0
