"""``open_hub``: the hub's nurseries, its services, and its orderly shutdown.

See the theory of operation in ``_hub.py``.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from .._errors import TrioStreamsInternalError
from .._exception_groups import collapse, leaves, only_exceptions
from ..log._budget import MemoryBudget
from ..log._memory import MemoryStore
from ..log._store import SharedStore
from ._config import HubConfig
from ._hub import Hub
from ._timers import TimerQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..log._store import Store

logger = logging.getLogger("trio_streams")


def _raise_collapsed(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise a group's only real error as itself (see STYLE rule 11 and :func:`collapse`)."""
    sole = collapse(group)
    if sole is not None:
        raise sole
    if not only_exceptions(group):
        raise group  # a KeyboardInterrupt or SystemExit among them stays what it is
    errors = [exc for exc in leaves(group) if not isinstance(exc, trio.Cancelled)]
    raise TrioStreamsInternalError(f"{len(errors)} errors escaped the hub at once") from group


@asynccontextmanager
async def open_hub(
    store: Store | None = None,
    *,
    config: HubConfig | None = None,
    wall_clock: Callable[[], float] = time.time,
    **options: Any,
) -> AsyncIterator[Hub]:
    """Open a hub that owns its runs for the duration of the block.

    ``async with open_hub(MemoryStore(), grace_period=60) as hub: ...``

    Leaving the block cancels every live run (reason ``"hub_closed"``),
    waits until each has finalized (partial results saved, terminal events
    published), flushes the store, and only then returns.

    Args:
        store: where runs are persisted; a new :class:`MemoryStore` if omitted.
        config: a :class:`HubConfig`; ``options`` override its fields.
        wall_clock: the source of event timestamps and run times.
        **options: any :class:`HubConfig` field, e.g. ``grace_period=60``.

    Raises:
        TypeError: an unknown option.
        ValueError: an invalid option value.

    An exception raised in the block propagates as itself, not wrapped in an
    ``ExceptionGroup``; several at once raise :class:`TrioStreamsInternalError`.
    """
    unknown = set(options) - HubConfig.option_names()
    if unknown:
        raise TypeError(f"unknown hub option(s): {', '.join(sorted(unknown))}")
    config = HubConfig(**options) if config is None else replace(config, **options)
    store = MemoryStore() if store is None else store
    budget = MemoryBudget(
        config.max_memory,
        max_event_bytes=config.max_event_bytes,
        max_pending_bytes=config.max_pending_bytes,
    )
    store.use_memory_budget(budget)
    try:
        async with trio.open_nursery() as services:
            await store.start(services)
            timers = TimerQueue()
            await services.start(timers.run)
            try:
                async with trio.open_nursery() as runs:
                    hub = Hub(store, config, runs, timers, wall_clock, budget)
                    if isinstance(store, SharedStore):
                        store.set_cancel_handler(hub._cancel_from_store)
                    try:
                        yield hub
                    finally:
                        hub._close()
            finally:
                with trio.move_on_after(config.store_timeout, shield=True) as flush_scope:
                    await store.aclose()
                if flush_scope.cancelled_caught:
                    logger.error("the store did not flush within %ss at shutdown", config.store_timeout)
                services.cancel_scope.cancel(reason="hub closed")
    except BaseExceptionGroup as group:
        _raise_collapsed(group)


__all__ = ["open_hub"]
