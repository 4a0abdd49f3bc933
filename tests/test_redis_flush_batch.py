"""A flush's entries in one script call (single Redis): a mirror's blocked read wakes once.

Redis serves a blocked ``XREAD`` after each top-level command, so a flush
sent as one ``EVALSHA`` per entry woke the shared read of another instance
(``_tails.py``) with the first run only, and the others waited for it to
re-arm. ``APPEND_BATCH`` takes them all in one call. The order per run is
the queue's (``plan``), and each entry is answered as ``APPEND_EVENTS``
answers it (appended, duplicate, fenced). Real redis-server for the rest:
no mock clock, a trio deadline on every test; the blocked read is waited
for in Redis's own client list, never with a sleep.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import coredis
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._codec import encode_batch
from trio_streams.log.redis._connection import RedisConnection, RedisUnavailable
from trio_streams.log.redis._flush_commands import (
    MAX_BATCH_ENTRIES,
    Entry,
    Item,
    freeze_batch,
    plan,
    queue_commands,
)
from trio_streams.log.redis._pending import MetaWrite
from trio_streams.log.redis._tails import Tail, TailMux

from .redis_support import unique_prefix

if TYPE_CHECKING:
    from collections.abc import Callable

DEADLINE = 20


def meta(run_id: str) -> MetaWrite:
    return MetaWrite(run_id, {"status": '"running"'}, None, 1.0, live=True, final=False)


def entry(run_id: str, seq: int) -> Entry:
    return Entry(run_id, [Event.create(seq, "token", seq, 1.0)])


def flat(steps: list[list[Entry] | MetaWrite]) -> list[Entry | MetaWrite]:
    out: list[Entry | MetaWrite] = []
    for step in steps:
        out += step if isinstance(step, list) else [step]
    return out


def test_a_flush_of_entries_only_is_one_batch() -> None:
    commands: list[Entry | MetaWrite] = [entry(run, 1) for run in "abcde"]
    assert plan(commands) == [commands]


def test_an_entry_never_overtakes_a_metadata_write_of_its_own_run() -> None:
    ex, mx, ea, my, ey = entry("x", 1), meta("x"), entry("a", 1), meta("y"), entry("y", 1)
    # ea overtakes x's write (another run's); ey may not overtake y's own: a second batch.
    assert plan([ex, mx, ea, my, ey]) == [[ex, ea], mx, my, [ey]]
    # A start written first, then its run's events: the batch comes after it.
    assert plan([mx, ex, ea]) == [mx, [ex, ea]]


def test_a_batch_holds_at_most_max_batch_entries() -> None:
    # Black-box pass: one call took every entry of a flush (100,000 runs: one 0.8 s
    # script, holding every client of Redis, unkillable once it wrote).
    commands: list[Entry | MetaWrite] = [entry(f"r{i}", 1) for i in range(2 * MAX_BATCH_ENTRIES + 1)]
    steps = plan(commands)
    sizes = [len(step) for step in steps if isinstance(step, list)]
    assert sizes == [MAX_BATCH_ENTRIES, MAX_BATCH_ENTRIES, 1]
    assert flat(steps) == commands


commands_strategy = st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=30).map(
    lambda spec: [meta(run) if is_meta else entry(run, i + 1) for i, (run, is_meta) in enumerate(spec)]
)


@given(commands_strategy)
def test_plan_keeps_every_command_once_and_each_runs_order(commands: list[Entry | MetaWrite]) -> None:
    out = flat(plan(commands))
    assert sorted(map(id, out)) == sorted(map(id, commands))
    for run in "abc":
        assert [c for c in out if c.run_id == run] == [c for c in commands if c.run_id == run]


async def blocked(store: RedisStore, name: str) -> None:
    """Return once the connection named ``name`` is blocked in Redis (a condition, polled)."""
    while True:
        clients: Any = await store.client.client_list()
        if any(c.get("name") == name and "b" in str(c.get("flags")) for c in clients):
            return
        await trio.sleep(0.005)


async def evalsha_calls(store: RedisStore) -> int:
    stats: Any = await store.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def started(url: str, prefix: str, nursery: trio.Nursery) -> RedisStore:
    store = RedisStore(url, prefix=prefix)
    await store.start(nursery)
    return store


async def test_the_shared_read_gets_every_run_of_a_flush_in_one_round_trip(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            coredis.Redis.from_url(redis_url, decode_responses=True, client_name="mux") as client,
            trio.open_nursery() as nursery,
        ):
            store = await started(redis_url, prefix, nursery)
            mux = TailMux(lambda: client, store.keys.tails("test"), block_seconds=10.0)
            await nursery.start(mux.run)
            runs = [f"r{i}" for i in range(8)]
            got: dict[str, list[int]] = {run: [] for run in runs}

            def deliver(run: str) -> Callable[[list[Event]], None]:
                return lambda events: got[run].extend(e.seq for e in events)

            tails = [Tail(store.keys.events(run), "0-0", 0, deliver(run)) for run in runs]
            with ExitStack() as stack:
                for tail in tails:
                    stack.enter_context(mux.register(tail))  # no checkpoint: one read of all eight
                await blocked(store, "mux")
                assert mux.reads == 1
                for run in runs:
                    for seq in (1, 2):
                        store.append_nowait(run, Event.create(seq, "token", seq, 1.0))
                frozen = store._writer._freeze()
                await store._writer._send(frozen.commands)
                store._writer._landed(frozen)
                for tail in tails:
                    await tail.activity.wait()
                # One round trip brought all eight runs (the next read has begun). A
                # blocked XREAD alone is answered with the one stream that woke it.
                assert mux.reads == 2
                assert got == {run: [1, 2] for run in runs}
            await store.aclose()
            nursery.cancel_scope.cancel()  # the shared read runs until cancelled


async def test_each_entry_of_a_batch_is_answered_on_its_own(redis_url: str, prefix: str) -> None:
    """In one flush: a run declared dead is refused, a re-sent entry skipped, a new one
    appended; a run's first entry gives its stream a TTL, a later one leaves it."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = await started(redis_url, prefix, nursery)
            writer, keys, client = store._writer, store.keys, store.client
            for run in ("old", "dup"):
                for seq in (1, 2):
                    store.append_nowait(run, Event.create(seq, "token", seq, 1.0))
            frozen = writer._freeze()
            await writer._send(frozen.commands)
            writer._landed(frozen)
            await client.persist(keys.events("old"))  # a later entry must not set a TTL again
            await client.hset(keys.meta("dead"), {"status": "dead"})
            store.append_nowait("dup", Event.create(2, "token", 2, 1.0))  # re-sent: a duplicate
            store.append_nowait("old", Event.create(3, "token", 3, 1.0))
            store.append_nowait("dead", Event.create(1, "token", 1, 1.0))
            store.append_nowait("new", Event.create(1, "token", 1, 1.0))
            calls = await evalsha_calls(store)
            frozen = writer._freeze()
            await writer._send(frozen.commands)
            writer._landed(frozen)
            assert await evalsha_calls(store) == calls + 1  # four runs' entries, one call
            assert writer.fenced == 1
            assert [e.seq for e in await store.read_events("old", 0, 10)] == [1, 2, 3]
            assert [e.seq for e in await store.read_events("dup", 0, 10)] == [1, 2]
            assert await client.xlen(keys.events("dup")) == 1
            assert await store.read_events("dead", 0, 10) == []
            assert not await client.exists([keys.events("dead")])
            assert [e.seq for e in await store.read_events("new", 0, 10)] == [1]
            assert await client.pttl(keys.events("new")) > 0
            assert await client.pttl(keys.events("old")) == -1
            await store.aclose()


