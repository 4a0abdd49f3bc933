"""Group commit of Durable Streams appends in Redis: batching, ordering, bounds, cancellation.

Batching is counted, never timed: the store's commit script is wrapped so a
test can count its calls and hold the first one in flight (the appends
queued meanwhile must share the next call). Real redis-server, real clock,
a trio deadline on every test; the pure planning is checked against the
memory store without Redis.
"""

from __future__ import annotations

import socket
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_streams.durable import (
    CreateRequest,
    DurableStreamError,
    DurableStreamStore,
    RedisDurableStore,
    StreamId,
)
from trio_streams.durable._headers import ExpiresAt
from trio_streams.durable._producers import ProducerClaim, ProducerState
from trio_streams.durable._stream import AppendOutcome, AppendRequest
from trio_streams.durable.redis import _connection as _redis_connection
from trio_streams.durable.redis._layout import Keys, Meta, meta_fields
from trio_streams.durable.redis._plan import plan_batch
from trio_streams.log.redis import RedisStore

from .server_support import running_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .redis_support import SyncRedis

DEADLINE = 20
TEXT = "text/plain"


class HeldScript:
    """Wraps a store's commit script: counts calls; while ``hold`` is set, a call
    waits for ``release`` (and ``entered`` says one is waiting)."""

    def __init__(self, store: RedisDurableStore) -> None:
        self.inner = store._script
        self.calls = 0
        self.hold = False
        self.entered = trio.Event()
        self.release = trio.Event()
        store._script = self

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.hold:
            self.hold = False
            self.entered.set()
            await self.release.wait()
        return await self.inner(**kwargs)


@asynccontextmanager
async def store_on(url: str, prefix: str, **options: Any) -> AsyncIterator[RedisDurableStore]:
    async with RedisDurableStore(**options).connect(url, prefix=prefix) as store:
        yield store


async def read_all(store: RedisDurableStore, name: str) -> bytes:
    source = await store.open_read(name)
    found = await source.read(0)
    return b"".join(piece for piece in found.pieces if isinstance(piece, bytes))


