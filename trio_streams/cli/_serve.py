"""``trio-streams serve``: the runs API on Hypercorn's trio worker."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.utils import LifespanFailureError

from ._exit import exit_when_stuck, watch_signals
from ._hypercorn import close_sockets, hypercorn_config, listen, listen_error, serve_hypercorn
from ._plan import ServeConfigError, ServePlan, ServeStartupError
from ._units import duration_arg, positive_duration_arg, size_arg

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from ..web import TrioStreams

logger = logging.getLogger("trio_streams.serve")

DESCRIPTION = """\
Serve the trio-streams runs API (start runs, follow them as Server-Sent Events,
resume with Last-Event-ID, cancel with partial results saved) on Hypercorn.

With no flags: the built-in `demo` producer, the in-memory store, on
http://127.0.0.1:8000, no auth (so loopback only)."""

EPILOG = """\
examples:
  trio-streams serve
  trio-streams serve --data-dir ./data            # durable: embedded redis-server
  trio-streams serve --redis-url redis://localhost:6379/0 --bind 0.0.0.0:8000 \\
      --token alice:s3cret --token bob:hunter2
  trio-streams serve --app myapp:create_app       # your producers (see README)

shutdown: SIGTERM or SIGINT stops new runs, gives live runs --shutdown-grace to
finish, cancels the rest (partial results saved), ends open event streams with
their terminal events, flushes the store and exits 0. A second signal exits at
once (status 130 or 143). Clients do not hold the exit: idle connections are
closed, requests still under way get 0.5s, and a client that stopped reading
is left behind 1s after the drain.

exit status: 0 after a clean shutdown; 1 the server could not start (e.g. the
store is unreachable, the port is in use, the token file is unreadable or has a
bad line, one secret is given to two users); 2 bad arguments."""


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``trio-streams`` sub-command parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the runs API on Hypercorn",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    parser.set_defaults(func=main_with_args)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s flags to ``parser``."""
    net = parser.add_argument_group("network")
    net.add_argument(
        "--bind",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8000; port 0 picks a free one; [::1]:8000 for IPv6)",
    )
    net.add_argument("--access-log", action="store_true", help="log every request (Hypercorn's access log)")
    store = parser.add_argument_group("store")
    store.add_argument(
        "--store",
        choices=("memory", "redis"),
        help="memory (the default: runs live in this process) or redis (needs --redis-url or --data-dir)",
    )
    store.add_argument(
        "--redis-url", metavar="URL", help="redis:// or rediss:// URL (user:password@ passes through)"
    )
    store.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="durable on one machine: start and supervise a local redis-server with append-only files in DIR",
    )
    store.add_argument(
        "--redis-prefix",
        default="trio_streams:",
        metavar="PREFIX",
        help="prefix of every Redis key (default trio_streams:); two prefixes never see each other",
    )
    store.add_argument(
        "--redis-lease",
        type=positive_duration_arg,
        metavar="DURATION",
        help="a run whose owner stops renewing its lease this long is marked dead by another instance (10s)",
    )
    store.add_argument(
        "--redis-ttl-running",
        type=positive_duration_arg,
        metavar="DURATION",
        help="expiry of a live run's keys, refreshed while it runs (24h)",
    )
    store.add_argument(
        "--redis-ttl-finished",
        type=positive_duration_arg,
        metavar="DURATION",
        help="how long a finished run's status and result stay in Redis (7d)",
    )
    store.add_argument(
        "--redis-ttl-events",
        type=positive_duration_arg,
        metavar="DURATION",
        help="how long a finished run's events stay replayable from Redis (24h)",
    )
    store.add_argument(
        "--redis-max-pending",
        type=size_arg,
        metavar="SIZE",
        help="bytes of events and metadata not yet in Redis (e.g. while it is unreachable) "
        "before a run that emits more fails loudly (64MiB)",
    )
    store.add_argument(
        "--redis-max-buffered",
        type=_positive_int,
        metavar="EVENTS",
        help="deprecated, use --redis-max-pending: also bound the not-yet-durable items to this many",
    )
    store.add_argument(
        "--cross-instance-keys",
        choices=["strict", "best_effort"],
        help="a keyed start when Redis cannot be asked who holds the key: strict refuses it with "
        "503 (default; never two live runs for one key), best_effort checks this instance only",
    )
    auth = parser.add_argument_group("auth")
    auth.add_argument(
        "--token",
        action="append",
        default=[],
        type=_token_arg,
        metavar="USER:SECRET",
        help="a bearer token and the user it maps to (repeatable: a user may have several, a secret "
        "has one user); with tokens, users see only their runs",
    )
    auth.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="USER:SECRET lines, blank lines and # comments skipped; adds to any --token",
    )
    api = parser.add_argument_group("API")
    api.add_argument(
        "--app", metavar="MODULE:FACTORY", help="serve your app: FACTORY(**options) returns a QuartTrio app"
    )
    api.add_argument(
        "--heartbeat", type=positive_duration_arg, default=15.0, help="idle SSE heartbeat (default 15s)"
    )
    api.add_argument(
        "--max-body", type=size_arg, default=1024 * 1024, help="largest request body (default 1MiB)"
    )
    api.add_argument(
        "--demo-max-tokens",
        type=_positive_int,
        default=1_000_000,
        help="the most tokens one run of the built-in demo producer may ask for (default 1000000)",
    )
    api.add_argument(
        "--shutdown-grace",
        type=duration_arg,
        default=10.0,
        help="on SIGTERM, how long live runs may take to finish before they are cancelled (default 10s)",
    )
    durable = parser.add_argument_group("Durable Streams (/v1/stream/*)")
    durable.add_argument(
        "--long-poll-timeout",
        type=positive_duration_arg,
        default=20.0,
        help="how long a Durable Streams long-poll read waits for data before 204 (default 20s)",
    )
    durable.add_argument(
        "--sse-recycle",
        type=positive_duration_arg,
        default=60.0,
        help="end each Durable Streams SSE response after this long; clients resume from their offset (60s)",
    )
    durable.add_argument(
        "--durable-access",
        choices=("owner", "shared"),
        default=None,
        help="owner (the default with --token): each user's stream names are their own, another user's "
        "stream is a 404; shared: one namespace for every user (the only one without tokens)",
    )
    hub = parser.add_argument_group("runs")
    hub.add_argument(
        "--grace-period", type=duration_arg, help="keep a finished run in memory this long (180s)"
    )
    hub.add_argument(
        "--finalize-timeout", type=positive_duration_arg, help="deadline of cleanup after a cancel (10s)"
    )
    hub.add_argument(
        "--no-event-timeout", type=positive_duration_arg, help="a run silent this long is dead (off)"
    )
    hub.add_argument(
        "--input-timeout", type=positive_duration_arg, help="the same while awaiting input (off)"
    )
    hub.add_argument("--max-age", type=positive_duration_arg, help="cancel runs older than this (off)")
    hub.add_argument("--max-runs", type=_positive_int, help="runs held in memory at most (10000)")
    hub.add_argument("--max-live-runs-per-owner", type=_positive_int, help="live runs per user (unlimited)")
    hub.add_argument(
        "--log-max-events", type=_positive_int, help="events each run's replay log keeps (10000)"
    )
    hub.add_argument("--log-max-bytes", type=size_arg, help="bytes each run's replay log keeps (8MiB)")
    hub.add_argument(
        "--max-memory",
        type=size_arg,
        metavar="SIZE",
        help="memory budget of runs' events, the memory store and in-memory Durable Streams, "
        "each event counted once; finished runs are evicted first, then new runs get 429 and "
        "appends 507 (512MiB: fits a 1 GiB machine beside Python's own ~100 MiB)",
    )
    hub.add_argument(
        "--max-event-bytes",
        type=size_arg,
        metavar="SIZE",
        help="largest event (its JSON data); at most --max-memory / 8 (1MiB)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity (default info: one line per run start, end and cancel)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _token_arg(text: str) -> str:
    from ..web._token_sources import TokenSourceError, parse_token_spec, redact

    try:
        parse_token_spec(text)
    except TokenSourceError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {redact(text)!r})") from None
    return text


