"""The group-commit core (``log._group_commit.CommitQueue``) and both writers on it, without Redis.

A fake flush (or a fake pipeline send) takes a fixed trio time, so on the
autojump clock every flush has an exact start time: an idle append goes at
t=0, what arrives during a flush goes at its end, retries follow the backoff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trio_streams import Event
from trio_streams.durable import DurableStreamError, StreamId
from trio_streams.durable._offsets import Offset
from trio_streams.durable._stream import AppendOutcome, AppendRequest
from trio_streams.durable.redis._batch import GroupCommit, Pending
from trio_streams.log._group_commit import CommitQueue
from trio_streams.log.redis._health import RedisHealth
from trio_streams.log.redis._keys import RedisKeys
from trio_streams.log.redis._pending import MetaWrite
from trio_streams.log.redis._writer import RedisWriter, Ttls

if TYPE_CHECKING:
    from trio_streams.log.redis._client import Client
    from trio_streams.log.redis._flush_commands import Entry

ROUND_TRIP = 1.0


class Flushes:
    """A fake flush: records (start time, batch), then takes ``ROUND_TRIP``."""

    def __init__(self) -> None:
        self.log: list[tuple[float, list[int]]] = []

    async def __call__(self, batch: list[int]) -> None:
        self.log.append((trio.current_time(), list(batch)))
        await trio.sleep(ROUND_TRIP)


def queue(flushes: Flushes, **options: object) -> CommitQueue[int]:
    options.setdefault("max_bytes", 1000)
    return CommitQueue(flushes, size=lambda item: item, **options)  # type: ignore[arg-type]


async def test_an_idle_push_is_flushed_at_once_and_later_ones_share_the_next_flush(autojump_clock) -> None:
    flushes = Flushes()
    idle: list[float] = []
    commit = queue(flushes, on_idle=lambda: idle.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        await trio.testing.wait_all_tasks_blocked()
        assert flushes.log == [(0.0, [1])]
        assert commit.running is True
        for item in (2, 3, 4):
            commit.push(item)  # during the flush: wait for it, then go together
        await trio.sleep(0.5)
        commit.push(5)
    assert flushes.log == [(0.0, [1]), (1.0, [2, 3, 4, 5])]
    assert trio.current_time() == 2.0
    assert idle == [2.0], "the committer ends with the queue empty"
    assert (commit.running, commit.batches) == (False, 2)


async def test_a_push_after_a_quiet_spell_starts_a_new_committer_at_once(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        await trio.sleep(10)
        commit.push(2)
    assert flushes.log == [(0.0, [1]), (10.0, [2])]


async def test_a_batch_is_bounded_by_items_and_by_bytes(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes, max_items=2)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        for item in range(1, 6):
            commit.push(item)
    assert flushes.log == [(0.0, [1, 2]), (1.0, [3, 4]), (2.0, [5])]

    flushes = Flushes()
    commit = queue(flushes, max_bytes=10)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        for item in (4, 4, 4, 4, 30, 5, 5, 5, 1):
            commit.push(item)
    # A batch stops once it holds max_bytes (exactly 10 is full); an item bigger than that goes alone.
    assert flushes.log == [(3.0, [4, 4, 4]), (4.0, [4, 30]), (5.0, [5, 5]), (6.0, [5, 1])]


async def test_a_withdrawn_item_is_never_flushed(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        await trio.testing.wait_all_tasks_blocked()
        commit.push(2)
        commit.push(3)
        assert commit.withdraw(2)
        assert not commit.withdraw(1), "taken into the batch in flight"
        assert not commit.withdraw(2)
    assert flushes.log == [(0.0, [1]), (1.0, [3])]


async def test_without_a_nursery_items_wait_and_go_once_one_is_attached(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes)
    commit.push(1)
    commit.push(2)
    await trio.sleep(3)
    assert flushes.log == []
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
    assert flushes.log == [(3.0, [1, 2])]


async def test_a_cancelled_committer_hands_what_is_queued_to_abandon(autojump_clock) -> None:
    flushes = Flushes()
    abandoned: list[list[int]] = []
    idle: list[float] = []
    commit = queue(flushes, abandon=abandoned.append, on_idle=lambda: idle.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        await trio.testing.wait_all_tasks_blocked()
        commit.push(2)
        commit.push(3)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert flushes.log == [(0.0, [1])]
    assert abandoned == [[2, 3]]
    assert idle == [0.5]
    assert not commit.running
    assert len(commit) == 0


async def test_a_cancelled_committer_without_abandon_leaves_the_queue_for_the_next(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        commit.push(2)
        await trio.testing.wait_all_tasks_blocked()
        commit.attach(None)
        commit.push(3)
        nursery.cancel_scope.cancel()
    assert len(commit) == 1
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
    assert flushes.log == [(0.0, [1, 2]), (0.0, [3])]


async def test_lingering_waits_for_a_fuller_batch_unless_filled_or_urged(autojump_clock) -> None:
    flushes = Flushes()
    commit = queue(flushes, linger=5.0, linger_items=3)
    async with trio.open_nursery() as nursery:
        commit.attach(nursery)
        commit.push(1)
        await trio.sleep(10)  # waits out the linger
        commit.push(2)
        await trio.sleep(1)
        commit.push(3)
        commit.push(4)  # fills the batch: goes at once
        await trio.sleep(10)
        commit.push(5)
        await trio.sleep(2)
        commit.urge()
    assert flushes.log == [(5.0, [1]), (11.0, [2, 3, 4]), (23.0, [5])]


def test_the_bounds_must_be_positive() -> None:
    flushes = Flushes()
    for options in ({"max_bytes": 0}, {"max_items": 0}, {"linger_items": 0}, {"linger": -1.0}):
        with pytest.raises(ValueError, match="must be"):
            queue(flushes, **options)


# -- the runs writer on the core: a fake pipeline instead of Redis -------------------------


class FakeRedis:
    """Stands for the pipeline ``RedisWriter._send`` sends: records each send's
    start time and commands; fails ``failures`` times first; takes ``ROUND_TRIP``."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sends: list[tuple[float, list[Entry | MetaWrite]]] = []

    async def __call__(self, commands: list[Entry | MetaWrite]) -> None:
        self.sends.append((trio.current_time(), list(commands)))
        await trio.sleep(ROUND_TRIP)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis is down")


