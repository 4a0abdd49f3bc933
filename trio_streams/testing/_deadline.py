"""A deadline of trio time for tests, that says where everything was stuck.

Under ``MockClock(autojump_threshold=0)`` a test that waits for something
that will never come (a lost wake-up) hangs forever if nothing else has a
deadline. With one, the clock jumps straight to it and the test fails in
real milliseconds. ``trio.fail_after`` would only say "too slow" at the line
of the ``with``; :func:`virtual_deadline` looks first, while every task is
still parked, and puts where each one waits into the ``TooSlowError``.
"""

from __future__ import annotations

import traceback
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: The default deadline: one day of trio time. Under the autojump clock it
#: costs no real time, and it is beyond any hub timer a test is likely to wait
#: for (grace periods, input timeouts, max age).
DEFAULT_DEADLINE = 24 * 3600.0

#: Top-level modules whose frames say nothing about the code under test.
_MACHINERY = frozenset({"trio", "pytest_trio", "contextlib", "outcome"})


def where_tasks_wait() -> str:
    """Where every other task of this trio run is waiting, as traceback-style text.

    For a test that hangs: a lost wake-up shows up as a reader parked with
    nothing left to wake it. Frames of trio's and pytest-trio's own machinery
    are left out.
    """
    out: list[str] = []
    me = trio.lowlevel.current_task()

    def visit(task: trio.lowlevel.Task) -> None:
        frames = (
            []
            if task is me
            else [
                (frame, line)
                for frame, line in task.iter_await_frames()
                if frame.f_globals.get("__name__", "").partition(".")[0] not in _MACHINERY
            ]
        )
        if frames:
            out.append(f"task {task.name!r}:\n")
            out.extend(traceback.StackSummary.extract(frames).format())
        for nursery in task.child_nurseries:
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                visit(child)

    root = trio.lowlevel.current_root_task()
    if root is not None:  # None only while the run is starting or ending
        visit(root)
    return "".join(out)


async def _watchdog(deadline: float, expired: trio.CancelScope, where: list[str]) -> None:
    await trio.sleep_until(deadline)
    # Look before cancelling: once cancelled, every task unwinds.
    where.append(where_tasks_wait())
    expired.cancel(reason="virtual deadline")


@asynccontextmanager
async def virtual_deadline(
    seconds: float | None = DEFAULT_DEADLINE, *, what: str = ""
) -> AsyncIterator[None]:
    """Fail the block with :class:`trio.TooSlowError` once ``seconds`` of trio
    time have passed (``None``: never), saying where every task was waiting.

    An exception raised in the block propagates as itself (not in an
    ``ExceptionGroup``).

    Args:
        seconds: the deadline, from now, in trio time.
        what: the name of the limit, for the message (e.g. a fixture to override).

    Raises:
        TooSlowError: the deadline passed.
        ValueError: ``seconds`` is not positive.

    Cancellation: a cancel from outside propagates as ``Cancelled``.
    """
    if seconds is None:
        yield
        return
    if not seconds > 0:
        raise ValueError(f"the deadline must be positive or None, not {seconds!r}")
    deadline = trio.current_time() + seconds
    where: list[str] = []
    only: BaseException | None = None
    try:
        with trio.CancelScope() as expired:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watchdog, deadline, expired, where)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel(reason="block over")
    except BaseExceptionGroup as group:
        # The nursery wrapped what the block raised (the watchdog raises
        # nothing): give back exactly one as itself, never unwrap several.
        if len(group.exceptions) != 1:
            raise
        only = group.exceptions[0]
    if only is not None:
        # Raised outside the ``except``: no group becomes its __context__, and
        # contextlib sees the very exception the block raised.
        raise only
    if expired.cancelled_caught:
        limit = f" ({what})" if what else ""
        raise trio.TooSlowError(
            f"still running after {seconds} s of trio time{limit}: a lost wake-up?"
            " Where each task was waiting:\n" + (where[0] if where else "(unknown)\n")
        )
