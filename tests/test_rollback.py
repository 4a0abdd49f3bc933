"""``on_conflict="rollback"``: cancel the old run, delete it, then start the new one.

Hub logic on the mock clock (exact times), with the default MemoryStore.
The Redis side (two instances, 50 simultaneous rollbacks, the Cluster) is in
tests/test_redis_rollback.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_streams import Gap, RunNotFound, RunOutcome, RunStatus, open_hub
from trio_streams.log import MemoryStore
from trio_streams.testing import Script, collect, events_of, types_of


async def test_rollback_deletes_the_old_run_before_the_new_one_starts(autojump_clock) -> None:
    store = MemoryStore()
    outcomes: list[tuple[float, str, str | None, Any]] = []

    async def save(run: Any, outcome: RunOutcome) -> None:
        await trio.sleep(2)  # the old run's partial-save path, within finalize_timeout
        outcomes.append((trio.current_time(), run.id, outcome.reason, outcome.result))

    seen_at_start: list[tuple[float, Any, Any]] = []
    async with open_hub(store, on_finish=save, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().emit_many(100, every=1.0), key="conv")

        async def new_producer(ctx: Any) -> str:
            # What the new run finds when it starts: the old run is gone already.
            seen_at_start.append((trio.current_time(), hub.get(old.id), await store.get_run(old.id)))
            return "fresh"

        received: list[Any] = []

        async def follow_old() -> None:
            async with hub.subscribe(old.id) as sub:
                received.extend([item async for item in sub])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_old)
            await trio.sleep(3.5)
            new = await hub.start(new_producer, key="conv", on_conflict="rollback")
            assert new.status is RunStatus.QUEUED
            old_info = await old.wait()
        new_info = await new.wait()
        # Gone, everywhere: the hub's memory and the store.
        assert hub.get(old.id) is None
        with pytest.raises(RunNotFound):
            await hub.get_info(old.id)
        with pytest.raises(RunNotFound):
            await hub.cancel(old.id)
        with pytest.raises(RunNotFound):
            async with hub.subscribe(old.id, after=2):
                pass
        assert await store.get_run(old.id) is None
        assert await store.read_events(old.id, 0, 100) == []
        assert [info.run_id for info in await hub.list_runs()] == [new.id]
    assert (old_info.status, old_info.reason, old_info.result, old_info.partial) == (
        RunStatus.CANCELLED,
        "rolled_back",
        "t0t1t2t3",
        True,
    )
    # The old run's on_finish saw the reason, 2 s after the rollback; the new
    # run started only then, and found the old one deleted.
    assert outcomes[0] == (5.5, old.id, "rolled_back", "t0t1t2t3")
    assert seen_at_start == [(5.5, None, None)]
    assert (new_info.status, new_info.started_at, new_info.result) == (RunStatus.DONE, 5.5, "fresh")
    # Its subscriber read its tokens, then the terminal `cancelled` (reason rolled_back), then the end.
    assert types_of(received) == ["token"] * 4 + ["cancelled"]
    assert received[-1].data == {"result": "t0t1t2t3", "partial": True, "reason": "rolled_back"}
    assert received[-1].timestamp == 5.5


async def test_a_subscriber_behind_the_log_gets_the_terminal_and_never_a_gap(autojump_clock) -> None:
    async with open_hub(log_max_events=3, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().emit_many(10).sleep(100), key="k")
        async with hub.subscribe(old.id) as sub:
            await trio.sleep(1)  # all 10 tokens published; the log keeps the last 3
            assert old.log.first_seq == 8
            new = await hub.start(Script().emit(), key="k", on_conflict="rollback")
            await old.wait()  # deleted from the store by now
            items = [item async for item in sub]
        assert not any(isinstance(item, Gap) for item in items)
        assert types_of(items) == ["cancelled"]
        [terminal] = events_of(items)
        assert (terminal.seq, terminal.data["reason"], trio.current_time()) == (11, "rolled_back", 1.0)
        assert (await new.wait()).status is RunStatus.DONE


async def test_rollback_also_deletes_the_runs_queued_for_the_key(autojump_clock) -> None:
    async with open_hub(wall_clock=trio.current_time) as hub:
        a = await hub.start(Script().sleep(100), key="k")
        b = await hub.start(Script().emit(), key="k", on_conflict="enqueue")
        c = await hub.start(Script().emit(), key="k", on_conflict="rollback")
        ends = [await run.wait() for run in (a, b)]
        assert [(e.status, e.reason) for e in ends] == [(RunStatus.CANCELLED, "rolled_back")] * 2
        assert ((await c.wait()).status, c.started_at) == (RunStatus.DONE, 0.0)
        for gone in (a, b):
            with pytest.raises(RunNotFound):
                await hub.get_info(gone.id)
        assert types_of(await collect(hub, c.id)) == ["token", "done"]


async def test_the_old_runs_hanging_cleanup_is_bounded_by_the_finalize_timeout(autojump_clock) -> None:
    async def hang(run: Any, outcome: RunOutcome) -> None:
        await trio.sleep_forever()

    async with open_hub(on_finish=hang, finalize_timeout=7.0, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().sleep(100), key="k")
        await trio.sleep(1)
        new = await hub.start(Script().emit(), key="k", on_conflict="rollback")
        # 1 s + the old run's 7 s hook; then the new run's own hook takes its 7 s.
        assert ((await new.wait()).started_at, trio.current_time()) == (8.0, 15.0)
        assert hub.get(old.id) is None


async def test_rollback_without_a_live_run_just_starts(autojump_clock) -> None:
    async with open_hub(wall_clock=trio.current_time) as hub:
        run = await hub.start(Script().emit(), key="k", on_conflict="rollback")
        assert run.status is RunStatus.RUNNING
        assert (await run.wait()).status is RunStatus.DONE
        # A finished run is not live: the next rollback deletes nothing.
        again = await hub.start(Script().emit(), key="k", on_conflict="rollback")
        await again.wait()
        assert (await hub.get_info(run.id)).status is RunStatus.DONE


async def test_keys_are_per_owner_bobs_rollback_never_touches_alices_run(autojump_clock) -> None:
    async with open_hub(wall_clock=trio.current_time) as hub:
        alices = await hub.start(Script().sleep(10).emit(), key="k", owner="alice")
        bobs = await hub.start(Script().emit(), key="k", owner="bob", on_conflict="rollback")
        assert bobs.status is RunStatus.RUNNING
        assert ((await alices.wait()).status, alices.ended_at) == (RunStatus.DONE, 10.0)
        assert (await hub.get_info(alices.id)).status is RunStatus.DONE


async def test_the_rolled_back_reason_is_reserved(autojump_clock) -> None:
    async with open_hub() as hub:
        run = await hub.start(Script().sleep(1))
        with pytest.raises(ValueError, match="reserved"):
            await hub.cancel(run.id, reason="rolled_back")
        assert (await run.wait()).status is RunStatus.DONE
        assert [e.type for e in events_of(await collect(hub, run.id))] == ["done"]


class SlowDeleteStore(MemoryStore):
    """A MemoryStore whose delete takes one second (a store that writes remotely)."""

    async def delete_run(self, run_id: str) -> None:
        await trio.sleep(1)
        await super().delete_run(run_id)


async def test_the_new_run_waits_for_the_store_to_delete_the_old_one(autojump_clock) -> None:
    store = SlowDeleteStore()
    async with open_hub(store, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().sleep(100), key="k")
        found: list[tuple[float, Any]] = []

        async def new_producer(ctx: Any) -> None:
            found.append((trio.current_time(), await store.get_run(old.id)))

        await trio.sleep(1)
        new = await hub.start(new_producer, key="k", on_conflict="rollback")
        await new.wait()
        assert (new.started_at, found) == (2.0, [(2.0, None)])
        assert old.ended_at == 1.0  # its end is at the cancel; the delete took the second after


async def test_fifty_simultaneous_rollbacks_leave_exactly_the_last_one(autojump_clock) -> None:
    active: list[str] = []
    overlaps = 0

    async def producer(ctx: Any) -> None:
        nonlocal overlaps
        overlaps += bool(active)
        active.append(ctx.run_id)
        try:
            await trio.sleep(10)
        finally:
            active.remove(ctx.run_id)

    async with open_hub(max_queued_per_key=64, wall_clock=trio.current_time) as hub:
        old = await hub.start(producer, key="k")
        await trio.sleep(1)
        runs: list[Any] = []

        async def rollback() -> None:
            runs.append(await hub.start(producer, key="k", on_conflict="rollback"))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(rollback)
        # The last claim cancelled every run ahead of it; each of those was deleted.
        *replaced, survivor = runs
        infos = [await run.wait() for run in (old, *replaced)]
        assert {(i.status, i.reason) for i in infos} == {(RunStatus.CANCELLED, "rolled_back")}
        assert [run.started_at for run in replaced] == [None] * 49  # queued, never ran
        assert ((await survivor.wait()).status, survivor.started_at, survivor.ended_at) == (
            RunStatus.DONE,
            1.0,
            11.0,
        )
        assert overlaps == 0
        assert [info.run_id for info in await hub.list_runs()] == [survivor.id]
        for run in (old, *replaced):
            assert hub.get(run.id) is None


async def test_a_reader_of_the_final_record_deleted_while_it_reads_gets_the_terminal(autojump_clock) -> None:
    store = SlowDeleteStore()  # the record is deleted from t=1 to t=2, after the hub forgot the run
    async with open_hub(store, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().emit_many(3).sleep(100), key="k")
        await trio.sleep(1)
        await hub.start(Script().emit(), key="k", on_conflict="rollback")
        await trio.sleep(0.5)
        assert hub.get(old.id) is None
        async with hub.subscribe(old.id, after=1) as sub:  # from the store's final record
            await trio.sleep(1)  # deleted meanwhile
            items = [item async for item in sub]
        assert not any(isinstance(item, Gap) for item in items)
        [terminal] = events_of(items)
        assert (terminal.seq, terminal.type, terminal.timestamp) == (4, "cancelled", 1.0)
        assert terminal.data == {"result": "t0t1t2", "partial": True, "reason": "rolled_back"}
        with pytest.raises(RunNotFound):
            await hub.get_info(old.id)
