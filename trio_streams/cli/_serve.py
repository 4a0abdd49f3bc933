"""``trio-streams serve``: the runs API on Hypercorn's trio worker."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._exit import exit_stuck, watch_signals
from ._gc import tune_gc
from ._logging import configure_logging
from ._plan import ServeConfigError, ServePlan, ServeStartupError
from ._serve_flags import configure
from ._server import _serve
from ._sources import flags_from_sources, unknown_variables

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

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
  trio-streams serve --workers auto               # every core: one worker per CPU

workers: --workers N runs N worker processes (auto: one per CPU this process
may use) on one listening socket, bound by a supervisor that passes it to
each worker, and one store: --redis-url's Redis, or else an embedded
redis-server the supervisor starts (with --data-dir: persistent there;
without: ephemeral). A run started through one worker is followed, resumed
and cancelled through any other (Redis carries it); every response says which
worker answered (X-Trio-Streams-Worker). A worker that dies is replaced (its
runs end dead once their lease expires, as for any dead instance), after a
backoff that doubles from 0.5s to 30s; a worker that cannot start ends the
server (status 1). SIGTERM drains every worker within --shutdown-grace.
Memory: --max-memory is then the whole server's budget: the embedded Redis
gets half of it as its maxmemory (noeviction: a full Redis refuses writes,
runs fail loudly), each worker an equal share of the rest (budget / 2N);
with --redis-url each worker gets budget / N. --store memory cannot be
shared and is refused; --subscriptions are in the Redis too, shared by the
workers. --workers 1 (the default) is one process, no supervisor.

shutdown: SIGTERM or SIGINT stops new runs, gives live runs --shutdown-grace to
finish, cancels the rest (partial results saved), ends open event streams with
their terminal events, flushes the store and exits 0. A second signal exits at
once (status 130 or 143). Clients do not hold the exit: idle connections are
closed, requests still under way get 0.5s, and a client that stopped reading
is left behind 1s after the drain.

configuration: every flag can also be set in the environment as
TRIO_STREAMS_<FLAG> (TRIO_STREAMS_BIND=0.0.0.0:8000, TRIO_STREAMS_REDIS_URL=...,
TRIO_STREAMS_ACCESS_LOG=true) or in a TOML file given with --config (or
TRIO_STREAMS_CONFIG): keys are flag names with _ (bind = "0.0.0.0:8000",
access_log = true, token_file = "/etc/tokens"). Flags win over the
environment, which wins over the file. TRIO_STREAMS_TOKEN holds
whitespace-separated USER:SECRET pairs (safer than --token: a command line is
visible to every user through ps); a file with a token key must be readable
by its owner alone (chmod 600). A bad value is one line naming its source;
an unknown TRIO_STREAMS_* variable, a warning naming it.

exit status: 0 after a clean shutdown; 1 the server could not start (e.g. the
store is unreachable, the port is in use); 2 bad arguments (a bad flag or value,
a token, certificate or key file that is unreadable or malformed, one secret
given to two users)."""


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


def with_sources(flags: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``serve``'s ``flags`` with the settings of ``environ`` and ``--config``'s file before them.

    Raises:
        ServeConfigError: a bad key or value, naming its source (one line).
    """
    parser = argparse.ArgumentParser(add_help=False)
    configure(parser)
    return flags_from_sources(parser, flags, environ)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``TRIO_STREAMS_*`` variable in ``environ`` that is no setting of ``serve``."""
    parser = argparse.ArgumentParser(add_help=False)
    configure(parser)
    return unknown_variables(parser, environ)


def serve_plan(flags: Sequence[str] = (), *, environ: Mapping[str, str] | None = None) -> ServePlan:
    """The plan ``trio-streams serve FLAGS`` would run, for :func:`~trio_streams.serve`.

    ``serve_plan(["--bind", "127.0.0.1:0", "--redis-url", url])``: the same
    flags, defaults and checks as the command, ``--config FILE`` included.
    The environment's ``TRIO_STREAMS_*`` settings count only when given as
    ``environ`` (e.g. ``os.environ``): an embedding program decides.

    Raises:
        ServeConfigError: a bad flag or flag combination, or a file a flag
            names that cannot be read or used (a token file), in one line.
        ServeStartupError: the ``--app`` module raised while it was imported.
    """
    parser = _RaisingParser(prog="serve")
    configure(parser)
    return ServePlan.from_args(parser.parse_args(with_sources(flags, environ or {})))


class _RaisingParser(argparse.ArgumentParser):
    """Bad flags raise :class:`ServeConfigError` instead of exiting the process."""

    def error(self, message: str) -> NoReturn:
        raise ServeConfigError(message)


def main_with_args(args: argparse.Namespace) -> int:
    """Run ``serve`` with parsed arguments; return the exit status."""
    configure_logging(args.log_level, args.log_format)
    try:
        plan = ServePlan.from_args(args)
        if plan.workers > 1:
            from ._workers import run_supervisor

            return run_supervisor(plan, args)
        app, streams = plan.build_app()
    except ServeConfigError as exc:
        print(f"trio-streams serve: error: {exc}", file=sys.stderr)
        return 2
    except ServeStartupError as exc:
        print(f"trio-streams serve: error: {exc}", file=sys.stderr)
        return 1
    return trio.run(serve_command, plan, app, streams)


def _print_urls(urls: list[str]) -> None:
    for url in urls:
        print(f"trio-streams serving on {url}", flush=True)


async def serve_command(
    plan: ServePlan,
    app: QuartTrio,
    streams: TrioStreams,
    *,
    announce: Callable[[list[str]], None] = _print_urls,
    watch: Callable[[trio.Event], Awaitable[None]] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully; return the exit status.

    The address is listened on before the app starts: one in use is a
    one-line error (status 1) before any store opens. Shutdown: see
    :mod:`._hypercorn`; connections are closed, or given up on (the process
    exits without them), at most ``EXIT_BUDGET`` after the drain, whatever
    the clients do. ``announce`` gets the URLs once serving (printed by
    default); ``watch``, if given, runs beside the signal watcher and may set
    the shutdown event too (a worker watches its supervisor). Once the app
    has started and before it is announced, the garbage collector is tuned
    (:func:`._gc.tune_gc`, ``--gc-threshold``).
    """

    def started(urls: list[str]) -> None:
        tune_gc(plan.gc_threshold)
        announce(urls)

    shutdown = trio.Event()
    status = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, shutdown, plan.options["shutdown_grace"])
        if watch is not None:
            nursery.start_soon(watch, shutdown)
        try:
            await _serve(plan, app, streams, shutdown=shutdown, on_stuck=exit_stuck, on_started=started)
        except ServeStartupError as exc:
            print(f"trio-streams serve: error: {exc}", file=sys.stderr)
            status = 1
        nursery.cancel_scope.cancel(reason="server stopped")
    return status
