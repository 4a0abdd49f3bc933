"""The order of simultaneous wake-ups on the mock clock, as README documents it
("Timers at the same instant"): this keeps the documentation from going stale.

- Tasks whose deadlines are the same instant wake in the same batch, and trio
  runs a batch in either order (on purpose): a test that sleeps until a
  producer's emit time may run before or after the emit.
- ``await trio.testing.wait_all_tasks_blocked()`` after waking lets every
  other task woken at that instant run until it blocks again, and the
  autojump clock does not move meanwhile: then the test sees exactly what
  happened at that instant, at that instant.
"""

from __future__ import annotations

import trio
import trio.testing

from trio_streams.testing import Script


async def test_after_wait_all_tasks_blocked_the_instant_is_complete(stream_hub, autojump_clock):
    run = await stream_hub.start(Script().emit("a", at=3.0).emit("b", at=5.0))
    await trio.sleep_until(3.0)
    assert run.last_seq in (0, 1)  # the emit at 3 may not have run yet: same batch
    await trio.testing.wait_all_tasks_blocked()
    assert (run.last_seq, trio.current_time()) == (1, 3.0)  # it has; the clock stayed at 3
    await trio.sleep_until(5.0)
    await trio.testing.wait_all_tasks_blocked()
    assert (run.last_seq, trio.current_time()) == (3, 5.0)  # "b" and the terminal "done"


def test_simultaneous_sleepers_wake_in_either_order():
    """Two tasks sleeping to the same instant: over 64 runs, both orders happen
    (trio reverses a batch half the time; all 64 alike would be a 1 in 2**63 event)."""

    async def one_run() -> tuple[str, ...]:
        order: list[str] = []

        async def sleeper(name: str) -> None:
            await trio.sleep_until(1.0)
            order.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, "producer")
            nursery.start_soon(sleeper, "test")
        assert trio.current_time() == 1.0
        return tuple(order)

    seen = {trio.run(one_run, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in range(64)}
    assert seen == {("producer", "test"), ("test", "producer")}
