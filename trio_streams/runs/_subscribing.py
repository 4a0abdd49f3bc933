"""``Hub.subscribe``'s context manager, as a class: what a follower holds while it follows.

An ``@asynccontextmanager`` holds, for as long as its block runs, its
``_AsyncGeneratorContextManager`` (with a dict of its attributes), the
generator and its frame, and the generator's entry in trio's weak set of
async generators: ~0.75 KB that every open run event stream held for its
whole life (benchmarks/RESULTS.md, issue 14). :class:`Subscribing` does the
same work in ``__aenter__`` and ``__aexit__``, with its slots only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .._errors import StreamError
from ._retention import attach, detach
from ._subscription import Subscription

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ..log._store import Store
    from ._hub_state import HubState
    from ._remote import Mirrors
    from ._run import Run, RunInfo


class RunNotLive(StreamError):
    """The store says the run is still running, but no hub here drains it."""


class _Hub(Protocol):
    """What of a :class:`~._hub.Hub` subscribing uses (its module imports this one)."""

    _runs: dict[str, Run]
    _mirrors: Mirrors | None
    _state: HubState
    store: Store

    async def get_info(self, run_id: str) -> RunInfo: ...


class Subscribing:
    """``async with hub.subscribe(run_id, after=, heartbeat=) as subscription`` (see ``Hub.subscribe``).

    Entering raises what ``Hub.subscribe`` documents; leaving closes the
    subscription and stops counting it as a subscriber (no checkpoint for a
    run held here; a run followed through its mirror leaves the mirror's way).
    Enter it once.
    """

    __slots__ = ("_after", "_heartbeat", "_hub", "_mirrored", "_run", "_run_id", "_subscription")

    def __init__(self, hub: _Hub, run_id: str, after: int, heartbeat: float | None) -> None:
        self._hub = hub
        self._run_id = run_id
        self._after = after
        self._heartbeat = heartbeat
        self._run: Run | None = None  # attached: a run of this hub's
        self._subscription: Subscription | None = None
        self._mirrored: AbstractAsyncContextManager[Subscription] | None = None

    async def __aenter__(self) -> Subscription:
        hub, run_id, after, heartbeat = self._hub, self._run_id, self._after, self._heartbeat
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        run = hub._runs.get(run_id)
        if run is None:
            info = await hub.get_info(run_id)
            if not info.status.finished:
                mirrors = hub._mirrors
                if mirrors is None:
                    raise RunNotLive(f"run {run_id} is running elsewhere")
                if after > info.last_seq:
                    raise ValueError(f"after={after} is beyond the run's last event ({info.last_seq})")
                mirrored = mirrors.subscribe(info, after=after, heartbeat=heartbeat)
                subscription = await mirrored.__aenter__()
                self._mirrored = mirrored
                return subscription
            if after > info.last_seq:
                raise ValueError(f"after={after} is beyond the run's last event ({info.last_seq})")
            return Subscription(
                run_id, run=None, stored=info, store=hub.store, after=after, heartbeat=heartbeat
            )
        if after > run.last_seq:
            raise ValueError(f"after={after} is beyond the run's last event ({run.last_seq})")
        subscription = Subscription(
            run_id, run=run, stored=None, store=hub.store, after=after, heartbeat=heartbeat
        )
        attach(run)
        self._run, self._subscription = run, subscription
        return subscription

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        mirrored, self._mirrored = self._mirrored, None
        if mirrored is not None:
            return await mirrored.__aexit__(exc_type, exc, tb)
        run, subscription = self._run, self._subscription
        self._run = self._subscription = None
        if run is not None and subscription is not None:
            subscription.close()
            detach(self._hub._state, run)
        return None
