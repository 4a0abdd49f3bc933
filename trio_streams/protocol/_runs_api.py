"""What the runs API's handlers need from the application: :class:`RunsApi`.

``TrioStreams`` (:mod:`trio_streams.web`) provides it; a bare ASGI server,
or a test, can provide its own. The handlers get everything through it —
the hub, the caller's identity, the registered producers, limits, counters —
and never a framework's globals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Awaitable, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from ..runs._config import OnFinish
    from ..runs._hub import Hub
    from ..runs._run import OnConflict, OnDisconnect, RunContext, RunInfo
    from ._input_schema import InputSchema


class ProducerSpec(Protocol):
    """A producer the API can start by name (``RegisteredProducer``)."""

    @property
    def function(self) -> Callable[[RunContext], Awaitable[Any]]:
        """``function(ctx)``: the parsed input is ``ctx.input``."""
        ...

    @property
    def input_validator(self) -> InputSchema | None:
        """The input's JSON Schema, compiled (``None``: any input)."""
        ...

    @property
    def parse_input(self) -> Callable[[Any], Any] | None:
        """Converts the input once the schema accepted it."""
        ...

    @property
    def reserve(self) -> Callable[[Any], int] | None: ...

    @property
    def on_finish(self) -> OnFinish | None:
        """A hook for the producer's runs, called after the hub's own."""
        ...

    @property
    def on_conflict(self) -> OnConflict | None:
        """The runs' ``on_conflict`` when the request gives none."""
        ...

    @property
    def on_disconnect(self) -> OnDisconnect | None:
        """The runs' ``on_disconnect`` when the request gives none."""
        ...


class IdempotencyClaim(Protocol):
    """One request's hold on an ``Idempotency-Key``."""

    @property
    def run_id(self) -> str | None:
        """The run an earlier request with this key started, if any."""
        ...

    def started(self, run_id: str) -> None:
        """Record the run this request started."""
        ...


class IdempotencyStore(Protocol):
    """Remembers which run each ``(caller, Idempotency-Key)`` started."""

    def claim(
        self, caller: str | None, key: str, body: bytes
    ) -> AbstractAsyncContextManager[IdempotencyClaim]:
        """Hold ``key`` for this request (see ``IdempotencyKeys.claim``)."""
        ...


class RunsApi(Protocol):
    """The application the runs API's handlers serve (see the module docstring).

    Optional (looked up, not required): ``observe_delivery_lag(seconds)``,
    called by the event stream after each write that carries live events
    (``TrioStreams`` gives its ``sse_delivery_lag_seconds`` histogram).
    """

    #: Event streams being served now (a gauge the SSE handler keeps).
    sse_streams_open: int

    @property
    def auth(self) -> object | None:
        """``None`` with auth off (then documents omit ``owner`` and lists are everyone's)."""
        ...

    @property
    def url_prefix(self) -> str: ...

    @property
    def max_body(self) -> int: ...

    @property
    def cancel_wait_timeout(self) -> float: ...

    @property
    def heartbeat(self) -> float: ...

    @property
    def retry_ms(self) -> int: ...

    @property
    def producers(self) -> Mapping[str, ProducerSpec]: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    @property
    def counters(self) -> Counter[str]:
        """Counters for /metrics (``runs_started``, ``sse_streams``, ``error:<code>``)."""
        ...

    def caller(self, authorization: str | None) -> str | None:
        """The user of the request (``None`` with auth off); raises ``ApiError`` 401 to refuse."""
        ...

    def hub_for_reading(self) -> Hub:
        """The hub while it exists, else raises ``ApiError`` 503."""
        ...

    def hub_for_starting(self) -> Hub:
        """The hub while it accepts runs, else raises ``ApiError`` 503."""
        ...

    def may_read(self, info: RunInfo, caller: str | None) -> bool: ...
