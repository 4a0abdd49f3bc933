"""Test your app's abort paths in milliseconds.

A pytest plugin, opt-in: ``pytest_plugins = ["trio_streams.testing"]`` in
your top-level ``conftest.py`` (or ``-p trio_streams.testing``), with
pytest-trio (``trio_mode = true``); and tools for deterministic tests of
code built on trio_streams:

- the ``stream_hub`` fixture: a hub on ``MockClock(autojump_threshold=0)``,
  with options from the overridable ``stream_hub_options`` fixture, under a
  deadline of trio time from the overridable ``stream_hub_deadline``
  fixture (one day; ``None`` for none), so a test that would hang (a lost
  wake-up) fails at once with ``trio.TooSlowError`` saying where every task
  was waiting;
- :class:`Script`: a scripted producer -- emit at given times, fail at a
  step, block at a :class:`Gate` until released, take time or ignore
  cancellation during cleanup -- that records what happened to it, when;
- :func:`collect` and the ``assert_*`` helpers for event sequences.

Example::

    async def test_stop_saves_partial(stream_hub, autojump_clock):
        script = Script().emit_many(3, every=1.0).wait(gate := Gate())
        run = await stream_hub.start(script)
        await gate.reached()
        await stream_hub.cancel(run.id)
        info = await stream_hub.wait(run.id)
        assert info.status == "cancelled" and trio.current_time() == 3
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._errors import RunFailed
from ..log._events import Event, Gap, Item
from ..runs._run import RunContext
from ._deadline import virtual_deadline, where_tasks_wait
from ._fixtures import DEFAULT_STREAM_HUB_DEADLINE as DEFAULT_STREAM_HUB_DEADLINE
from ._fixtures import stream_hub as stream_hub
from ._fixtures import stream_hub_deadline as stream_hub_deadline
from ._fixtures import stream_hub_options as stream_hub_options

if TYPE_CHECKING:
    from ..runs._hub import Hub


class Gate:
    """A point where a scripted producer blocks until the test releases it."""

    def __init__(self) -> None:
        self._arrived = trio.Event()
        self._released = trio.Event()

    @property
    def is_released(self) -> bool:
        """True once :meth:`release` was called."""
        return self._released.is_set()

    async def reached(self) -> None:
        """Wait until a producer is blocked at (or has passed) this gate."""
        await self._arrived.wait()

    def release(self) -> None:
        """Let the producer through (idempotent)."""
        self._released.set()

    async def _pass(self) -> None:
        self._arrived.set()
        await self._released.wait()


Step = Callable[[RunContext, "Script"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Happening:
    """One thing a :class:`Script` recorded: what, and when (trio clock)."""

    time: float
    what: str


class Script:
    """A scripted producer: chain steps, then ``await hub.start(script)``.

    Each builder method returns the script. Calling the script runs the steps
    in order as a producer function; its result is the last :meth:`result`
    value. Everything it does is recorded in :attr:`log` with the trio time.

    After cancellation it runs its :meth:`on_cancel` behaviour: ignore the
    cancel for a while (a producer slow to stop), save a partial result, and
    spend time in cleanup shielded under the run's finalize deadline.
    """

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self._ignore_cancel_for = 0.0
        self._cleanup_time = 0.0
        self._save_on_cancel: Any = None
        #: What happened, in order.
        self.log: list[Happening] = []
        #: Trio time the producer saw its cancellation, if it did.
        self.cancelled_at: float | None = None
        #: Trio time its cleanup finished, if it ran to the end.
        self.cleanup_done_at: float | None = None
        #: Events this script emitted.
        self.emitted: list[Event] = []
        self.started = trio.Event()
        self.finished = trio.Event()

    def _note(self, what: str) -> None:
        self.log.append(Happening(trio.current_time(), what))

    def _add(self, step: Step) -> Script:
        self._steps.append(step)
        return self

    def emit(self, type: str = "token", data: Any = None, *, at: float | None = None) -> Script:
        """Emit one event, at trio time ``at`` if given (else at once)."""

        async def step(ctx: RunContext, script: Script) -> None:
            if at is not None:
                await trio.sleep_until(at)
            script.emitted.append(await ctx.emit(type, data))

        return self._add(step)

    def emit_many(self, count: int, type: str = "token", *, every: float = 0.0, text: str = "t") -> Script:
        """Emit ``count`` events with data ``f"{text}{i}"``, ``every`` seconds apart.

        Each also appends its data to the run's result (a string), so a
        cancelled run has the text so far as its partial result.
        """

        async def step(ctx: RunContext, script: Script) -> None:
            for i in range(count):
                if i and every:
                    await trio.sleep(every)
                data = f"{text}{i}"
                script.emitted.append(await ctx.emit(type, data))
                ctx.result = (ctx.result or "") + data

        return self._add(step)

    def sleep(self, seconds: float) -> Script:
        """Sleep (a cancellable checkpoint)."""

        async def step(ctx: RunContext, script: Script) -> None:
            await trio.sleep(seconds)

        return self._add(step)

    def wait(self, gate: Gate) -> Script:
        """Block at ``gate`` until the test releases it."""

        async def step(ctx: RunContext, script: Script) -> None:
            script._note("blocked")
            await gate._pass()
            script._note("released")

        return self._add(step)

    def await_input(self, gate: Gate) -> Script:
        """Block at ``gate`` marked as awaiting human input (watchdog uses input_timeout)."""

        async def step(ctx: RunContext, script: Script) -> None:
            with ctx.awaiting_input():
                script._note("awaiting input")
                await gate._pass()
            script._note("input received")

        return self._add(step)

    def fail(self, message: str = "scripted failure", *, safe: bool = False) -> Script:
        """Raise here: :class:`RunFailed` (its message is published) if ``safe``,
        else a ``RuntimeError`` (published only as a generic message)."""

        async def step(ctx: RunContext, script: Script) -> None:
            script._note("failing")
            if safe:
                raise RunFailed(message)
            raise RuntimeError(message)

        return self._add(step)

    def result(self, value: Any) -> Script:
        """Set the run's result to ``value`` (the partial result if cancelled later)."""

        async def step(ctx: RunContext, script: Script) -> None:
            ctx.result = value

        return self._add(step)

    def on_cancel(self, *, ignore_for: float = 0.0, cleanup_time: float = 0.0, save: Any = None) -> Script:
        """What to do when cancelled.

        Args:
            ignore_for: keep running, shielded, this long first (a producer
                that is slow to honour a cancel).
            cleanup_time: then spend this long in cleanup inside
                ``ctx.cleanup()`` (shielded, under the finalize deadline).
            save: then set this as the result (the partial result).
        """
        self._ignore_cancel_for = ignore_for
        self._cleanup_time = cleanup_time
        self._save_on_cancel = save
        return self

    async def __call__(self, ctx: RunContext) -> Any:
        self.started.set()
        self._note("started")
        try:
            for step in self._steps:
                await step(ctx, self)
            self._note("done")
            return ctx.result
        except trio.Cancelled:
            self.cancelled_at = trio.current_time()
            self._note("cancelled")
            if self._ignore_cancel_for:
                with trio.CancelScope(shield=True):
                    await trio.sleep(self._ignore_cancel_for)
                self._note("stopped ignoring cancel")
            with ctx.cleanup():
                if self._cleanup_time:
                    await trio.sleep(self._cleanup_time)
                if self._save_on_cancel is not None:
                    ctx.result = self._save_on_cancel
                self.cleanup_done_at = trio.current_time()
                self._note("cleanup done")
            raise
        finally:
            self.finished.set()


