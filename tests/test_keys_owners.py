"""Keys belong to their owner: (owner, key) is the key space (memory hub, MockClock)."""

from __future__ import annotations

import pytest
import trio

from trio_streams import AtCapacity, RunConflict, RunStatus, open_hub
from trio_streams.testing import Gate, Script


async def test_another_owners_run_never_conflicts_interrupts_or_queues(autojump_clock) -> None:
    async with open_hub(max_queued_per_key=2) as hub:
        gate = Gate()
        alice = await hub.start(Script().wait(gate), key="conv", owner="alice")
        bob_reject = await hub.start(Script().emit(), key="conv", owner="bob", on_conflict="reject")
        assert bob_reject.status is RunStatus.RUNNING
        await bob_reject.wait()
        bob_interrupt = await hub.start(Script().emit(), key="conv", owner="bob", on_conflict="interrupt")
        assert bob_interrupt.status is RunStatus.RUNNING
        await bob_interrupt.wait()
        # More enqueues than alice's queue may hold: none lands in it.
        for _ in range(3):
            run = await hub.start(Script().emit(), key="conv", owner="bob", on_conflict="enqueue")
            await run.wait()
        assert alice.status is RunStatus.RUNNING
        assert alice.reason is None
        # Alice's own queue is untouched by bob's starts: two still fit.
        queued = [
            await hub.start(Script(), key="conv", owner="alice", on_conflict="enqueue") for _ in range(2)
        ]
        assert [run.status for run in queued] == [RunStatus.QUEUED, RunStatus.QUEUED]
        with pytest.raises(AtCapacity):
            await hub.start(Script(), key="conv", owner="alice", on_conflict="enqueue")
        with pytest.raises(RunConflict) as caught:
            await hub.start(Script(), key="conv", owner="alice", on_conflict="reject")
        assert caught.value.live_run_id == alice.id  # her own run: fine to name
        gate.release()
        for run in (alice, *queued):
            assert (await run.wait()).status is RunStatus.DONE
    assert trio.current_time() == 0.0


@pytest.mark.parametrize(("first", "second"), [(None, ""), (None, "None"), ("", "None"), ("a", "a ")])
async def test_owners_that_print_alike_are_different_owners(first, second, autojump_clock) -> None:
    async with open_hub() as hub:
        gate = Gate()
        held = await hub.start(Script().wait(gate), key="k", owner=first)
        other = await hub.start(Script().emit(), key="k", owner=second, on_conflict="reject")
        assert (await other.wait()).status is RunStatus.DONE
        assert hub.current("k", owner=first) is held
        assert hub.current("k", owner=second) is None
        gate.release()
        await held.wait()
        assert hub.current("k", owner=first) is None


async def test_current_without_owner_is_deprecated_but_still_answers(autojump_clock) -> None:
    async with open_hub() as hub:
        gate = Gate()
        alice = await hub.start(Script().wait(gate), key="k", owner="alice")
        with pytest.deprecated_call():
            assert hub.current("k") is alice  # one owner holds it: the old answer
        with pytest.deprecated_call():
            assert hub.current("other") is None
        bob = await hub.start(Script().wait(gate), key="k", owner="bob")
        with pytest.deprecated_call(), pytest.raises(LookupError, match="pass owner="):
            hub.current("k")
        assert hub.current("k", owner="bob") is bob
        gate.release()
        await alice.wait()
        await bob.wait()


async def test_a_key_must_be_a_string(autojump_clock) -> None:
    async with open_hub() as hub:
        with pytest.raises(TypeError, match="key must be a string"):
            await hub.start(Script(), key=42)  # type: ignore[arg-type]
