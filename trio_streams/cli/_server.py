"""The server ``trio-streams serve`` runs, for embedding: :func:`serve` in a nursery.

``serve`` binds, starts the app (and with it the hub), reports the URLs it
serves through ``task_status.started``, and shuts down the way SIGTERM shuts
the command down (runs drained, streams ended with their terminal events,
the store flushed, connections closed) when its cancel scope is cancelled.

Theory of operation: the server (Hypercorn's worker, the app, the hub) runs
in a scope of its own that is shielded, so that a cancellation from outside
does not cut the drain short; the cancellation sets the shutdown trigger
and puts a deadline (the drain's budget plus Hypercorn's close grace) on
that shielded scope, so the shutdown is bounded whatever the clients do.
The ``Cancelled`` is then re-raised: it is never swallowed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from hypercorn.utils import LifespanFailureError

from ..log._deadlines import run_wheel
from ..web._asgi_routes import FastPaths
from ._hypercorn import (
    CLOSE_GRACE,
    EXIT_BUDGET,
    WorkerHeader,
    adopt,
    close_sockets,
    hypercorn_config,
    listen,
    listen_error,
    serve_hypercorn,
)
from ._plan import ServeConfigError, ServePlan, ServeStartupError
from ._proxy import ForwardedHeaders

if TYPE_CHECKING:
    from collections.abc import Callable

    from hypercorn.typing import ASGIFramework
    from quart_trio import QuartTrio

    from ..web import TrioStreams

logger = logging.getLogger("trio_streams.serve")

#: Beyond the drain, Hypercorn's close grace and the exit budget: what the
#: app's own shutdown (``after_serving``) may take when ``serve`` is cancelled.
APP_SHUTDOWN_BUDGET = 5.0

#: Hypercorn's own log (its "Running on ..." line).
HYPERCORN_ERROR_LOG = "hypercorn.error"
#: After a startup that left the extension not running, how long to wait for
#: the failure (Hypercorn binds even when the app's startup failed).
STARTUP_FAILURE_WAIT = 10.0


async def serve(
    config: ServePlan,
    app: QuartTrio | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (or the app ``config`` describes) until cancelled; then shut down gracefully.

    Args:
        config: what to serve and how (:meth:`ServePlan.from_flags` takes
            ``serve``'s flags, e.g. ``["--bind", "127.0.0.1:0"]``).
        app: a QuartTrio app with the :class:`~trio_streams.web.TrioStreams`
            extension; by default the one ``config`` builds (the demo
            producer, or ``--app``'s factory).
        task_status: ``started`` gets the URLs served (``["http://127.0.0.1:PORT"]``),
            once the address is listened on and the hub is running.

    Raises:
        ServeStartupError: the address cannot be listened on, or the app's
            startup failed (one line naming why; never an exception group).
        ServeConfigError: ``app`` (or the factory's app) has no TrioStreams
            extension, or ``config`` asks for more than one worker.

    Cancellation: the shutdown SIGTERM does: live runs get the extension's
    ``shutdown_grace`` (``--shutdown-grace`` for the app ``config`` builds)
    to finish, the rest are cancelled and finalized, event streams end
    with their terminal events, the store is flushed and connections closed, within the drain's budget plus
    :data:`CLOSE_GRACE`, :data:`EXIT_BUDGET` and :data:`APP_SHUTDOWN_BUDGET`;
    then ``Cancelled`` propagates.
    """
    if config.workers > 1:
        raise ServeConfigError(
            "serve(): --workers is the command's (a supervisor of processes); embed one server per "
            "process, or run trio-streams serve --workers N"
        )
    app, streams = _app_and_streams(config, app)
    await _serve(config, app, streams, shutdown=trio.Event(), task_status=task_status)


def _app_and_streams(config: ServePlan, app: QuartTrio | None) -> tuple[QuartTrio, TrioStreams]:
    from ..web import TrioStreams

    if app is None:
        return config.build_app()
    streams = getattr(app, "extensions", {}).get("trio_streams")
    if not isinstance(streams, TrioStreams):
        raise ServeConfigError("serve(): the app has no TrioStreams extension")
    return app, streams