def writer(fake: FakeRedis, **options: float) -> RedisWriter:
    def client() -> Client:
        raise AssertionError("no Redis here")

    out = RedisWriter(
        client,
        RedisKeys("t:"),
        instance="i",
        ttls=Ttls(),
        flush_events=int(options.pop("flush_events", 2048)),
        flush_interval=options.pop("flush_interval", 0.0),
        max_pending_bytes=1 << 20,
        max_buffered_events=None,
        max_entry_events=512,
        backoff_min=0.5,
        backoff_max=2.0,
    )
    out._send = fake  # type: ignore[method-assign]
    return out


def seqs(commands: list[Entry | MetaWrite]) -> list[int | str]:
    return [f"meta:{c.run_id}" if isinstance(c, MetaWrite) else c.last for c in commands]


def meta(run_id: str, *, final: bool) -> MetaWrite:
    status = "done" if final else "running"
    return MetaWrite(run_id, {"status": status}, None, 0.0, live=not final, final=final)


async def test_the_runs_writer_flushes_an_idle_append_at_once_and_batches_the_rest(autojump_clock) -> None:
    fake = FakeRedis()
    w = writer(fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.run)
        w.enqueue_meta(meta("r", final=False), first=True)
        await trio.testing.wait_all_tasks_blocked()
        for seq in range(1, 6):
            w.append_nowait("r", Event.create(seq, "token", seq, 0.0))
        ticket = w.enqueue_meta(meta("r", final=True))
        assert ticket is not None
        await w.wait_durable(ticket)
        assert trio.current_time() == 2.0
        nursery.cancel_scope.cancel()
    assert [(at, seqs(commands)) for at, commands in fake.sends] == [
        (0.0, ["meta:r"]),
        (1.0, [5, "meta:r"]),  # one entry of events 1-5, then the final metadata after them
    ]
    assert w.flushes == 2
    assert w.pending.events == w.pending.meta == w.pending.nbytes == 0