async def collect(hub: Hub, run_id: str, *, after: int = 0) -> list[Item]:
    """Subscribe and return every item until the run's end (gaps included)."""
    async with hub.subscribe(run_id, after=after) as subscription:
        return [item async for item in subscription]


def events_of(items: Iterable[Item]) -> list[Event]:
    """The events among ``items`` (drops gaps and heartbeats)."""
    return [item for item in items if isinstance(item, Event)]


def types_of(items: Iterable[Item]) -> list[str]:
    """The ``type`` of each item, in order."""
    return [item.type for item in items]


def assert_well_formed(items: Sequence[Item], *, after: int = 0) -> None:
    """Assert the invariants of one subscriber's stream.

    Seqs start right after ``after`` and increase by one, except across a
    :class:`Gap`, which must account exactly for what it skips; no event
    twice; exactly one terminal event, and it is last.
    """
    cursor = after
    terminals = 0
    for index, item in enumerate(items):
        if isinstance(item, Gap):
            assert item.first_available == cursor + item.missed + 1, (
                f"gap {item} does not follow seq {cursor}"
            )
            assert item.missed > 0, f"empty gap {item}"
            cursor = item.first_available - 1
        elif isinstance(item, Event):
            assert item.seq == cursor + 1, f"item {index}: expected seq {cursor + 1}, got {item.seq}"
            cursor = item.seq
            if item.terminal:
                terminals += 1
                assert index == len(items) - 1, f"terminal {item.type} at {index} is not last"
    assert terminals == 1, f"expected exactly one terminal event, got {terminals}"


__all__ = [
    "DEFAULT_STREAM_HUB_DEADLINE",
    "Gate",
    "Happening",
    "Script",
    "assert_well_formed",
    "collect",
    "events_of",
    "stream_hub",
    "stream_hub_deadline",
    "stream_hub_options",
    "types_of",
    "virtual_deadline",
    "where_tasks_wait",
]
