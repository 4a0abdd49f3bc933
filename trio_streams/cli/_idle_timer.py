"""A kept-alive connection's idle timer as one task whose deadline moves.

Hypercorn's trio ``TCPServer`` closes a connection idle for
``keep_alive_timeout`` (at once when the server stops) with a
``TrioSingleTask``: every request stops its task (a lock, a cancelled task)
and every response's end starts a new one (a lock, ``nursery.start`` and its
scheduling rounds) -- ~8 % of the server's samples for an append (py-spy,
benchmarks/RESULTS.md). :class:`IdleTimer` keeps the same promises with one
task for the connection's life and a cancel scope whose deadline each
request moves (a request lasting over :data:`BUSY_CHECK` ends the task, so
that an event stream's connection does not hold one).
:class:`~._one_write.CorkingTCPServer` uses it in place of Hypercorn's (it
has the ``SingleTask`` interface Hypercorn calls).

The promises (Hypercorn's ``TCPServer._idle_timeout``):

- idle (no request in progress) for ``keep_alive_timeout``: the connection
  is closed;
- the server stopping (``terminated``): an idle connection is closed at once,
  a busy one as soon as its request ends;
- the close itself is shielded, as Hypercorn's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import Event, TaskGroup

#: Seconds a request may last before the timer's task ends until the
#: connection is idle again (short requests keep the one task; a stream
#: does not hold a task for its length).
BUSY_CHECK = 1.0


class IdleTimer:
    """One connection's idle timer (see the module docstring).

    Args:
        timeout: seconds idle before the connection is closed (``keep_alive_timeout``).
        terminated: set when the server stops (Hypercorn's ``context.terminated``).
        close: closes the connection (Hypercorn's ``TCPServer._initiate_server_close``).
    """

    __slots__ = ("_busy", "_close", "_deadline", "_ended", "_scope", "_started", "_terminated", "_timeout")

    def __init__(self, timeout: float, terminated: Event, close: Callable[[], Awaitable[None]]) -> None:
        self._timeout = timeout
        self._terminated = terminated
        self._close = close
        self._busy = False
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None
        self._started = False
        self._ended = False

    async def restart(self, task_group: TaskGroup, action: object) -> None:
        """The connection is idle from now (Hypercorn's ``SingleTask.restart``; no checkpoint).

        The first call starts the timer's task in ``task_group``. ``action``
        (Hypercorn's ``_idle_timeout``) is not called: this class does what it does.
        """
        self._busy = False
        self._move(-math.inf if self._terminated.is_set() else trio.current_time() + self._timeout)
        if not self._started:
            self._started = True
            task_group.spawn(self._watch)

    async def stop(self) -> None:
        """A request is in progress: no timeout until it ends (Hypercorn's ``SingleTask.stop``).

        Still busy :data:`BUSY_CHECK` later (an event stream, a long-poll), the
        task ends, holding nothing for the request's length; the next
        ``restart`` starts another.
        """
        self._busy = True
        self._move(trio.current_time() + BUSY_CHECK)

    def end(self) -> None:
        """The connection is over (its reading ended): the task returns without closing anything."""
        self._ended = True
        if self._scope is not None:
            self._scope.cancel(reason="connection over")

    def _move(self, deadline: float) -> None:
        self._deadline = deadline
        if self._scope is not None:
            self._scope.deadline = deadline

    async def _watch(self) -> None:
        """Until the connection is idle past the deadline, or idle when the server stopped; then close it.

        Cancellation: ends it (the connection's task group is going).
        """
        terminated = self._terminated
        while not self._over():
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                if terminated.is_set():
                    await trio.sleep_forever()  # busy at shutdown: until its request ends
                else:
                    await terminated.wait()
            self._scope = None
            if self._over():
                return
            if self._busy:
                if scope.cancelled_caught:  # busy for long: no task while it lasts
                    self._started = False
                    return
                continue  # the server stopped: close once the request ends
            if terminated.is_set() or trio.current_time() >= self._deadline:
                # Idle past the deadline, or idle when the server stopped.
                with trio.CancelScope(shield=True):
                    await self._close()
                return
            # (Woken by a deadline that a restart has moved since: wait for the new one.)

    def _over(self) -> bool:
        return self._ended
