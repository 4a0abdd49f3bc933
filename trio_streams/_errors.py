"""The exception hierarchy.

Everything trio_streams raises on purpose derives from :class:`StreamError`.
Where trio already has a word for the situation we reuse it as a second base:
a closed hub is a :class:`trio.ClosedResourceError` (we closed it).
"""

from __future__ import annotations

import trio


class StreamError(Exception):
    """Base class of every error trio_streams raises on purpose."""


class RunNotFound(StreamError, LookupError):
    """No run with this id is known to the hub or its store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunConflict(StreamError):
    """A run of the same owner with the same key is live and the conflict
    policy is ``reject`` (keys are per owner: another owner's run never conflicts).

    Attributes:
        key: the contested key.
        live_run_id: the id of the run that holds the key (the caller's own).
    """

    def __init__(self, key: str, live_run_id: str) -> None:
        super().__init__(f"key {key!r} is held by live run {live_run_id!r}")
        self.key = key
        self.live_run_id = live_run_id


class KeysUnavailable(StreamError):
    """A keyed start could not claim its key: the shared store is unreachable
    (HTTP 503, ``Retry-After``). Unkeyed runs still start. See
    ``HubConfig.cross_instance_keys``."""


class AtCapacity(StreamError):
    """A configured limit refuses a new run (HTTP 429).

    Attributes:
        limit: which limit: ``"max_runs"``, ``"max_live_runs_per_owner"``,
            ``"max_queued_per_key"`` or ``"max_memory"`` (the memory budget).
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class RunClosed(StreamError, trio.ClosedResourceError):
    """A producer tried to emit into a run that has already finished.

    This is how a stale producer is kept from writing into anything: its
    context is bound to its own run, and that run refuses events once its
    terminal event is published.
    """


class HubClosed(StreamError, trio.ClosedResourceError):
    """The hub is shutting down or closed and accepts no new runs."""


class RunFailed(StreamError):
    """Raise this from a producer to end the run with a message you chose.

    Any other exception ends the run with a generic message (the traceback is
    logged, never sent to clients); this one's ``message`` and ``code`` are
    published as they are, so they must be safe to show to the user.
    """

    def __init__(self, message: str, *, code: str = "run_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class StoreOverflow(StreamError):
    """The store's write buffer is full: the run must fail loudly."""


class TrioStreamsInternalError(StreamError):
    """Several errors escaped at once; the original group is ``__cause__``."""