async def test_the_runs_writer_retries_the_same_flush_with_backoff(autojump_clock) -> None:
    fake = FakeRedis(failures=2)
    w = writer(fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.run)
        w.append_nowait("r", Event.create(1, "token", 1, 0.0))
        await trio.testing.wait_all_tasks_blocked()
        w.append_nowait("r", Event.create(2, "token", 2, 0.0))  # waits behind the failing flush
        await w.wait_durable(w.ticket())
        nursery.cancel_scope.cancel()
    # Fails at 1 (a round trip), retried 0.5 s later, fails, retried 1 s later,
    # lands at 4.5; event 2 waited behind it.
    assert [(at, seqs(commands)) for at, commands in fake.sends] == [
        (0.0, [1]),
        (1.5, [1]),
        (3.5, [1]),
        (4.5, [2]),
    ]
    assert w.flush_errors == 2
    assert w.healthy


async def test_the_runs_writer_lingers_only_when_asked_and_not_for_a_waiter(autojump_clock) -> None:
    fake = FakeRedis()
    w = writer(fake, flush_interval=30.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.run)
        w.append_nowait("r", Event.create(1, "token", 1, 0.0))
        await trio.sleep(40)
        w.append_nowait("r", Event.create(2, "token", 2, 0.0))
        await trio.sleep(5)
        await w.wait_durable(w.ticket())  # urges: no lingering for a waiter
        assert trio.current_time() == 46.0
        nursery.cancel_scope.cancel()
    assert [(at, seqs(commands)) for at, commands in fake.sends] == [(30.0, [1]), (45.0, [2])]


# -- Durable Streams' group commit on the core: a fake commit instead of Redis -------------


def request(body: bytes = b"x") -> AppendRequest:
    return AppendRequest(body, "text/plain")


class Commits:
    """A fake ``commit``: records (time, bodies), answers each append, takes ``ROUND_TRIP``."""

    def __init__(self) -> None:
        self.log: list[tuple[float, list[bytes]]] = []

    async def __call__(self, ident: StreamId, batch: list[Pending]) -> None:
        self.log.append((trio.current_time(), [item.request.body for item in batch]))
        await trio.sleep(ROUND_TRIP)
        for item in batch:
            item.answer(AppendOutcome(204, Offset(0, len(self.log)), closed=False))


async def test_durable_appends_to_one_stream_share_a_commit_and_streams_do_not_wait(autojump_clock) -> None:
    commits = Commits()
    group = GroupCommit(commits)
    a, b = StreamId(None, "a"), StreamId(None, "b")
    async with trio.open_nursery() as nursery:
        group.attach(nursery)
        nursery.start_soon(group.submit, a, request(b"1"))
        await trio.testing.wait_all_tasks_blocked()
        for ident, body in ((a, b"2"), (a, b"3"), (b, b"b")):
            nursery.start_soon(group.submit, ident, request(body))
            await trio.testing.wait_all_tasks_blocked()
    assert commits.log == [(0.0, [b"1"]), (0.0, [b"b"]), (1.0, [b"2", b"3"])]
    assert group._queues == {}
    assert group.statistics() == type(group.statistics())(0, 0, 3, 4, 0)


async def test_durable_bounds_refuse_at_once(autojump_clock) -> None:
    commits = Commits()
    group = GroupCommit(commits, max_pending=2)
    ident = StreamId(None, "a")
    async with trio.open_nursery() as nursery:
        group.attach(nursery)
        nursery.start_soon(group.submit, ident, request())
        nursery.start_soon(group.submit, ident, request())
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(DurableStreamError) as refused:
            await group.submit(ident, request())
        assert refused.value.status == 503
        assert trio.current_time() == 0.0
    assert group.statistics().refused == 1


