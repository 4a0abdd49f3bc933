"""``trio-streams serve``'s flags: what each means, its default and its type.

Apart from :mod:`._serve` (the command around them) so that the list of
flags, the longest part of the command, reads in one place.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ._gc import DEFAULT_THRESHOLD, gc_threshold_arg
from ._units import duration_arg, positive_duration_arg, redis_ttl_arg, size_arg


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
        type=path_arg,
        metavar="PATH",
        help="serve HTTPS with this PEM certificate (chain); needs --keyfile; HTTP/2 offered by ALPN",
    )
    net.add_argument("--keyfile", type=path_arg, metavar="PATH", help="the PEM private key of --certfile")
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
        "--redis-url",
        type=redis_url_arg,
        metavar="URL",
        help="redis:// or rediss:// URL (user:password@ passes through)",
    )
    store.add_argument(
        "--data-dir",
        type=data_dir_arg,
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
        type=redis_ttl_arg,
        metavar="DURATION",
        help="a run whose owner stops renewing its lease this long is marked dead by another instance (10s)",
    )
    store.add_argument(
        "--redis-ttl-running",
        type=redis_ttl_arg,
        metavar="DURATION",
        help="expiry of a live run's keys, refreshed while it runs (24h)",
    )
    store.add_argument(
        "--redis-ttl-finished",
        type=redis_ttl_arg,
        metavar="DURATION",
        help="how long a finished run's status and result stay in Redis (7d)",
    )
    store.add_argument(
        "--redis-ttl-events",
        type=redis_ttl_arg,
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
        type=token_file_arg,
        metavar="PATH",
        help="USER:SECRET lines, blank lines and # comments skipped; adds to any --token",
    )
    auth.add_argument(
        "--metrics-user",
        action="append",
        default=[],
        metavar="USER",
        help="with tokens, a user whose tokens may read /metrics (repeatable; its figures are every "
        "user's). Default: none, /metrics answers 404 to every token (401 without one); without "
        "tokens /metrics is open",
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
        help="serve Durable Streams subscriptions (__ds/: webhooks and pull-wake); their state is in the "
        "Redis of the streams (shared by every instance and worker, kept across restarts), or with "
        "--store memory in this process",
    )
    durable.add_argument(
        "--webhook-key-file",
        type=path_arg,
        metavar="PATH",
        help="the webhook signing key (Ed25519, PEM), made there on first start; it wins over the "
        "key kept in Redis (default: with the streams in Redis -- --redis-url, --data-dir, "
        "--workers N -- the key kept there, made by the first instance and shared by every "
        "instance and worker; with --store memory a fresh key per start)",
    )
    durable.add_argument(
        "--webhook-previous-key-file",
        type=path_arg,
        metavar="PATH",
        action="append",
        default=[],
        help="an earlier signing key (PEM, private or public) still published in jwks.json while "
        "receivers may verify its signatures (key rotation; repeatable)",
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
        "--gc-threshold",
        type=gc_threshold_arg,
        default=DEFAULT_THRESHOLD,
        metavar="G0,G1,G2",
        help="once serving (each worker): freeze the objects alive at startup out of the garbage "
        f"collector's reach and set its thresholds (default {','.join(map(str, DEFAULT_THRESHOLD))}; "
        "Python's are 700,10,10); off: leave the collector as Python set it",
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


def redis_url_arg(text: str) -> str:
    """``--redis-url``: a URL that parses (its scheme is checked with the store
    flags, which name the ones allowed). The message never shows a password."""
    from urllib.parse import urlsplit

    scheme = text.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        return text  # refused with the --store flags (_plan.py): "must start with redis://, ..."
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid {scheme}:// URL: {exc}") from None
    if scheme == "unix" and not parts.path:
        raise argparse.ArgumentTypeError("a unix:// URL needs the socket's path (unix:///run/redis.sock)")
    return text


def path_arg(text: str) -> str:
    """A file's path: not empty (``Path("")`` is the current directory: an empty
    ``TRIO_STREAMS_DATA_DIR=`` put an embedded Redis's files there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file (or leave the setting out)")
    return text


def token_file_arg(text: str) -> Path:
    """``--token-file``: a path, not empty (read later, by the plan)."""
    return Path(path_arg(text))


def data_dir_arg(text: str) -> Path:
    """``--data-dir``: a directory, or a path one can be made at (the embedded
    redis-server creates it); checked here, before anything starts."""
    path = Path(path_arg(text))
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    existing = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not writable")
    return path


def _token_arg(text: str) -> str:
    from ..web._token_sources import TokenSourceError, parse_token_spec, redact

    try:
        parse_token_spec(text)
    except TokenSourceError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {redact(text)!r})") from None
    return text
