"""Same key, new run: reject, interrupt, enqueue."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_streams import AtCapacity, RunConflict, RunOutcome, RunStatus, open_hub
from trio_streams.testing import Gate, Script, collect, events_of, types_of


async def test_reject_names_the_live_run(stream_hub, autojump_clock) -> None:
    gate = Gate()
    first = await stream_hub.start(Script().wait(gate), key="conv-1")
    with pytest.raises(RunConflict) as caught:
        await stream_hub.start(Script(), key="conv-1", on_conflict="reject")
    assert caught.value.live_run_id == first.id
    assert caught.value.key == "conv-1"
    # Other keys, and no key, are unaffected.
    await stream_hub.start(Script(), key="conv-2")
    await stream_hub.start(Script())
    gate.release()
    await first.wait()
    second = await stream_hub.start(Script().emit(), key="conv-1")
    assert (await second.wait()).status == RunStatus.DONE
    assert stream_hub.statistics().runs_started == 4


async def test_interrupt_starts_the_new_run_only_after_the_old_finalized(autojump_clock) -> None:
    saved: list[tuple[float, str, Any]] = []

    async def save(run: Any, outcome: RunOutcome) -> None:
        await trio.sleep(2)
        saved.append((trio.current_time(), run.id, outcome.result))

    async with open_hub(on_finish=save, wall_clock=trio.current_time) as hub:
        old = await hub.start(Script().emit_many(100, every=1.0), key="conv")
        await trio.sleep(3.5)
        new_script = Script().emit()
        new = await hub.start(new_script, key="conv", on_conflict="interrupt")
        assert new.status == RunStatus.QUEUED
        assert hub.current("conv", owner=None) is old
        await new_script.started.wait()
        assert trio.current_time() == 5.5  # 3.5 + the old run's 2 s hook
        assert hub.current("conv", owner=None) is new
        old_info = await old.wait()
        new_info = await new.wait()
    assert (old_info.status, old_info.reason, old_info.result) == (
        RunStatus.CANCELLED,
        "interrupted",
        "t0t1t2t3",
    )
    assert saved[0] == (5.5, old.id, "t0t1t2t3")  # the partial was saved before the new run began
    assert new_info.started_at == 5.5
    assert new_info.status == RunStatus.DONE


async def test_enqueue_runs_one_after_another(stream_hub, autojump_clock) -> None:
    scripts = [Script().emit_many(2, every=1.0, text=f"r{n}-") for n in range(3)]
    runs = [await stream_hub.start(s, key="k", on_conflict="enqueue") for s in scripts]
    assert [r.status for r in runs] == [RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.QUEUED]
    infos = [await r.wait() for r in runs]
    assert [i.status for i in infos] == [RunStatus.DONE] * 3
    assert [(i.started_at, i.ended_at) for i in infos] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert [e.data for e in events_of(await collect(stream_hub, runs[2].id))][:2] == ["r2-0", "r2-1"]


async def test_a_subscriber_of_a_queued_run_waits_for_it(stream_hub, autojump_clock) -> None:
    first = await stream_hub.start(Script().sleep(10), key="k")
    second = await stream_hub.start(Script().emit(), key="k", on_conflict="enqueue")
    items = await collect(stream_hub, second.id)
    assert types_of(items) == ["token", "done"]
    assert trio.current_time() == 10.0
    assert first.status == RunStatus.DONE


async def test_cancelling_a_queued_run_never_runs_it(stream_hub, autojump_clock) -> None:
    gate = Gate()
    first = await stream_hub.start(Script().wait(gate), key="k")
    skipped_script, last_script = Script().emit(), Script().emit()
    skipped = await stream_hub.start(skipped_script, key="k", on_conflict="enqueue")
    last = await stream_hub.start(last_script, key="k", on_conflict="enqueue")
    await stream_hub.cancel(skipped.id)
    info = await skipped.wait()
    assert (info.status, info.started_at) == (RunStatus.CANCELLED, None)
    gate.release()
    assert (await last.wait()).status == RunStatus.DONE
    assert not skipped_script.started.is_set()
    assert last_script.started.is_set()
    assert first.status == RunStatus.DONE


async def test_drain_cancels_queued_runs_at_once_and_gives_live_ones_the_grace(
    stream_hub, autojump_clock
) -> None:
    gate = Gate()
    live = await stream_hub.start(Script().wait(gate), key="k")
    queued_script = Script().emit()
    queued = await stream_hub.start(queued_script, key="k", on_conflict="enqueue")
    assert queued.status == RunStatus.QUEUED
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_hub.drain, 100.0)
        info = await queued.wait()
        assert (trio.current_time(), info.status, info.reason) == (0.0, RunStatus.CANCELLED, "shutdown")
        assert info.started_at is None
        assert live.status == RunStatus.RUNNING  # the live run keeps its grace
        await trio.sleep(10)
        gate.release()
    assert ((await live.wait()).status, live.ended_at, trio.current_time()) == (RunStatus.DONE, 10.0, 10.0)
    assert not queued_script.started.is_set()


async def test_interrupt_also_cancels_runs_queued_for_the_key(stream_hub, autojump_clock) -> None:
    a = await stream_hub.start(Script().sleep(100), key="k")
    b = await stream_hub.start(Script().emit(), key="k", on_conflict="enqueue")
    c = await stream_hub.start(Script().emit(), key="k", on_conflict="interrupt")
    d = await stream_hub.start(Script().emit(), key="k", on_conflict="interrupt")
    infos = [await r.wait() for r in (a, b, c, d)]
    assert [(i.status, i.reason) for i in infos] == [
        (RunStatus.CANCELLED, "interrupted"),
        (RunStatus.CANCELLED, "interrupted"),
        (RunStatus.CANCELLED, "interrupted"),
        (RunStatus.DONE, None),
    ]
    assert [i.started_at for i in infos[1:3]] == [None, None]
    assert trio.current_time() == 0.0
    assert stream_hub.current("k", owner=None) is None


async def test_the_queue_behind_a_key_is_bounded(autojump_clock) -> None:
    async with open_hub(max_queued_per_key=2) as hub:
        await hub.start(Script().sleep(5), key="k")
        await hub.start(Script(), key="k", on_conflict="enqueue")
        await hub.start(Script(), key="k", on_conflict="enqueue")
        with pytest.raises(AtCapacity) as caught:
            await hub.start(Script(), key="k", on_conflict="enqueue")
        assert caught.value.limit == "max_queued_per_key"


async def test_rejected_starts_leave_no_trace(stream_hub, autojump_clock) -> None:
    gate = Gate()
    await stream_hub.start(Script().wait(gate), key="k", owner="ann")
    for _ in range(5):
        with pytest.raises(RunConflict):
            await stream_hub.start(Script(), key="k", owner="ann")
    stats = stream_hub.statistics()
    assert (stats.runs_started, stats.runs_running, stats.runs_queued) == (1, 1, 0)
    assert stream_hub._owner_live["ann"] == 1
    gate.release()


async def test_a_run_whose_turn_came_before_its_task_started_is_running(stream_hub, autojump_clock) -> None:
    # Trio schedules a batch of tasks in random order: sometimes the interrupted
    # run finalizes before the new run's drain task first runs, so its turn has
    # already come. It must still be marked running (it once stayed "queued").
    for attempt in range(40):
        old = await stream_hub.start(Script().wait(Gate()), key=f"k{attempt}")
        await trio.testing.wait_all_tasks_blocked()
        new = await stream_hub.start(Script().wait(Gate()), key=f"k{attempt}", on_conflict="interrupt")
        await trio.testing.wait_all_tasks_blocked()
        assert old.status is RunStatus.CANCELLED
        assert new.status is RunStatus.RUNNING, f"attempt {attempt}"
        assert new.started_at is not None
        await stream_hub.cancel(new.id)
