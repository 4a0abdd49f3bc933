"""How ``trio-streams serve`` runs Hypercorn: the listening socket, bound before the
app starts, and ASGI shims (Hypercorn's idle timers kept and a complete
response written at once: :mod:`._one_write`; the moment every connection has
closed noticed).

Shutdown, in order (``_serve.serve`` drives it):

1. SIGTERM: the shutdown trigger drains the hub (runs finish within the
   grace, the rest are cancelled and finalized, the store flushed); every
   event stream ends with its terminal event.
2. The trigger returns: Hypercorn stops accepting, tells every connection
   to close once idle, and gives what is still running :data:`CLOSE_GRACE`
   (a terminal event still being written) before cancelling it.
3. Every connection has closed :data:`EXIT_BUDGET` after the drain, or
   ``serve`` exits without them (a client that stopped reading can block a
   socket write that Hypercorn shields from cancellation).
4. The app's own shutdown (``after_serving``), then ``serve`` returns.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING

import hypercorn.config
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.trio.run import worker_serve

from ._one_write import OneWriteResponses, install

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        ASGISendEvent,
        Scope,
    )

#: After the drain, how long Hypercorn lets responses still being written
#: finish before it cancels them (its ``graceful_timeout``).
CLOSE_GRACE = 0.5

#: After the drain, the longest ``serve`` waits for connections to close
#: before it exits without them.
EXIT_BUDGET = 1.0


def hypercorn_config(
    host: str,
    port: int,
    *,
    access_log: bool,
    certfile: str | None = None,
    keyfile: str | None = None,
    keep_alive: float | None = None,
    root_path: str = "",
) -> hypercorn.config.Config:
    """Hypercorn's config for ``serve`` on ``host:port``: TLS (HTTP/2 offered by ALPN)
    when ``certfile`` and ``keyfile`` are given, the idle keep-alive timeout, the root path."""
    config = hypercorn.config.Config()
    config.bind = [format_address(host, port)]
    config.certfile = certfile
    config.keyfile = keyfile
    if keep_alive is not None:
        config.keep_alive_timeout = keep_alive
    config.root_path = root_path
    # The shutdown trigger drains the runs before Hypercorn's graceful period
    # starts; this only bounds what remains after that (responses ending).
    config.graceful_timeout = CLOSE_GRACE
    config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int, *, backlog: int, secure: bool = False) -> hypercorn.config.Sockets:
    """A listening TCP socket on ``host:port`` (port 0: a free one), as Hypercorn makes it
    (``secure``: for TLS).

    Bound before the app starts, so an address in use fails at once, before
    any store is opened.

    Raises:
        OSError: the address cannot be listened on (:func:`listen_error`
            explains it); no socket is left open.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # With SO_REUSEADDR a second bind can succeed where listen() then
        # fails with EADDRINUSE: both belong to this one error path.
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    if secure:  # Hypercorn wraps it in TLS
        return hypercorn.config.Sockets(secure_sockets=[sock], insecure_sockets=[], quic_sockets=[])
    return hypercorn.config.Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])


def adopt(fd: int, *, secure: bool = False) -> hypercorn.config.Sockets:
    """The listening socket open as file descriptor ``fd`` (inherited from the
    ``serve --workers`` supervisor, which bound it), as :func:`listen` returns one.

    Raises:
        OSError: ``fd`` is not an open socket.
    """
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    if secure:
        return hypercorn.config.Sockets(secure_sockets=[sock], insecure_sockets=[], quic_sockets=[])
    return hypercorn.config.Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])


def listen_error(host: str, port: int, exc: OSError) -> str:
    """One line saying why ``host:port`` cannot be listened on, and what to do."""
    where = f"cannot listen on {format_address(host, port)}"
    if isinstance(exc, socket.gaierror):
        return (
            f"{where}: cannot resolve {host!r} ({exc.strerror}); "
            "give --bind an IP address or a name this machine resolves"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the address is already in use (another server is listening there); "
            "stop it, or give --bind another port (port 0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); give --bind a port from 1024"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: no network interface of this machine has that address; "
            "give --bind one of its addresses (0.0.0.0 for all)"
        )
    return f"{where}: {exc.strerror or exc}; check --bind"


def close_sockets(sockets: hypercorn.config.Sockets) -> None:
    """Close every socket (idempotent: Hypercorn closes them too when it ends)."""
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


async def serve_hypercorn(
    app: ASGIFramework,
    config: hypercorn.config.Config,
    sockets: hypercorn.config.Sockets,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    connections_closed: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``sockets`` until ``shutdown_trigger`` returns (then see the module docstring).

    ``hypercorn.trio.serve`` without its own binding (it binds only after the
    app has started): Hypercorn's trio worker, given the sockets.
    A complete HTTP/1.x response is written in one socket write
    (:mod:`trio_streams.cli._one_write`). ``task_status.started`` gets the
    URLs served; ``connections_closed`` is set once every connection has
    ended, before the app's own shutdown.

    Cancellation: cancels every connection and the app at once.
    """
    install()
    app = OneWriteResponses(app, CLOSE_GRACE)
    if connections_closed is not None:
        app = NoticeShutdown(app, connections_closed)
    await worker_serve(
        ASGIWrapper(app),
        config,
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


class WorkerHeader:
    """ASGI middleware: every HTTP response says which worker sent it
    (``X-Trio-Streams-Worker: <id>``), so a client of ``serve --workers`` can
    tell the workers apart behind their one socket (tests, debugging)."""

    def __init__(self, app: ASGIFramework, worker_id: int) -> None:
        """Args: app: the ASGI application to wrap; worker_id: this worker's id."""
        self.app = app
        self.header = (b"x-trio-streams-worker", str(worker_id).encode())

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Call the app, adding the header to its ``http.response.start``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class NoticeShutdown:
    """ASGI middleware: sets an event when the server asks the app to shut down.

    Hypercorn sends ``lifespan.shutdown`` once every connection has ended: the
    event tells that moment apart from the app's own shutdown that follows.
    """

    def __init__(self, app: ASGIFramework, event: trio.Event) -> None:
        """Args: app: the ASGI application to wrap; event: set on ``lifespan.shutdown``."""
        self.app = app
        self.event = event

    def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Awaitable[None]:
        """Call the app, watching what its lifespan scope receives (other scopes: untouched, and
        no frame of this shim's while they last)."""
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def receive_noticing() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.event.set()
            return message

        await self.app(scope, receive_noticing, send)
