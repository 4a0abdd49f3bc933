"""Parking the current task with none of trio's coroutine frames held while it waits.

``await trio.lowlevel.wait_task_rescheduled(abort)`` holds, for as long as
the task is parked, the coroutine of ``wait_task_rescheduled`` and the
generator that yields to trio's run loop, whose frame keeps the message it
yielded: ~0.5 KB. ``trio.lowlevel.wait_readable(fd)`` adds three more
coroutines and its abort's closure: ~1.7 KB in all. An idle SSE connection
parks two tasks (its connection reading the socket, its response waiting for
the stream), each for the stream's whole life (benchmarks/RESULTS.md, issue 14).

:class:`Parking` is an awaitable that is also its own abort: awaited, it
yields trio's own message to the run loop and unwraps the outcome the task
is resumed with, as ``wait_task_rescheduled`` does, with nothing else held.
:func:`readable` registers the current task for a readable file descriptor
as ``wait_readable`` does, and returns the :class:`Parking` to await.

What this relies on in trio (tests/test_parking.py fails if it changes): a
task yields ``trio._core._traps.WaitTaskRescheduled(abort_func)`` to park,
and is resumed by ``send`` of an ``outcome.Outcome``; on Linux,
``wait_readable`` is ``EpollIOManager._epoll_wait(fd, "read_task")``: the
task in the fd's ``EpollWaiters.read_task``, then ``_update_registrations``.
Only trio releases in ``CHECKED_TRIO`` are trusted to be so; where either is not so
(another trio, another platform), :class:`Parking`
awaits ``wait_task_rescheduled`` and :func:`readable` returns ``None`` (the
caller awaits ``trio.lowlevel.wait_readable``): the same semantics, more bytes.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import trio

if TYPE_CHECKING:
    from collections.abc import Generator

    from outcome import Outcome

T = TypeVar("T")

#: The trio releases whose internals this was read against and tested with (tests/test_parking.py).
#: Any other release takes trio's public waits, whatever its internals look like: a renamed
#: private attribute must cost bytes, never a request.
CHECKED_TRIO = ("0.35",)


def checked(version: str) -> bool:
    """Whether trio ``version`` is one whose internals this module knows (``CHECKED_TRIO``)."""
    return ".".join(version.split(".")[:2]) in CHECKED_TRIO


try:  # (trio's internals: see the module docstring)
    if not checked(trio.__version__):  # pragma: no cover (another trio)
        raise ImportError(trio.__version__)
    from trio._core import _run
    from trio._core._traps import WaitTaskRescheduled as _Message
except ImportError:  # pragma: no cover (another trio)
    _Message = None  # type: ignore[assignment,misc]

try:
    if _Message is None:  # pragma: no cover (another trio)
        raise ImportError(trio.__version__)
    from trio._core._io_epoll import EpollIOManager as _Epoll
except (ImportError, AttributeError):  # pragma: no cover (not Linux, or another trio)
    _Epoll = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from trio._core._io_epoll import EpollWaiters


class Parking(abc.ABC, Generic[T]):
    """Await it once: the current task parks until ``trio.lowlevel.reschedule(task, outcome)``,
    and the await gives the outcome's value (or raises its error).

    As ``wait_task_rescheduled(self)``: the instance is the abort function
    (:meth:`__call__`, which subclasses define), called by trio when the
    wait is cancelled.

    Cancellation: as ``wait_task_rescheduled``.
    """

    __slots__ = ()

    @abc.abstractmethod
    def __call__(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        """The abort (see ``trio.lowlevel.wait_task_rescheduled``): each kind of wait has its own."""

    def __await__(self) -> Generator[Any, Any, T]:
        if _Message is None:  # pragma: no cover (another trio)
            return trio.lowlevel.wait_task_rescheduled(self).__await__()  # noqa: ASYNC105 (awaited)
        # (Its own iterator: the awaiting coroutine delegates send/throw/close to it.)
        return cast("Generator[Any, Any, T]", self)

    def __next__(self) -> object:
        # The await's first step: the message that parks the task.
        return _Message(self)

    def send(self, sent: Outcome[T] | None) -> object:
        """The run loop resumes the task with an ``Outcome``: the await's value, or its error."""
        if sent is None:
            return self.__next__()
        raise StopIteration(sent.unwrap())

    def throw(self, error: Any, value: Any = None, traceback: Any = None) -> NoReturn:
        """An error thrown into the awaiting coroutine: raised at the await (trio throws none)."""
        if value is None:
            value = error() if isinstance(error, type) else error
        raise value.with_traceback(traceback) if traceback is not None else value

    def close(self) -> None:
        """Nothing to close (the awaiting coroutine closing)."""


class ReadableWait(Parking[None]):
    """The current task waiting for its file descriptor to be readable (:func:`readable`)."""

    __slots__ = ("_fd", "_io", "_waiters")

    def __init__(self, io: _Epoll, waiters: EpollWaiters, fd: int) -> None:
        self._io = io
        self._waiters = waiters
        self._fd = fd

    def __call__(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        """Cancelled: no longer waiting (as trio's ``_epoll_wait``'s abort)."""
        self._waiters.read_task = None
        self._io._update_registrations(self._fd)
        return trio.lowlevel.Abort.SUCCEEDED


@trio.lowlevel.enable_ki_protection
def readable(fd: int) -> ReadableWait | None:
    """Register the current task as waiting for ``fd`` to be readable, as
    ``trio.lowlevel.wait_readable(fd)`` does, and return what to await at once (no checkpoint
    between); ``None`` where trio's I/O manager is not the one this knows (await
    ``wait_readable(fd)`` instead).

    Raises:
        trio.BusyResourceError: another task waits for ``fd`` to be readable.
    Awaited: returns once ``fd`` is readable; raises ``trio.ClosedResourceError``
    if another task calls ``notify_closing(fd)``. Cancellation: only the wait is cancelled.
    """
    if _Epoll is None or _Message is None:  # pragma: no cover (not Linux, or another trio)
        return None
    io = _run.GLOBAL_RUN_CONTEXT.runner.io_manager
    if type(io) is not _Epoll:  # pragma: no cover (an I/O manager this does not know)
        return None
    waiters = io._registered[fd]
    if waiters.read_task is not None:
        raise trio.BusyResourceError("another task is already reading / writing this fd")
    waiters.read_task = trio.lowlevel.current_task()
    io._update_registrations(fd)
    return ReadableWait(io, waiters, fd)