async def _serve(
    config: ServePlan,
    app: QuartTrio,
    streams: TrioStreams,
    *,
    shutdown: trio.Event,
    on_stuck: Callable[[], None] | None = None,
    on_started: Callable[[list[str]], None] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve`, with the trigger that starts a graceful shutdown given (the command's
    signal watcher sets it), what to do when connections outlive the drain
    by :data:`EXIT_BUDGET` (the command exits the process; by default they
    are cancelled, which ends all but a socket write Hypercorn shields), and
    what to call with the URLs once serving (the command prints them).

    Returns when ``shutdown`` was set and the server has stopped.
    """
    hyper = hypercorn_config(
        config.host,
        config.port,
        access_log=config.access_log,
        certfile=config.certfile,
        keyfile=config.keyfile,
        keep_alive=config.keep_alive,
        root_path=config.root_path,
    )
    try:
        ssl_context = hyper.create_ssl_context() if hyper.ssl_enabled else None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ServeStartupError(f"--certfile/--keyfile: cannot load them: {exc}") from None
    del ssl_context  # checked here, in one line; Hypercorn makes its own
    asgi_app: ASGIFramework = _with_fast_paths(app, streams)
    if isinstance(asgi_app, FastPaths):
        # Its dispatch holds no frame while a request lasts (FastPaths.__call__ does: an idle
        # event stream's whole life). serve_hypercorn takes it as ASGI as it is (Hypercorn's
        # own serve would not: it tells ASGI by a coroutine function).
        asgi_app = asgi_app.dispatch
    if config.forwarded_allow_ips != frozenset():
        asgi_app = ForwardedHeaders(asgi_app, config.forwarded_allow_ips)
    if config.worker_id is not None:
        asgi_app = WorkerHeader(asgi_app, config.worker_id)
    try:
        if config.listen_fd is not None:  # a worker of serve --workers: the supervisor bound it
            sockets = adopt(config.listen_fd, secure=hyper.ssl_enabled)
        else:
            sockets = listen(config.host, config.port, backlog=hyper.backlog, secure=hyper.ssl_enabled)
    except OSError as exc:
        raise ServeStartupError(listen_error(config.host, config.port, exc)) from None
    drained = trio.Event()
    connections_closed = trio.Event()
    server_stopped = trio.Event()
    # Not shielded while the app starts (a cancellation then ends the startup
    # at once: nothing is live yet); shielded from the moment it serves.
    server_scope = trio.CancelScope()

    async def shutdown_trigger() -> None:
        await shutdown.wait()
        # Drain first: live runs end (or are cancelled, partial results saved),
        # so every open event stream ends with its terminal event; only then
        # does Hypercorn stop listening and close connections.
        await streams.stop()
        drained.set()

    async def give_up_on_stuck_connections() -> None:
        await drained.wait()
        with trio.move_on_after(EXIT_BUDGET):
            await connections_closed.wait()
            return
        if on_stuck is not None:
            on_stuck()
        logger.warning(
            "connections still open %gs after the drain (clients not reading?): cancelling them",
            EXIT_BUDGET,
        )
        server_scope.cancel(reason="connections outlived the drain")

    async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            with server_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(give_up_on_stuck_connections)
                    # One timer for every idle SSE response's recycle deadline (no cancel scope each).
                    await nursery.start(run_wheel)

                    async def hypercorn_task(*, task_status: trio.TaskStatus[list[str]]) -> None:
                        await serve_hypercorn(
                            asgi_app,
                            hyper,
                            sockets,
                            shutdown_trigger=shutdown_trigger,
                            connections_closed=connections_closed,
                            task_status=task_status,
                        )
                        nursery.cancel_scope.cancel(reason="server stopped")

                    urls = await nursery.start(hypercorn_task)
                    quiet_startup.starting = False
                    if not streams.running:
                        # Hypercorn binds even when the app's startup failed;
                        # the failure is on its way to this nursery.
                        with trio.move_on_after(STARTUP_FAILURE_WAIT):
                            await trio.sleep_forever()
                        raise ServeStartupError("startup failed (see the log above)")
                    server_scope.shield = True
                    task_status.started(urls)
        finally:
            server_stopped.set()

    # A startup failure is raised below in one line; Quart would also log
    # its traceback at ERROR. Keep that traceback for --log-level debug only.
    quiet_startup = _QuietStartupFailure()
    app.logger.addFilter(quiet_startup)
    logging.getLogger(HYPERCORN_ERROR_LOG).addFilter(quiet_startup)
    try:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(run_server)
            _log_started(config, streams)
            if on_started is not None:
                on_started(urls)
            task_status.started(urls)
            try:
                await server_stopped.wait()
            finally:
                # Cancelled from outside (or the server stopped on its own):
                # shut down as SIGTERM does, shielded, within a bound.
                shutdown.set()
                budget = streams._drain_budget() + CLOSE_GRACE + EXIT_BUDGET + APP_SHUTDOWN_BUDGET
                server_scope.deadline = min(server_scope.deadline, trio.current_time() + budget)
    except BaseExceptionGroup as group:
        _raise_collapsed(group)
        raise
    finally:
        app.logger.removeFilter(quiet_startup)
        logging.getLogger(HYPERCORN_ERROR_LOG).removeFilter(quiet_startup)
        close_sockets(sockets)
    logger.info("stopped cleanly")


def _log_started(config: ServePlan, streams: TrioStreams) -> None:
    # The app's own auth, not the flags': a given app, or an --app factory
    # without **options, ignores --token, and the line must not say otherwise.
    if streams.auth:
        readers = ", ".join(sorted(streams.metrics_users)) or "nobody (no --metrics-user)"
        logger.info(
            "store: %s; auth: %d token(s), users see only their runs; /metrics: %s",
            config.store_label,
            len(streams.auth),
            readers,
        )
    elif config.options.get("auth"):
        logger.warning(
            "store: %s; auth: off: the app does not use --token (every run is visible)", config.store_label
        )
    else:
        logger.info("store: %s; auth: off (no --token): loopback only", config.store_label)


def _raise_collapsed(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise the one error ``group`` stands for: a failed startup as one
    :class:`ServeStartupError`, another single :class:`Exception` as itself.
    Return if it holds several, or only ``Cancelled`` (the caller re-raises
    the group: the cancelled scope catches it).
    """
    from .._exception_groups import collapse

    cause = _startup_failure(group)
    if cause is not None:
        raise ServeStartupError(f"startup failed: {cause}") from None
    sole = collapse(group)
    if isinstance(sole, Exception):
        raise sole


class _QuietStartupFailure(logging.Filter):
    """Drops the app logger's records of an exception raised while the app
    starts (``serve`` raises the cause in one line), after logging them at
    DEBUG with the traceback. Later records pass untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.starting = True
        self.failed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.starting:
            return True
        if record.name == HYPERCORN_ERROR_LOG:
            # Hypercorn binds (and says "Running on") even when the app's startup failed: the
            # line would say the server is up just before the one that says it is not.
            return not (self.failed and record.getMessage().startswith("Running on"))
        if not record.exc_info:
            return True
        self.failed = True
        logger.debug("the app's startup failed", exc_info=record.exc_info)
        return False


def _startup_failure(group: BaseExceptionGroup[BaseException]) -> str | None:
    """The message of what made the app's startup fail, if that is what ``group`` holds."""
    from .._errors import StreamError
    from .._exception_groups import collapse

    lifespan, _rest = group.split(LifespanFailureError)
    if lifespan is None:
        return None
    failure = collapse(lifespan)
    if failure is None:
        return None  # several: no one cause to name
    seen: set[int] = set()
    pending: list[BaseException] = [failure]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, StreamError):
            return str(exc)
        if isinstance(exc, BaseExceptionGroup):
            sole = collapse(exc)  # a group along the chain speaks only if it holds one error
            if sole is not None:
                pending.append(sole)
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    # Otherwise Hypercorn's own error, which quotes the app's message:
    # "Lifespan failure in startup. '<message>'".
    text = str(failure)
    quoted = text.partition(". '")[2]
    return quoted[:-1] if quoted.endswith("'") else text


def _with_fast_paths(app: QuartTrio, streams: TrioStreams) -> ASGIFramework:
    """``app``, behind the dispatcher of its hot routes if it has opted in
    (``fast_paths``: serve's own app does; an ``--app`` only if it says so)."""
    return FastPaths(app) if streams.fast_paths else app
