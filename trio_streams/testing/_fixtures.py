"""The plugin's fixtures: ``stream_hub`` and the two fixtures that configure it.

They are registered where ``trio_streams.testing`` is a plugin (opt-in:
``pytest_plugins = ["trio_streams.testing"]``). :mod:`._deprecated` wraps
the same code for the old entry-point loading, with a warning.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from ..runs._open_hub import open_hub
from ._deadline import DEFAULT_DEADLINE, virtual_deadline

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..runs._hub import Hub

#: The default ``stream_hub_deadline``: one day of trio time.
DEFAULT_STREAM_HUB_DEADLINE = DEFAULT_DEADLINE


@asynccontextmanager
async def open_stream_hub(
    clock: trio.testing.MockClock, options: dict[str, Any], deadline: float | None
) -> AsyncIterator[Hub]:
    """What ``stream_hub`` yields: a hub with ``options`` under ``deadline`` of trio time.

    Raises:
        RuntimeError: the running clock is not ``clock`` (the test did not
            take ``autojump_clock``).
        trio.TooSlowError: the block still runs ``deadline`` seconds after it
            began, with where every task waits.
    """
    if trio.lowlevel.current_clock() is not clock:
        raise RuntimeError(
            "a test using stream_hub must also take the autojump_clock fixture as an argument "
            "(pytest-trio picks the clock from the test's own arguments)"
        )
    # pytest-trio supports a fixture that yields inside a nursery: when the
    # deadline passes it cancels the test and throws Cancelled in at the yield.
    async with (
        virtual_deadline(deadline, what="stream_hub_deadline: override the fixture for longer"),
        open_hub(wall_clock=lambda: trio.current_time(), **options) as hub,
    ):
        yield hub


@pytest.fixture
def stream_hub_options() -> dict[str, Any]:
    """Options for ``stream_hub`` (any ``HubConfig`` field). Override it in your tests."""
    return {}


@pytest.fixture
def stream_hub_deadline() -> float | None:
    """Seconds of trio time a test using ``stream_hub`` may run; ``None``: no limit.

    Override it like ``stream_hub_options`` (a fixture of the same name in a
    module or ``conftest.py``), or for one test with
    ``@pytest.mark.parametrize("stream_hub_deadline", [7 * 86400.0])``.
    """
    return DEFAULT_STREAM_HUB_DEADLINE


@pytest.fixture
async def stream_hub(
    autojump_clock: trio.testing.MockClock,
    stream_hub_options: dict[str, Any],
    stream_hub_deadline: float | None,
) -> AsyncIterator[Hub]:
    """A hub on a ``MockClock(autojump_threshold=0)`` with a fresh ``MemoryStore``.

    Time advances only when every task is blocked, so a 3-minute grace period
    takes no real time and ``trio.current_time()`` is exact. Event timestamps
    and run times use the trio clock too, so they are exact as well.

    The test itself must also take ``autojump_clock`` as an argument:
    pytest-trio chooses the clock from the test's own arguments only.

    A test that is still running ``stream_hub_deadline`` seconds of trio time
    after the hub opened (one day by default) fails with
    :class:`trio.TooSlowError` saying where every task was waiting, instead
    of hanging: under the autojump clock a lost wake-up jumps straight to the
    deadline, so it fails in (real) milliseconds.
    """
    async with open_stream_hub(autojump_clock, stream_hub_options, stream_hub_deadline) as hub:
        yield hub