def main_with_args(args: argparse.Namespace) -> int:
    """Run ``serve`` with parsed arguments; return the exit status."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        plan = ServePlan.from_args(args)
        app, streams = plan.build_app()
    except ServeConfigError as exc:
        print(f"trio-streams serve: error: {exc}", file=sys.stderr)
        return 2
    except ServeStartupError as exc:
        print(f"trio-streams serve: error: {exc}", file=sys.stderr)
        return 1
    return trio.run(serve, plan, app, streams)


async def serve(plan: ServePlan, app: QuartTrio, streams: TrioStreams) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully; return the exit status.

    The address is listened on before the app starts: one in use is a
    one-line error (status 1) before any store opens. Shutdown: see
    ``_serve_hypercorn``; connections are closed, or given up on, at most
    ``EXIT_BUDGET`` after the drain, whatever the clients do.
    """
    config = hypercorn_config(plan.host, plan.port, access_log=plan.access_log)
    try:
        sockets = listen(plan.host, plan.port, backlog=config.backlog)
    except OSError as exc:
        print(f"trio-streams serve: error: {listen_error(plan.host, plan.port, exc)}", file=sys.stderr)
        return 1
    shutdown = trio.Event()
    drained = trio.Event()
    connections_closed = trio.Event()

    async def shutdown_trigger() -> None:
        await shutdown.wait()
        # Drain first: live runs end (or are cancelled, partial results saved),
        # so every open event stream ends with its terminal event; only then
        # does Hypercorn stop listening and close connections.
        await streams.stop()
        drained.set()

    # A startup failure is reported below in one line; Quart would also log
    # its traceback at ERROR. Keep that traceback for --log-level debug only.
    quiet_startup = _QuietStartupFailure()
    app.logger.addFilter(quiet_startup)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, shutdown, plan.options["shutdown_grace"])
            nursery.start_soon(exit_when_stuck, drained, connections_closed)

            async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve_hypercorn(
                    _with_fast_paths(app, streams),
                    config,
                    sockets,
                    shutdown_trigger=shutdown_trigger,
                    connections_closed=connections_closed,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            urls = await nursery.start(run_server)
            quiet_startup.starting = False
            if not streams.running:
                # Hypercorn binds even when the app's startup failed; the
                # failure is on its way to this nursery: announce nothing.
                with trio.move_on_after(10):
                    await trio.sleep_forever()
                print("trio-streams serve: error: startup failed (see the log above)", file=sys.stderr)
                nursery.cancel_scope.cancel()
                return 1
            auth = plan.options["auth"]
            logger.info(
                "store: %s; auth: %s",
                plan.store_label,
                f"{len(auth)} token(s), users see only their runs"
                if auth
                else "off (no --token): loopback only",
            )
            for url in urls:
                print(f"trio-streams serving on {url}", flush=True)
    except LifespanFailureError as exc:
        print(f"trio-streams serve: error: startup failed: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        # A failed startup (e.g. Redis refused the password) arrives wrapped
        # in the nurseries' groups; report its cause in one line.
        cause = _startup_failure(group)
        if cause is None:
            raise
        print(f"trio-streams serve: error: startup failed: {cause}", file=sys.stderr)
        return 1
    finally:
        close_sockets(sockets)
    logger.info("stopped cleanly")
    return 0


def _with_fast_paths(app: QuartTrio, streams: TrioStreams) -> Any:
    """``app``, behind the dispatcher of its hot routes if it has opted in (``fast_paths``)."""
    from ..web._asgi_routes import FastPaths

    return FastPaths(app) if streams.fast_paths else app


class _QuietStartupFailure(logging.Filter):
    """Drops the app logger's records of an exception raised while the app
    starts (``serve`` prints the cause in one line), after logging them at
    DEBUG with the traceback. Later records pass untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.starting = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not (self.starting and record.exc_info):
            return True
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