async def start_append(
    nursery: trio.Nursery,
    store: RedisDurableStore,
    name: str,
    request: AppendRequest,
    answers: dict[int, AppendOutcome | DurableStreamError],
    key: int,
) -> None:
    """Start an append whose request is queued when this returns (in this order)."""

    async def run(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        # No checkpoint between started() and the append queueing its request.
        try:
            answers[key] = await store.append(name, request)
        except DurableStreamError as exc:
            answers[key] = exc

    await nursery.start(run)


def claim(seq: int, epoch: int = 0) -> ProducerClaim:
    return ProducerClaim("p", epoch, seq)


# -- batching ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_appends_arriving_during_a_commit_share_the_next_round_trip(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            script.hold = True
            answers: dict[int, AppendOutcome | DurableStreamError] = {}
            async with trio.open_nursery() as nursery:
                await start_append(nursery, store, "s", AppendRequest(b"<00>", TEXT), answers, 0)
                await script.entered.wait()  # the first append went at once, alone
                assert script.calls == 1
                for i in range(1, 40):
                    await start_append(
                        nursery, store, "s", AppendRequest(f"<{i:02d}>".encode(), TEXT), answers, i
                    )
                assert store.group_commit.statistics().pending == 40
                script.release.set()
            assert script.calls == 2, "39 appends queued behind one commit share one round trip"
            offsets = [answers[i] for i in range(40)]
            assert all(isinstance(o, AppendOutcome) and o.status == 204 for o in offsets)
            tails = [o.next_offset for o in offsets if isinstance(o, AppendOutcome)]
            assert tails == sorted(tails), "answered in queue order"
            assert len(set(tails)) == 40
            assert await read_all(store, "s") == b"".join(f"<{i:02d}>".encode() for i in range(40))
            assert store.group_commit.statistics().pending == 0
            assert store.group_commit._queues == {}, "a stream's committer goes with its last append"


@pytest.mark.redis
async def test_the_steady_state_is_one_round_trip_per_append(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            loads = 0
            load = store._load

            async def counting_load(ident: Any) -> Meta | None:
                nonlocal loads
                loads += 1
                return await load(ident)

            store._load = counting_load  # type: ignore[method-assign]
            for _ in range(5):
                await store.append("s", AppendRequest(b"x", TEXT))
            assert (script.calls, loads) == (5, 0), "planned on the store's own view, no load"


@pytest.mark.redis
async def test_producer_and_stream_seq_rules_hold_inside_one_batch(redis_url: str, prefix: str) -> None:
    requests = [
        AppendRequest(b"a", TEXT, producer=claim(1)),
        AppendRequest(b"a", TEXT, producer=claim(1)),  # a retry: 204, not written twice
        AppendRequest(b"b", TEXT, producer=claim(3)),  # a gap: 409
        AppendRequest(b"c", TEXT, producer=claim(2), stream_seq="m"),
        AppendRequest(b"d", TEXT, stream_seq="k"),  # Stream-Seq regression: 409
        AppendRequest(b"e", TEXT, close=True),
        AppendRequest(b"f", TEXT),  # after the close: 409
    ]
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            script.hold = True
            answers: dict[int, AppendOutcome | DurableStreamError] = {}
            async with trio.open_nursery() as nursery:
                await start_append(
                    nursery, store, "s", AppendRequest(b"0", TEXT, producer=claim(0)), answers, 0
                )
                await script.entered.wait()
                for i, request in enumerate(requests, 1):
                    await start_append(nursery, store, "s", request, answers, i)
                script.release.set()
            assert script.calls == 2
            got = await read_all(store, "s")
        memory = DurableStreamStore()
        memory.create("s", CreateRequest(TEXT))
        expected = [_outcome(memory, AppendRequest(b"0", TEXT, producer=claim(0)))]
        expected += [_outcome(memory, request) for request in requests]
        assert [_summary(answers[i]) for i in range(len(requests) + 1)] == [_summary(e) for e in expected]
        assert [_summary(e)[0] for e in expected] == [200, 200, 204, 409, 200, 409, 204, 409]
        assert got == b"0ace"


def _outcome(store: DurableStreamStore, request: AppendRequest) -> AppendOutcome | DurableStreamError:
    try:
        return store.append("s", request)
    except DurableStreamError as exc:
        return exc


def _summary(answer: AppendOutcome | DurableStreamError) -> tuple[Any, ...]:
    if isinstance(answer, DurableStreamError):
        return (answer.status, answer.code)
    return (answer.status, str(answer.next_offset), answer.closed, answer.producer_seq)


async def test_a_planned_batch_decides_as_the_memory_store_does_one_append_at_a_time() -> None:
    # (async: the memory store reads the trio clock)
    requests = [
        AppendRequest(b"x", TEXT, producer=claim(0)),
        AppendRequest(b"y", "application/json"),  # wrong content type: 409
        AppendRequest(b"", TEXT),  # empty without close: 400
        AppendRequest(b"z", TEXT, producer=claim(0, epoch=1)),  # a new epoch
        AppendRequest(b"w", TEXT, producer=claim(5)),  # stale epoch now: 403
        AppendRequest(b"", TEXT, close=True),
        AppendRequest(b"", TEXT, close=True),  # closing a closed stream: 204
    ]
    meta = Meta(name="s", version="7", incarnation=3, content_type=TEXT, config="", tail=_start())
    plan = plan_batch(Keys("p:"), meta, requests, now=1000.0)
    memory = DurableStreamStore()
    memory.create("s", CreateRequest(TEXT))
    assert [_summary(a) for a in plan.answers] == [_summary(_outcome(memory, r)) for r in requests]
    assert (plan.after.version, plan.changed, plan.after.closed) == ("8", True, True)
    assert [op[0] for op in plan.ops].count("XADD") == 2, "one entry per accepted append with data"


def test_a_batch_that_changes_nothing_keeps_the_version() -> None:
    meta = Meta(name="s", version="7", incarnation=3, content_type=TEXT, config="", tail=_start(), ttl=10)
    meta.producers = {"p": ProducerState(0, 0)}
    plan = plan_batch(Keys("p:"), meta, [AppendRequest(b"", TEXT), AppendRequest(b"x", "a/b")], now=5.0)
    assert (plan.changed, plan.after.version, plan.ops) == (False, "7", []), "refusals only: a check"
    retry = plan_batch(Keys("p:"), meta, [AppendRequest(b"x", TEXT, producer=claim(0))], now=5.0)
    assert [_summary(a) for a in retry.answers] == [(204, str(_start()), False, 0)]
    assert (retry.changed, retry.after.version) == (False, "7")
    assert retry.ops[0] == ["HSET", "p:ds:{s}:meta", "dl", "15.0"], "a retry renews the TTL only"


def _hset(plan: Any) -> dict[str, str]:
    """The fields the plan's one ``HSET`` of the meta hash writes."""
    (hset,) = [op for op in plan.ops if op[0] == "HSET"]
    return dict(zip(hset[2::2], hset[3::2], strict=True))


def test_a_batch_writes_only_the_meta_fields_it_changed() -> None:
    meta = Meta(name="s", version="7", incarnation=3, content_type=TEXT, config="c", tail=_start())
    plain = plan_batch(Keys("p:"), meta, [AppendRequest(b"x", TEXT), AppendRequest(b"y", TEXT)], now=5.0)
    assert _hset(plain) == {"v": "8", "tail": str(plain.after.tail)}, "type, config, producers: unchanged"
    assert [op[0] for op in plain.ops] == ["XADD", "XADD", "HSET"], "no deadline: no key TTL to renew"
    full = meta_fields(plain.after)
    seq = plan_batch(
        Keys("p:"), meta, [AppendRequest(b"x", TEXT, stream_seq="a", producer=claim(0))], now=5.0
    )
    assert set(_hset(seq)) == {"v", "tail", "sseq", "prod"}
    closing = plan_batch(Keys("p:"), plain.after, [AppendRequest(b"", TEXT, close=True)], now=5.0)
    assert _hset(closing) == {"v": "9", "closed": "1"}, "a close moves no tail"
    assert {**full, **_hset(closing)} == {**meta_fields(closing.after), "v": "9"}


_appends = st.builds(
    AppendRequest,
    body=st.sampled_from([b"", b"x", b"yz"]),
    content_type=st.just(TEXT),
    producer=st.none() | st.builds(claim, st.integers(0, 3), epoch=st.integers(0, 1)),
    stream_seq=st.none() | st.sampled_from(["a", "b", "c"]),
    close=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.lists(_appends, min_size=1, max_size=4), min_size=1, max_size=5), ttl=st.booleans()
)
def test_the_fields_a_batch_writes_are_all_that_changed(
    batches: list[list[AppendRequest]], ttl: bool
) -> None:
    meta = Meta(name="s", version="1", incarnation=3, content_type=TEXT, config="c", tail=_start())
    if ttl:
        meta.ttl, meta.deadline = 10, 10.0
    for step, requests in enumerate(batches):
        plan = plan_batch(Keys("p:"), meta, requests, now=float(step))
        written = meta_fields(meta)
        if plan.changed:
            written |= _hset(plan)
            written.pop("v")
        elif plan.ops:
            written |= _hset(plan)
        assert written == meta_fields(plan.after), "the hash as the commit leaves it is the whole new state"
        meta = plan.after


def test_a_batch_on_a_stream_with_a_deadline_renews_its_key_ttls() -> None:
    ttl = Meta(name="s", version="7", incarnation=3, content_type=TEXT, config="", tail=_start(), ttl=10)
    ttl.deadline = 15.0
    # The same deadline as the view's (a clock that did not move): written anyway,
    # since a read may have renewed it in Redis meanwhile without a new version.
    same = plan_batch(Keys("p:"), ttl, [AppendRequest(b"x", TEXT)], now=5.0)
    assert _hset(same)["dl"] == "15.0"
    assert [op[0] for op in same.ops].count("PEXPIREAT") == 2
    fixed = Meta(name="s", version="7", incarnation=3, content_type=TEXT, config="", tail=_start())
    fixed.expires_at, fixed.deadline = ExpiresAt("x", 100.0), 100.0
    at = plan_batch(Keys("p:"), fixed, [AppendRequest(b"x", TEXT)], now=5.0)
    assert "dl" not in _hset(at), "a fixed deadline does not move"
    assert [op[1] for op in at.ops if op[0] == "PEXPIREAT"] == ["p:ds:{s}:meta", "p:ds:{s}:data"], (
        "the data key (created by the first XADD) gets its TTL"
    )


@pytest.mark.redis
async def test_the_meta_hash_written_field_by_field_is_the_whole_state(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            client = store._require()
            await store.create("s", CreateRequest(TEXT))
            await store.append("s", AppendRequest(b"a", TEXT, producer=claim(0), stream_seq="1"))
            await store.append("s", AppendRequest(b"b", TEXT, producer=claim(1)))
            await store.append("s", AppendRequest(b"", TEXT, close=True, producer=claim(2)))
            view = store._local.view(StreamId(None, "s"))
            assert view is not None
            stored = await client.hgetall(Keys(prefix).meta(view.stream_id))
            assert {k.decode(): v.decode() for k, v in stored.items()} == {
                **meta_fields(view),
                "v": view.version,
            }
            assert await store._load(view.stream_id) == view, "a load sees what this instance's view says"
            keys = Keys(prefix)
            assert [
                await client.pttl(keys.meta(view.stream_id)),
                await client.pttl(keys.data(view.stream_id)),
            ] == [
                -1,
                -1,
            ], "no deadline: no key TTL"
            await store.create("e", CreateRequest(TEXT, expires_at=ExpiresAt("later", time.time() + 3600)))
            await store.append("e", AppendRequest(b"x", TEXT))
            await store.append("e", AppendRequest(b"y", TEXT))
            e = StreamId(None, "e")
            assert await client.pttl(keys.data(e)) > 0, "the data key the first append created expires too"
            assert await client.pttl(keys.meta(e)) > 0


@pytest.mark.redis
async def test_a_commit_after_redis_forgot_the_script_loads_it_again(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            client = store._require()
            await store.create("s", CreateRequest(TEXT))
            await store.append("s", AppendRequest(b"a", TEXT))
            await client.script_flush()  # as after a restart of Redis (or a failover)
            assert await client.script_exists([store._commit_script().sha]) == (False,)
            await store.append("s", AppendRequest(b"b", TEXT))
            assert await read_all(store, "s") == b"ab"
            assert await client.script_exists([store._commit_script().sha]) == (True,)


def _start() -> Any:
    from trio_streams.durable._offsets import START

    return START


# -- views of other instances' writes ---------------------------------------------------------------


@pytest.mark.redis
async def test_a_stale_view_is_replanned_on_a_fresh_load(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            first = await a.append("s", AppendRequest(b"1", TEXT, stream_seq="a"))
            await b.append("s", AppendRequest(b"2", TEXT, stream_seq="b"))
            with pytest.raises(DurableStreamError) as refused:
                await a.append("s", AppendRequest(b"3", TEXT, stream_seq="b"))
            assert refused.value.status == 409, "decided on B's Stream-Seq, not on A's old view"
            third = await a.append("s", AppendRequest(b"3", TEXT, stream_seq="c"))
            assert third.next_offset > first.next_offset
            assert await read_all(b, "s") == b"123"


@pytest.mark.redis
async def test_a_view_of_a_deleted_and_recreated_stream_is_not_trusted(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            await a.append("s", AppendRequest(b"old!", TEXT))  # A's view: version 2
            await b.delete("s")
            await b.create("s", CreateRequest(TEXT))
            await b.append("s", AppendRequest(b"n", TEXT))  # version 2 again, another incarnation
            answer = await a.append("s", AppendRequest(b"ew", TEXT))
            assert answer.next_offset.position == 3
            assert await read_all(b, "s") == b"new"


@pytest.mark.redis
async def test_two_stores_appending_concurrently_to_one_stream_stay_correct(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            answers: dict[bytes, AppendOutcome] = {}

            async def append(store: RedisDurableStore, body: bytes) -> None:
                answers[body] = await store.append("s", AppendRequest(body, TEXT))

            async with trio.open_nursery() as nursery:
                for i in range(80):
                    nursery.start_soon(append, a if i % 2 else b, f"<{i:02d}>".encode())
            data = await read_all(a, "s")
            assert sorted(data[i : i + 4] for i in range(0, len(data), 4)) == sorted(answers)
            for body, answer in answers.items():
                end = answer.next_offset.position
                assert data[end - 4 : end] == body, "each answer's offset ends its own data"
            assert len({a.next_offset for a in answers.values()}) == 80


# -- bounds and cancellation -------------------------------------------------------------------------


@pytest.mark.redis
async def test_appends_past_the_pending_bound_are_refused_with_a_503(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix, max_pending_appends=2) as store:
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            script.hold = True
            answers: dict[int, AppendOutcome | DurableStreamError] = {}
            async with trio.open_nursery() as nursery:
                await start_append(nursery, store, "s", AppendRequest(b"a", TEXT), answers, 0)
                await script.entered.wait()
                await start_append(nursery, store, "s", AppendRequest(b"b", TEXT), answers, 1)
                with pytest.raises(DurableStreamError) as busy:
                    await store.append("s", AppendRequest(b"c", TEXT))
                assert (busy.value.status, busy.value.code) == (503, "store_busy")
                assert busy.value.headers["Retry-After"] == "1"
                script.release.set()
            assert store.group_commit.statistics().refused == 1
            assert await read_all(store, "s") == b"ab"


@pytest.mark.redis
async def test_a_cancelled_waiter_withdraws_a_queued_append_and_others_are_answered(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            script.hold = True
            answers: dict[int, AppendOutcome | DurableStreamError] = {}
            cancelled: list[bool] = []
            async with trio.open_nursery() as nursery:
                in_flight = trio.CancelScope()
                queued = trio.CancelScope()

                async def cancellable(
                    scope: trio.CancelScope, body: bytes, *, task_status: trio.TaskStatus[None]
                ) -> None:
                    with scope:
                        task_status.started()
                        await store.append("s", AppendRequest(body, TEXT))
                    cancelled.append(scope.cancelled_caught)

                await nursery.start(cancellable, in_flight, b"A")
                await script.entered.wait()
                await nursery.start(cancellable, queued, b"B")
                await start_append(nursery, store, "s", AppendRequest(b"C", TEXT), answers, 2)
                in_flight.cancel()  # A is in the commit under way: it still commits
                queued.cancel()  # B was not taken yet: withdrawn, never written
                await trio.testing.wait_all_tasks_blocked()
                assert store.group_commit.statistics().pending == 2  # A and C
                script.release.set()
            assert cancelled == [True, True]
            assert isinstance(answers[2], AppendOutcome)
            assert answers[2].status == 204
            assert await read_all(store, "s") == b"AC"
            assert store.group_commit.statistics().pending == 0


@pytest.mark.redis
async def test_closing_the_store_answers_every_held_append_with_a_503(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing waits CLOSE_GRACE for requests under way, then cancels the committers.
    monkeypatch.setattr(_redis_connection, "CLOSE_GRACE", 0.2)
    with trio.fail_after(DEADLINE):
        answers: dict[int, AppendOutcome | DurableStreamError] = {}
        store = RedisDurableStore()
        async with trio.open_nursery() as outer, store.connect(redis_url, prefix=prefix):
            await store.create("s", CreateRequest(TEXT))
            script = HeldScript(store)
            script.hold = True  # never released: the commit hangs until cancelled
            await start_append(outer, store, "s", AppendRequest(b"a", TEXT), answers, 0)
            await script.entered.wait()
            await start_append(outer, store, "s", AppendRequest(b"b", TEXT), answers, 1)
        for i in (0, 1):
            answer = answers[i]
            assert isinstance(answer, DurableStreamError), answer
            assert answer.status == 503
        assert store.group_commit.statistics().pending == 0
        with pytest.raises(DurableStreamError) as closed:
            await store.append("s", AppendRequest(b"c", TEXT))
        assert closed.value.status == 503


# -- the notification follower -------------------------------------------------------------------


def blocking_command(port: int, *args: str) -> bytes:
    """One Redis command over a plain blocking socket: no trio checkpoint while it runs."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
        return sock.recv(4096)


@pytest.mark.redis
async def test_a_change_between_a_registration_and_an_idle_followers_resume_is_not_missed(
    redis_server: SyncRedis, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_server.url, prefix) as store:
            notifications = store._notifications
            await trio.testing.wait_all_tasks_blocked()  # the follower idles: no reader
            ident = StreamId(None, "s")
            with notifications.watching(ident) as current_event:
                event = current_event()
                # Committed after the reader registered (and looked), before the follower resumes.
                key = Keys(prefix).notify
                assert blocking_command(redis_server.port, "XADD", key, "*", "n", "s").startswith(b"$")
                with trio.fail_after(5):  # a lost wake-up fails here, not at the reader's deadline
                    await event.wait()


@pytest.mark.redis
async def test_another_instances_commit_wakes_a_reader_through_the_notify_stream(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            with b._notifications.watching(StreamId(None, "s")) as current_event:
                with trio.fail_after(5):
                    await current_event().wait()  # B's follower resumed (and woke its readers once)
                event = current_event()
                await a.append("s", AppendRequest(b"x", TEXT))  # A wakes only its own readers
                with trio.fail_after(5):  # a lost wake-up fails here
                    await event.wait()


@pytest.mark.redis
async def test_a_reader_woken_by_a_local_commit_reads_it_without_a_round_trip(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store, store_on(redis_url, prefix) as other:
            await store.create("j", CreateRequest("application/json", body=b"[0]"))
            source = await store.open_read("j")
            start = source.tail().position
            data = store._data()
            collected = 0
            collect = data.collect

            async def counting_collect(*args: Any) -> None:
                nonlocal collected
                collected += 1
                await collect(*args)

            data.collect = counting_collect  # type: ignore[method-assign,assignment]
            found: list[Any] = []

            async def live_read() -> None:
                with trio.fail_after(5):
                    assert await source.wait(start, float("inf"))
                found.append(await source.read(start))

            # The follower wakes every reader once when the first one registers (and
            # then reads the notify stream, skipping this instance's own commits): let
            # it do so before the live read, or that wake-up may look at Redis after
            # the commit landed there but before its reply reached this instance.
            with store._notifications.watching(StreamId(None, "other")) as current_event:
                with trio.fail_after(5):
                    await current_event().wait()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(live_read)
                    await trio.testing.wait_all_tasks_blocked()
                    await store.append("j", AppendRequest(b'[1, {"a": 2}]', "application/json"))
            assert collected == 0, "the data just committed here is read from memory"
            from_redis = await (await other.open_read("j")).read(start)
            assert (found[0].pieces, found[0].end) == (from_redis.pieces, from_redis.end)
            assert found[0].pieces == [(b"1", b'{"a":2}')]
            assert store._local.recent_bytes > 0
        assert store._local.recent_bytes == 0


@pytest.mark.redis
async def test_the_group_commit_counts_are_metrics(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        store = RedisStore(redis_url, prefix=prefix)
        async with running_server(store=store) as server, httpx.AsyncClient(base_url=server.url) as client:
            headers = {"Content-Type": TEXT}
            await client.put("/v1/stream/m", headers=headers)
            for _ in range(3):
                assert (await client.post("/v1/stream/m", content=b"x", headers=headers)).status_code == 204
            metrics = (await client.get("/metrics")).text
            assert "trio_streams_durable_commits_total 3.0\n" in metrics
            assert "trio_streams_durable_appends_total 3.0\n" in metrics
            assert "trio_streams_durable_pending_appends 0.0\n" in metrics
            assert "trio_streams_durable_append_refusals_total 0.0\n" in metrics


def count_loads(store: RedisDurableStore) -> list[int]:
    """Counts the store's loads of a stream's meta (its ``HGETALL``) from now on: ``[count]``."""
    loads = [0]
    load = store._load

    async def counting_load(ident: Any) -> Meta | None:
        loads[0] += 1
        return await load(ident)

    store._load = counting_load  # type: ignore[method-assign]
    return loads


@pytest.mark.redis
async def test_a_live_read_at_this_instances_own_commit_waits_and_wakes_without_a_load(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            # A reader elsewhere keeps the follower reading: its resume (after the
            # create's notification went by unread) has woken everyone once, before.
            with store._notifications.watching(StreamId(None, "other")) as current_event:
                with trio.fail_after(5):
                    await current_event().wait()
                outcome = await store.append("s", AppendRequest(b"a", TEXT))
                source = await store.open_read("s")
                position = outcome.next_offset.position
                assert source.tail().position == position
                loads = count_loads(store)
                found: list[Any] = []

                async def live_read() -> None:
                    with trio.fail_after(5):
                        assert await source.wait(position, float("inf"))
                    found.append(await source.read(position))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(live_read)
                    await trio.testing.wait_all_tasks_blocked()
                    assert loads[0] == 0, "parked on this instance's own last commit, without a load"
                    await store.append("s", AppendRequest(b"b", TEXT))
            assert loads[0] == 0, "woken by this instance's commit: read without a load"
            assert found[0].pieces == [b"b"]


@pytest.mark.redis
async def test_a_reader_at_its_own_commit_sees_a_change_from_elsewhere_already_notified(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            ident = StreamId(None, "s")
            # A watcher keeps A's follower reading (it resumes once, waking it).
            with a._notifications.watching(ident) as current_event:
                with trio.fail_after(5):
                    await current_event().wait()
                outcome = await a.append("s", AppendRequest(b"a", TEXT))  # A's view: its own commit
                event = current_event()
                await b.append("s", AppendRequest(b"b", TEXT))
                with trio.fail_after(5):
                    await event.wait()  # A's follower has seen B's notification (and woke the watcher)
                source = await a.open_read("s")
                position = outcome.next_offset.position
                # A reader at A's own commit: B's notification is gone, so only a load
                # tells it there is more (a lost change would hang here).
                with trio.fail_after(5):
                    assert await a.wait(source, position, float("inf"))
                assert (await source.read(position)).pieces == [b"b"]


@pytest.mark.redis
async def test_a_reader_at_its_own_commit_sees_a_change_from_elsewhere_while_the_follower_idled(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with store_on(redis_url, prefix) as a, store_on(redis_url, prefix) as b:
            await a.create("s", CreateRequest(TEXT))
            outcome = await a.append("s", AppendRequest(b"a", TEXT))  # A's view: its own commit
            await trio.testing.wait_all_tasks_blocked()  # A's follower idles: no reader
            await b.append("s", AppendRequest(b"b", TEXT))  # notified while A reads nothing
            source = await a.open_read("s")
            position = outcome.next_offset.position
            with trio.fail_after(5):  # a lost change hangs here
                assert await a.wait(source, position, float("inf"))
            assert (await source.read(position)).pieces == [b"b"]
