"""Hypercorn's per-request app task, with less held while a request lasts.

Hypercorn's trio connection (``hypercorn.trio.tcp_server.TCPServer``) spawns
each request's app task from its ``TaskGroup.spawn_app``: a trio memory
channel to the app, and the task running Hypercorn's ``_handle``, which
awaits ``ASGIWrapper.__call__``, which awaits the app. :class:`LeanTaskGroup`
does the same with an :class:`~trio_streams.web._app_queue.AppQueue` (~1.7 KB
lighter than the channel) and one frame (:func:`_handle` calls the wrapped
ASGI app itself), which every idle event stream held for its whole life
(benchmarks/RESULTS.md, issue 14). :func:`install` makes Hypercorn's trio
connections use it.

What this relies on in Hypercorn 0.18 (tests/test_app_task.py fails if it
changes): ``TCPServer.run`` builds its ``TaskGroup`` from its module's global
name; ``spawn_app(app, config, scope, send)`` returns the coroutine function
the protocol awaits with each received message; ``_handle``'s error handling
(below, unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hypercorn.trio.tcp_server
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.trio.task_group import TaskGroup

from ..web._app_queue import AppQueue

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.config import Config
    from hypercorn.typing import AppWrapper, ASGIReceiveCallable, ASGIReceiveEvent, ASGISendEvent, Scope


#: An ASGI scope extension a middleware may set (an async callable of no
#: arguments): awaited by the request task once the app has returned, as the
#: middleware's own frame would after awaiting the app -- without that frame
#: held while the request lasts (``OneWriteResponses``' end of response).
APP_END = "trio_streams.app_end"


class LeanTaskGroup(TaskGroup):
    """Hypercorn's trio ``TaskGroup``, whose app tasks receive from an :class:`AppQueue`."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        """Start the app's task for one request; what to call with each message for it."""
        if config.max_app_queue_size < 1:  # (a rendezvous channel: Hypercorn's own)
            return await super().spawn_app(app, config, scope, send)
        queue: AppQueue[ASGIReceiveEvent] = AppQueue(config.max_app_queue_size)
        assert self._nursery is not None
        self._nursery.start_soon(_handle, app, config, scope, queue.receive, send)
        return queue.send

    def cancel(self, reason: str) -> None:
        """Cancel every task of the group (the connection's end; no I/O)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel(reason=reason)


async def _handle(
    app: AppWrapper,
    config: Config,
    scope: Scope,
    receive: ASGIReceiveCallable,
    send: Callable[[ASGISendEvent | None], Awaitable[None]],
) -> None:
    """Hypercorn's ``_handle``: run the app for one request; errors logged as Hypercorn logs them.

    An ``ASGIWrapper``'s app is called here (its ``__call__`` only awaits it: one frame fewer),
    then the scope's :data:`APP_END`, if set.

    Cancellation: propagates (the app's send of "finished" still happens, as Hypercorn's).
    """
    try:
        if type(app) is ASGIWrapper:
            await app.app(scope, receive, send)
        else:
            await app(scope, receive, send, trio.to_thread.run_sync, trio.from_thread.run)
        extensions: Any = scope.get("extensions")
        end = None if not extensions else extensions.get(APP_END)
        if end is not None:
            await end()
    except trio.Cancelled:
        raise
    except BaseExceptionGroup as error:
        _, other_errors = error.split(trio.Cancelled)
        if other_errors is not None:
            await config.log.exception("Error in ASGI Framework")
            await send(None)
        else:
            raise
    except Exception:
        await config.log.exception("Error in ASGI Framework")
    finally:
        await send(None)


def install() -> None:
    """Make Hypercorn's trio connections (``TCPServer.run``) use :class:`LeanTaskGroup`.

    Idempotent. Process-wide: every Hypercorn trio server of this process
    gets it; it behaves as Hypercorn's for any app.
    """
    module: dict[str, Any] = vars(hypercorn.trio.tcp_server)
    if module.get("TaskGroup") is TaskGroup:
        module["TaskGroup"] = LeanTaskGroup