async def test_a_durable_waiter_cancelled_before_its_commit_withdraws_its_append(autojump_clock) -> None:
    commits = Commits()
    group = GroupCommit(commits)
    ident = StreamId(None, "a")
    async with trio.open_nursery() as nursery:
        group.attach(nursery)
        nursery.start_soon(group.submit, ident, request(b"1"))
        await trio.testing.wait_all_tasks_blocked()
        scope = trio.CancelScope()

        async def cancelled() -> None:
            with scope:
                await group.submit(ident, request(b"2"))

        nursery.start_soon(cancelled)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(group.submit, ident, request(b"3"))
        await trio.testing.wait_all_tasks_blocked()
        assert group.statistics().pending == 3
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert scope.cancelled_caught
        assert group.statistics().pending == 2
    assert commits.log == [(0.0, [b"1"]), (1.0, [b"3"])]


async def test_durable_appends_queued_when_the_store_closes_are_answered_503(autojump_clock) -> None:
    commits = Commits()
    group = GroupCommit(commits)
    ident = StreamId(None, "a")
    answers: list[int] = []

    async def append(body: bytes) -> None:
        try:
            await group.submit(ident, request(body))
            answers.append(204)
        except DurableStreamError as exc:
            answers.append(exc.status)

    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        group.attach(nursery)
        outer.start_soon(append, b"1")
        await trio.testing.wait_all_tasks_blocked()
        outer.start_soon(append, b"2")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert sorted(answers) == [503, 503]
    assert group.statistics().pending == 0
    assert group._queues == {}


class TimingOutPipeline:
    """A pipeline that collects its errors, as the writer's does, whose every
    reply timed out (Redis frozen)."""

    def __init__(self) -> None:
        self.commands = 0
        self.results: list[BaseException] | None = None

    async def __aenter__(self) -> TimingOutPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await trio.sleep(ROUND_TRIP)
        self.results = [TimeoutError("EVALSHA timed out")] * self.commands

    def pexpire(self, *args: object) -> None:
        self.commands += 1

    def evalsha(self, *args: object, **kwargs: object) -> None:
        self.commands += 1


class TimingOutClient:
    def pipeline(self, **options: object) -> TimingOutPipeline:
        return TimingOutPipeline()

    async def script_load(self, source: str) -> str:
        await trio.lowlevel.checkpoint()  # (the writer loads its scripts once, before its first flush)
        return "sha"

    def register_script(self, source: str) -> object:
        def call(*, keys: object, args: object, client: TimingOutPipeline) -> None:
            client.commands += 1

        return call


async def test_a_flush_whose_replies_time_out_turns_the_connection_unhealthy(autojump_clock) -> None:
    health = RedisHealth("test", stream_timeout=ROUND_TRIP)
    w = RedisWriter(
        lambda: TimingOutClient(),  # type: ignore[arg-type,return-value]
        RedisKeys("t:"),
        instance="i",
        ttls=Ttls(),
        flush_events=1,
        flush_interval=0.0,
        max_pending_bytes=1 << 20,
        max_buffered_events=None,
        max_entry_events=512,
        backoff_min=0.5,
        backoff_max=2.0,
        health=health,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(w.run)
        with trio.fail_after(10), health.until_unhealthy() as waiting:
            w.append_nowait("r", Event.create(1, "token", 1, 0.0))
            await w.wait_durable(w.ticket())  # pointless without Redis: woken when it turns unhealthy
        assert waiting.cancelled_caught
        assert trio.current_time() == ROUND_TRIP
        assert (health.healthy, health.outages, w.healthy, w.flush_errors) == (False, 1, False, 1)
        assert w.pending.events == 1, "still pending: retried until Redis answers"
        nursery.cancel_scope.cancel()
