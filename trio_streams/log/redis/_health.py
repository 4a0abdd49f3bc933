"""Whether Redis answers: fail fast while it does not, and a probe that notices it is back.

Theory of operation
-------------------
A Redis that is *frozen* (a stopped process, a partition that drops
packets) refuses nothing: every command waits out its whole
``stream_timeout``. Without a memory of that, each request pays the
timeout again, and some pay it twice or three times (a keyed start
claims, then withdraws; coredis used to retry a timed-out command). One
:class:`RedisHealth` per connection (both stores on it share it) is that
memory. Every command and pipeline runs through :meth:`RedisHealth.run`:

- *healthy* (the start): commands go out;
- a command times out (coredis's ``stream_timeout``, or a connection
  attempt that timed out), or its caller gave up on it after it went
  unanswered for half its stream timeout (the hub's ``store_timeout`` may
  fire first): the connection turns *unhealthy*. One WARNING line says
  so; every command in flight fails at once with :class:`RedisUnavailable`
  (the stores answer 503 with ``Retry-After``), and so does every later one,
  without being sent;
- meanwhile the probe (:meth:`RedisHealth.probe`, a task in the
  connection's nursery) PINGs, each attempt bounded by ``probe_timeout``,
  backing off from ``probe_min`` to ``probe_max``; the first answer makes
  the connection healthy again (one WARNING line).

A refused connection (Redis down, not frozen) already fails fast, so it
does not turn the connection unhealthy: the first request after a restart
is served. Blocking commands (``XREAD BLOCK``) wait on purpose (and
coredis bounds their wait by the stream timeout too), so their timeouts, and
giving up on one, say nothing about Redis; they fail fast like the others.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, NoReturn, TypeVar

import coredis
import trio

from ..._errors import StreamError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

logger = logging.getLogger("trio_streams.redis")

R = TypeVar("R")

#: Set in the probe's task: its PING goes out while the connection is unhealthy.
_PROBING: ContextVar[bool] = ContextVar("trio_streams_redis_probing", default=False)


class RedisUnavailable(StreamError, coredis.exceptions.ConnectionError):
    """Redis could not be reached, stopped answering, or refused us (wrong password, TLS, ...).

    The one error the Redis layer raises for an unusable Redis; the stores
    answer it with 503 and ``Retry-After``. It is a
    ``coredis.exceptions.ConnectionError`` too, so code that catches
    coredis's errors catches it.
    """


def timed_out(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a timeout: Redis did not answer."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, TimeoutError | trio.TooSlowError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class RedisHealth:
    """The health of one Redis connection (see the module docstring).

    Args:
        where: the server, for messages (credentials masked).
        stream_timeout: the commands' reply timeout; a command its caller
            gave up on after half of it counts as timed out.
        probe_timeout: bound on one probe PING.
        probe_min, probe_max: the probe's delays, doubling from one to the other.

    Attributes:
        healthy: False from a timeout until the probe sees Redis answer.
        outages: times the connection turned unhealthy.
        last_error: why it last did (``None`` while healthy).
    """

    def __init__(
        self,
        where: str,
        *,
        stream_timeout: float,
        probe_timeout: float = 1.0,
        probe_min: float = 0.05,
        probe_max: float = 1.0,
    ) -> None:
        self.where = where
        self.healthy = True
        self.outages = 0
        self.last_error: str | None = None
        self._slow_after = stream_timeout / 2
        self._probe_timeout = min(probe_timeout, stream_timeout)
        self._probe_delays = (probe_min, probe_max)
        self._since = 0.0
        #: The commands in flight: cancelled when the connection turns unhealthy.
        self._in_flight: set[trio.CancelScope] = set()
        self._failed = trio.Event()

    def unavailable(self) -> RedisUnavailable:
        """The error a request gets while the connection is unhealthy."""
        return RedisUnavailable(f"redis at {self.where} is not answering ({self.last_error}); retry shortly")

    def check(self) -> None:
        """Raise at once while the connection is unhealthy (the probe excepted).

        Raises:
            RedisUnavailable: the connection is unhealthy.
        """
        if not self.healthy and not _PROBING.get():
            raise self.unavailable()

    @contextmanager
    def exempt(self) -> Iterator[None]:
        """Commands in the block neither fail fast nor change the health (the
        start's own checks, with their own deadline and messages)."""
        token = _PROBING.set(True)
        try:
            yield
        finally:
            _PROBING.reset(token)

    @contextmanager
    def until_unhealthy(self) -> Iterator[trio.CancelScope]:
        """A cancel scope cancelled when the connection turns unhealthy (at
        once if it is): for a wait that is pointless without Redis."""
        scope = trio.CancelScope()
        if not self.healthy:
            scope.cancel(reason="redis is not answering")
        self._in_flight.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._in_flight.discard(scope)

    def failed(self, reason: str) -> RedisUnavailable:
        """Turn the connection unhealthy (once: later calls change nothing):
        log one line, fail the commands in flight, wake the probe.

        Returns:
            The error to raise.
        """
        if self.healthy:
            self.healthy = False
            self.outages += 1
            self.last_error = reason
            self._since = trio.current_time()
            logger.warning(
                "redis at %s stopped answering (%s): requests that need it fail fast until it answers again",
                self.where,
                reason,
            )
            for scope in self._in_flight:
                scope.cancel(reason="redis stopped answering")
            self._failed.set()
        return self.unavailable()

    def _recovered(self) -> None:
        self.healthy = True
        self.last_error = None
        self._failed = trio.Event()
        logger.warning(
            "redis at %s answers again (after %.1fs)", self.where, trio.current_time() - self._since
        )

    async def run(self, call: Callable[[], Awaitable[R]], *, blocking: bool) -> R:
        """``await call()`` (one command or pipeline), failing fast while unhealthy.

        Raises:
            RedisUnavailable: the connection is (or turns) unhealthy, the
                command timed out, or the connection was lost or refused.
            Exception: any other error of the command (e.g. a ``ResponseError``).

        Cancellation: the command is abandoned (coredis discards its reply);
            if it had waited half its stream timeout, the connection turns unhealthy.
        """
        self.check()
        probing = _PROBING.get()
        start = trio.current_time()
        scope = trio.CancelScope()
        if not probing:
            self._in_flight.add(scope)
        try:
            with scope:
                try:
                    return await call()
                except trio.Cancelled:
                    # State only, then re-raised: a caller's deadline that beat the stream timeout.
                    waited = trio.current_time() - start
                    if not (blocking or probing or scope.cancel_called) and waited >= self._slow_after:
                        self.failed(f"a command went unanswered for {waited:.1f}s")
                    raise
                except Exception as exc:
                    if probing or isinstance(exc, RedisUnavailable):
                        raise
                    # A blocking command's own wait may outlast the stream timeout
                    # (coredis gives it no more): its timeout says nothing about Redis.
                    if timed_out(exc) and not blocking:
                        raise self.failed(f"{type(exc).__name__}: {exc}") from exc
                    if isinstance(exc, coredis.exceptions.ConnectionError | TimeoutError):
                        # Lost or refused: fast already, so the health stays; one error type.
                        raise RedisUnavailable(
                            f"redis at {self.where} is unavailable: {type(exc).__name__}: {exc}"
                        ) from exc
                    raise
        finally:
            self._in_flight.discard(scope)
        # The scope caught its own cancellation: the connection turned unhealthy meanwhile.
        raise self.unavailable()

    async def probe(
        self,
        ping: Callable[[], Awaitable[object]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Whenever the connection turns unhealthy, ``ping()`` with backoff until
        Redis answers; then it is healthy again. Runs until cancelled.

        Cancellation: ends the probe (a PING in flight is abandoned).
        """
        task_status.started()
        probe_min, probe_max = self._probe_delays
        while True:
            await self._failed.wait()
            delay = probe_min
            while not self.healthy:
                await trio.sleep(delay)
                delay = min(delay * 2, probe_max)
                try:
                    with self.exempt(), trio.move_on_after(self._probe_timeout):
                        await ping()
                        self._recovered()
                except Exception as exc:
                    logger.debug("redis at %s: the probe failed: %s", self.where, exc)


class QuietTracebacks(logging.Filter):
    """On coredis's logger: its routine records are demoted to DEBUG and kept
    only when DEBUG is on, every other record passes as it is. Routine: a
    record with a traceback (a failed or lost connection: the connection's
    health logs one line of its own instead), and the retry of an EVALSHA that
    met ``NOSCRIPT`` (a script's first use on a server, or after a restart or
    ``SCRIPT FLUSH``: coredis loads the script and sends it again; at INFO it
    read "Retry attempt 1 due to error: No matching script")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        if record.exc_info is None and "error: No matching script" not in record.getMessage():
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_coredis_tracebacks() -> None:
    """Install :class:`QuietTracebacks` on the ``coredis`` logger (once)."""
    coredis_logger = logging.getLogger("coredis")
    if not any(isinstance(f, QuietTracebacks) for f in coredis_logger.filters):
        coredis_logger.addFilter(QuietTracebacks())


__all__ = ["QuietTracebacks", "RedisHealth", "RedisUnavailable", "quiet_coredis_tracebacks", "timed_out"]
