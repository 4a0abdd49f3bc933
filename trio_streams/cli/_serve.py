"""``trio-streams serve``: the runs API on Hypercorn's trio worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._exit import exit_stuck, watch_signals
from ._logging import configure_logging
from ._plan import ServeConfigError, ServePlan, ServeStartupError
from ._server import _serve
from ._sources import flags_from_sources
from ._units import duration_arg, positive_duration_arg, size_arg

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
shared and is refused. --workers 1 (the default) is one process, no supervisor.

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
by its owner alone (chmod 600). A bad value is one line naming its source.

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
    parser.add_argument(
        "--config",
        metavar="FILE",
        help='a TOML file of settings: keys are flag names with _ (redis_url = "redis://..."); '
        "flags and TRIO_STREAMS_* variables win over it",
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--bind",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8000; port 0 picks a free one; [::1]:8000 for IPv6)",
    )
    net.add_argument("--access-log", action="store_true", help="log every request (Hypercorn's access log)")
    net.add_argument(
        "--certfile",
        metavar="PATH",
        help="serve HTTPS with this PEM certificate (chain); needs --keyfile; HTTP/2 offered by ALPN",
    )
    net.add_argument("--keyfile", metavar="PATH", help="the PEM private key of --certfile")
    net.add_argument(
        "--keep-alive",
        type=positive_duration_arg,
        metavar="DURATION",
        help="close a kept-alive connection idle this long (Hypercorn's keep_alive_timeout, 5s)",
    )
    net.add_argument(
        "--root-path",
        metavar="PATH",
        help="the prefix a reverse proxy serves this under (e.g. /api): requests to /api/v1/runs "
        "reach /v1/runs (ASGI root_path)",
    )
    net.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="proxies (comma-separated IP addresses, or *) whose X-Forwarded-For and X-Forwarded-Proto "
        "give the client's address and scheme; from any other peer they are ignored (default: none)",
    )
    net.add_argument(
        "--workers",
        type=workers_arg,
        default=1,
        metavar="N",
        help="worker processes sharing the socket and the store (auto: one per CPU; default 1: "
        "one process, no supervisor); see workers below",
    )
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
        "--heartbeat",
        type=positive_duration_arg,
        metavar="DURATION",
        default=15.0,
        help="idle SSE heartbeat (default 15s)",
    )
    api.add_argument(
        "--max-body",
        type=size_arg,
        metavar="SIZE",
        default=1024 * 1024,
        help="largest request body (default 1MiB)",
    )
    api.add_argument(
        "--demo-max-tokens",
        type=_positive_int,
        metavar="N",
        default=1_000_000,
        help="the most tokens one run of the built-in demo producer may ask for (default 1000000)",
    )
    api.add_argument(
        "--shutdown-grace",
        "--graceful-timeout",
        type=duration_arg,
        metavar="DURATION",
        default=10.0,
        help="on SIGTERM, how long live runs may take to finish before they are cancelled (default 10s; "
        "--graceful-timeout is Hypercorn's name for it)",
    )
    durable = parser.add_argument_group("Durable Streams (/v1/stream/*)")
    durable.add_argument(
        "--long-poll-timeout",
        type=positive_duration_arg,
        metavar="DURATION",
        default=20.0,
        help="how long a Durable Streams long-poll read waits for data before 204 (default 20s)",
    )
    durable.add_argument(
        "--sse-recycle",
        type=positive_duration_arg,
        metavar="DURATION",
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
    durable.add_argument(
        "--subscriptions",
        action="store_true",
        help="serve Durable Streams subscriptions (__ds/: webhooks and pull-wake; state in this process)",
    )
    durable.add_argument(
        "--webhook-key-file",
        metavar="PATH",
        help="the webhook signing key (Ed25519, PEM), made there on first start; every instance "
        "serving one store should share it (default: a fresh key per start)",
    )
    durable.add_argument(
        "--webhook-allow-loopback",
        action="store_true",
        help="development only: allow webhook URLs with plain http to loopback (127.0.0.0/8, ::1, localhost)",
    )
    hub = parser.add_argument_group("runs")
    hub.add_argument(
        "--grace-period",
        type=duration_arg,
        metavar="DURATION",
        help="keep a finished run in memory this long (180s)",
    )
    hub.add_argument(
        "--finalize-timeout",
        type=positive_duration_arg,
        metavar="DURATION",
        help="deadline of cleanup after a cancel (10s)",
    )
    hub.add_argument(
        "--no-event-timeout",
        type=positive_duration_arg,
        metavar="DURATION",
        help="a run silent this long is dead (off)",
    )
    hub.add_argument(
        "--input-timeout",
        type=positive_duration_arg,
        metavar="DURATION",
        help="the same while awaiting input (off)",
    )
    hub.add_argument(
        "--max-age", type=positive_duration_arg, metavar="DURATION", help="cancel runs older than this (off)"
    )
    hub.add_argument(
        "--max-runs", type=_positive_int, metavar="N", help="runs held in memory at most (10000)"
    )
    hub.add_argument(
        "--max-live-runs-per-owner", type=_positive_int, metavar="N", help="live runs per user (unlimited)"
    )
    hub.add_argument(
        "--log-max-events",
        type=_positive_int,
        metavar="EVENTS",
        help="events each run's replay log keeps (10000)",
    )
    hub.add_argument(
        "--log-max-bytes", type=size_arg, metavar="SIZE", help="bytes each run's replay log keeps (8MiB)"
    )
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
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text (default): one line per record; json: one JSON object per line with time, level, "
        "logger, message, and run_id, stream, owner, event where the record has them",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def workers_arg(text: str) -> int:
    """``--workers``: a positive count, or ``auto`` (the CPUs this process may run on)."""
    if text.strip().lower() == "auto":
        return cpu_count()
    return _positive_int(text)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _token_arg(text: str) -> str:
    from ..web._token_sources import TokenSourceError, parse_token_spec, redact

    try:
        parse_token_spec(text)
    except TokenSourceError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {redact(text)!r})") from None
    return text


def with_sources(flags: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``serve``'s ``flags`` with the settings of ``environ`` and ``--config``'s file before them.

    Raises:
        ServeConfigError: a bad key or value, naming its source (one line).
    """
    parser = argparse.ArgumentParser(add_help=False)
    configure(parser)
    return flags_from_sources(parser, flags, environ)


def serve_plan(flags: Sequence[str] = (), *, environ: Mapping[str, str] | None = None) -> ServePlan:
    """The plan ``trio-streams serve FLAGS`` would run, for :func:`~trio_streams.serve`.

    ``serve_plan(["--bind", "127.0.0.1:0", "--redis-url", url])``: the same
    flags, defaults and checks as the command, ``--config FILE`` included.
    The environment's ``TRIO_STREAMS_*`` settings count only when given as
    ``environ`` (e.g. ``os.environ``): an embedding program decides.

    Raises:
        ServeConfigError: a bad flag or flag combination (one line).
        ServeStartupError: something a flag names cannot be used (a token file).
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
    the shutdown event too (a worker watches its supervisor).
    """
    shutdown = trio.Event()
    status = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, shutdown, plan.options["shutdown_grace"])
        if watch is not None:
            nursery.start_soon(watch, shutdown)
        try:
            await _serve(plan, app, streams, shutdown=shutdown, on_stuck=exit_stuck, on_started=announce)
        except ServeStartupError as exc:
            print(f"trio-streams serve: error: {exc}", file=sys.stderr)
            status = 1
        nursery.cancel_scope.cancel(reason="server stopped")
    return status