async def test_a_flush_past_max_batch_entries_is_several_calls_each_answered(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = await started(redis_url, prefix, nursery)
            writer = store._writer
            runs = [f"r{i}" for i in range(MAX_BATCH_ENTRIES + 1)]
            await store.client.hset(store.keys.meta(runs[-1]), {"status": "dead"})  # in the second call
            calls = await evalsha_calls(store)
            for run in runs:  # no checkpoint from here to the freeze: the flusher takes none of it
                store.append_nowait(run, Event.create(1, "token", 1, 1.0))
            frozen = writer._freeze()
            await writer._send(frozen.commands)
            writer._landed(frozen)
            assert await evalsha_calls(store) == calls + 2
            assert writer.fenced == 1
            for run in runs[:-1]:
                assert [e.seq for e in await store.read_events(run, 0, 10)] == [1]
            assert await store.read_events(runs[-1], 0, 10) == []
            await store.aclose()


async def test_a_cluster_flush_of_many_runs_keeps_one_call_per_entry(redis_cluster: Any) -> None:
    # The runs live on different slots (nodes): one call for all would be refused (CROSSSLOT).
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = RedisStore(redis_cluster.url, prefix=unique_prefix(), cluster=True)
            await store.start(nursery)
            runs = [f"r{i}" for i in range(8)]
            for run in runs:
                store.append_nowait(run, Event.create(1, "token", 1, 1.0))
            frozen = store._writer._freeze()
            await store._writer._send(frozen.commands)
            store._writer._landed(frozen)
            for run in runs:
                assert [e.seq for e in await store.read_events(run, 0, 10)] == [1]
            await store.aclose()


async def test_the_shared_reads_block_stays_within_a_short_stream_timeout(
    redis_url: str, prefix: str, caplog: Any
) -> None:
    # Its blocked XREAD is in a pipeline, whose reply is awaited within the stream
    # timeout (a lone blocking command's is not): a 1 s block under a 0.5 s timeout
    # would time out, and the connection would be judged unhealthy.
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = RedisStore(redis_url, prefix=prefix, stream_timeout=0.5, follow_block=1.0)
            await store.start(nursery)
            mux = store._remote.tails
            assert mux is not None
            nursery.start_soon(store.follow, "quiet", 0, lambda events: None)
            while True:  # a condition, polled: three idle reads came back
                if mux.reads >= 4:
                    break
                await trio.sleep(0.01)
            assert store.connection.health.healthy
            assert not [r for r in caplog.records if r.name == "trio_streams.redis"]
            await store.aclose()
            nursery.cancel_scope.cancel()


async def test_an_error_mid_batch_keeps_what_was_appended_and_the_retry_skips_it(
    redis_url: str, prefix: str
) -> None:
    # Redis does not roll a script back: the entries before the failing one stay,
    # those after it are not written, the flush is not acknowledged; re-sent, each
    # entry that made it is a duplicate (0), the others are appended once.
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = await started(redis_url, prefix, nursery)
            writer, keys, client = store._writer, store.keys, store.client
            await client.set(keys.events("b"), "not a stream")  # b's XADD fails: WRONGTYPE
            for run in "abc":  # no checkpoint from here to the freeze
                store.append_nowait(run, Event.create(1, "token", 1, 1.0))
            frozen = writer._freeze()
            with pytest.raises(coredis.exceptions.ResponseError, match="wrong kind of value"):
                await writer._send(frozen.commands)
            assert [e.seq for e in await store.read_events("a", 0, 10)] == [1]
            assert not await client.exists([keys.events("c")])
            assert await client.pttl(keys.events("a")) > 0
            await client.delete([keys.events("b")])
            await writer._send(frozen.commands)
            writer._landed(frozen)
            for run in "abc":
                assert await client.xlen(keys.events(run)) == 1
                assert [e.seq for e in await store.read_events(run, 0, 10)] == [1]
                assert await client.pttl(keys.events(run)) > 0
            await store.aclose()


async def test_a_stream_in_the_blocked_reply_only_is_delivered(redis_url: str, prefix: str) -> None:
    # The blocked read is served by the XADD; the DEL right behind it (same
    # pipeline, processed before the read queued behind the blocked one) leaves
    # the stream out of the second reply: what the first brought is delivered.
    with trio.fail_after(DEADLINE):
        async with (
            coredis.Redis.from_url(redis_url, decode_responses=True, client_name="mux") as client,
            trio.open_nursery() as nursery,
        ):
            store = await started(redis_url, prefix, nursery)
            mux = TailMux(lambda: client, store.keys.tails("test"), block_seconds=10.0)
            await nursery.start(mux.run)
            got: list[int] = []
            key = store.keys.events("gone")
            tail = Tail(key, "0-0", 0, lambda events: got.extend(e.seq for e in events))
            with mux.register(tail):
                await blocked(store, "mux")
                async with store.client.pipeline(transaction=False) as pipe:
                    pipe.xadd(key, {"e": encode_batch([Event.create(1, "token", 1, 1.0)])}, identifier="1-1")
                    pipe.delete([key])
                await tail.activity.wait()
                assert got == [1]
                assert tail.last_id == "1-1"
            await store.aclose()
            nursery.cancel_scope.cancel()


async def test_a_pipelined_blocked_read_that_times_out_leaves_the_connection_healthy(redis_url: str) -> None:
    # Black-box pass: the shared read's pipeline (XREAD BLOCK, then XREAD) counted as
    # an ordinary command: Redis serves a blocked read's timeout on its own timer
    # (up to 1/hz late), so under a short stream timeout (0.05 s: a 12 ms block came
    # back after 50 ms) a healthy, idle Redis was judged not answering, and every
    # request of the instance failed fast (503) until the probe's next PING.
    with trio.fail_after(DEADLINE):
        connection = RedisConnection(redis_url, stream_timeout=0.2)
        async with connection.open():
            client = connection.client()
            with pytest.raises(RedisUnavailable, match="timed out"):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xread({unique_prefix() + "quiet": "0-0"}, count=1, block=5_000)
                    pipe.xread({unique_prefix() + "quiet": "0-0"}, count=1)
            assert connection.health.healthy
            assert connection.health.outages == 0
            assert await client.ping()


async def dump(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (named without it): its type, value and whether it expires."""
    out: dict[str, Any] = {}
    async for key in client.scan_iter(match=prefix + "*"):
        kind = await client.type(key)
        if kind == "stream":
            value: Any = [(e.identifier, dict(e.field_values)) for e in await client.xrange(key)]
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1)
        else:
            value = await client.get(key)
        out[key[len(prefix) :]] = (kind, value, await client.pttl(key) > 0)
    return out


async def test_a_batched_flush_leaves_what_one_call_per_entry_leaves(redis_url: str) -> None:
    # A rolling upgrade: an instance of before APPEND_BATCH (one APPEND_EVENTS and
    # PEXPIRE per entry) and one of after share a Redis: the same keys, values, TTLs.
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            store = await started(redis_url, unique_prefix(), nursery)
            writer, client = store._writer, store.client
            await writer._load_scripts()
            items: list[Item] = [
                MetaWrite("a", {"status": "running"}, "o", 1.0, live=True, final=False),
                ("a", Event.create(1, "token", "1", 1.0)),
                ("b", Event.create(1, "token", "1", 1.0)),
                ("a", Event.create(2, "token", "2", 1.0)),
                MetaWrite("b", {"status": "done"}, "o", 1.0, live=False, final=True),
                ("c", Event.create(3, "token", "3", 1.0)),
                MetaWrite("a", {"status": "running", "x": "1"}, None, 1.0, live=True, final=False),
                ("a", Event.create(3, "done", None, 1.0)),
            ]
            dumps = []
            for batch in (False, True):
                prefix = unique_prefix()
                keys = RedisStore(redis_url, prefix=prefix).keys
                frozen = freeze_batch(items, 512)
                async with client.pipeline(transaction=False) as pipe:
                    queue_commands(pipe, frozen.commands, keys, store.ttls, "i", batch=batch)
                dumps.append(await dump(client, prefix))
            assert dumps[0] == dumps[1]
            assert "run:{a}:events" in dumps[0]
            await store.aclose()
