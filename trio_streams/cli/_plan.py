"""What ``trio-streams serve`` will run, built from its flags and checked before anything starts."""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import logging
import os
import ssl
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ._gc import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from quart_trio import QuartTrio

    from ..log import Store
    from ..web import TokenAuth, TrioStreams

logger = logging.getLogger("trio_streams.serve")


class ServeConfigError(Exception):
    """A flag, or a file a flag names, that cannot work: a bad argument (one line, exit 2).

    A certificate, key or token file that cannot be read or is malformed is one
    (it is the flag that is wrong), as is one secret given to two users.
    """


class ServeStartupError(Exception):
    """The server could not start with good flags: address in use, store unreachable (one line, exit 1)."""


_HUB_FLAGS = (
    "grace_period",
    "finalize_timeout",
    "no_event_timeout",
    "input_timeout",
    "max_age",
    "max_runs",
    "max_live_runs_per_owner",
    "log_max_events",
    "log_max_bytes",
    "max_memory",
    "max_event_bytes",
)


@dataclass
class ServePlan:
    """What ``serve`` will do, checked before anything starts."""

    host: str
    port: int
    options: dict[str, Any] = field(default_factory=dict)
    store_label: str = "memory"
    app_factory: Callable[..., QuartTrio] | None = None
    access_log: bool = False
    #: TLS: the certificate chain and its private key (PEM files), both or neither.
    certfile: str | None = None
    keyfile: str | None = None
    #: Hypercorn's idle keep-alive timeout (None: its default, 5s).
    keep_alive: float | None = None
    #: The ASGI root path (the prefix a reverse proxy mounts the server under).
    root_path: str = ""
    #: Peers whose X-Forwarded-For/Proto are believed (empty: none; None: every peer).
    forwarded_allow_ips: frozenset[str] | None = frozenset()
    #: Worker processes (``--workers``): 1 is one process and no supervisor.
    workers: int = 1
    #: With ``workers > 1``: the external Redis every worker uses, or else the
    #: embedded redis-server the supervisor starts for them.
    redis_url: str | None = None
    embedded_redis: EmbeddedRedisPlan | None = None
    #: In a worker: the listening socket inherited from the supervisor (an
    #: open file descriptor), served instead of binding ``host:port``.
    listen_fd: int | None = None
    #: In a worker: its id (``X-Trio-Streams-Worker`` on every response).
    worker_id: int | None = None
    #: The collector's thresholds once serving (``--gc-threshold``; None: untouched), see :mod:`._gc`.
    gc_threshold: tuple[int, int, int] | None = DEFAULT_THRESHOLD

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServePlan:
        """Check the flags and build the plan.

        Raises:
            ServeConfigError: with a one-line explanation (bad flags, or a file
                they name that cannot be read or used).
            ServeStartupError: the ``--app`` module raised while it was imported.
        """
        host, port = parse_bind(args.bind)
        plan = cls(host, port, access_log=args.access_log)
        plan._http_settings(args)
        auth = _auth_from(args)
        if auth is None and not _is_loopback(host):
            raise ServeConfigError(
                f"refusing to serve on {host} without auth: anyone who reaches it could start and read "
                "runs. Add --token USER:SECRET (or --token-file), or bind to 127.0.0.1"
            )
        plan.options["auth"] = auth
        if args.metrics_user:
            plan.options["metrics_users"] = _metrics_users(args.metrics_user, auth)
        plan.options["heartbeat"] = args.heartbeat
        plan.options["max_body"] = args.max_body
        plan.options["shutdown_grace"] = args.shutdown_grace
        plan.options["long_poll_timeout"] = args.long_poll_timeout
        plan.options["sse_recycle"] = args.sse_recycle
        if args.durable_access is not None:
            from ..durable._access import resolve_access

            try:
                resolve_access(args.durable_access, auth=auth is not None)
            except ValueError:
                raise ServeConfigError(
                    "--durable-access owner needs --token (or --token-file): without them every "
                    "caller is anonymous"
                ) from None
            plan.options["durable_access"] = args.durable_access
        if args.subscriptions:
            plan.options["durable_subscriptions"] = _subscription_options(args)
        elif args.webhook_key_file or args.webhook_previous_key_file or args.webhook_allow_loopback:
            raise ServeConfigError(
                "the --webhook-* flags need --subscriptions (they were ignored without it)"
            )
        if args.app is None:
            plan.options["demo_max_tokens"] = args.demo_max_tokens
        for name in _HUB_FLAGS:
            value = getattr(args, name)
            if value is not None:
                plan.options[name] = value
        _check_hub_flags(plan.options)
        plan.workers = getattr(args, "workers", 1)
        plan.gc_threshold = getattr(args, "gc_threshold", DEFAULT_THRESHOLD)
        plan._choose_store(args)
        if plan.workers > 1:
            plan._split_memory()
        if args.app:
            plan.app_factory = _import_factory(args.app)
            if plan.workers > 1 and not _takes_options(plan.app_factory):
                raise ServeConfigError(
                    f"--workers {plan.workers}: --app {args.app} takes no options, so its workers "
                    "would not share the store; give the factory **options (see README)"
                )
        return plan

    def _split_memory(self) -> None:
        """Split ``--max-memory`` (the whole server's budget with workers) between
        the embedded Redis and the workers: Redis gets half, each of the N
        workers ``(budget - Redis's half) / N``; with ``--redis-url`` (not ours
        to bound) each worker gets ``budget / N``.

        Raises:
            ServeConfigError: a worker's share breaks a rule of the hub's
                budget (at least 1 MiB, eight largest events), naming the flags.
        """
        from ..runs._config import HubConfig

        total = int(self.options.get("max_memory", HubConfig().max_memory))
        redis_share = total // 2 if self.embedded_redis is not None else 0
        share = (total - redis_share) // self.workers
        if self.embedded_redis is not None:
            self.embedded_redis.maxmemory = redis_share
        options = {**self.options, "max_memory": share}
        try:
            _check_hub_flags(options)
        except ServeConfigError as exc:
            split = "half of it to the embedded Redis, " if redis_share else ""
            raise ServeConfigError(
                f"--workers {self.workers} splits --max-memory {total} bytes ({split}{share} bytes "
                f"to each worker), and a worker's share breaks a rule: {exc}; raise --max-memory "
                "or use fewer workers"
            ) from None
        self.options["max_memory"] = share

    def _http_settings(self, args: argparse.Namespace) -> None:
        """TLS, keep-alive, root path and trusted proxies from their flags.

        Raises:
            ServeConfigError: one of the pair --certfile/--keyfile alone, a bad
                address, a certificate or key file that cannot be read or loaded.
        """
        from ._proxy import parse_trusted

        certfile, keyfile = getattr(args, "certfile", None), getattr(args, "keyfile", None)
        if (certfile is None) != (keyfile is None):
            raise ServeConfigError("TLS needs both --certfile and --keyfile")
        for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
            if path is not None and not os.access(path, os.R_OK):
                raise ServeConfigError(f"{flag} {path}: cannot read it")
        if certfile is not None:
            try:  # a PEM that is no certificate, or a key of another one: now, not at the bind
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                why = getattr(exc, "reason", None) or exc
                raise ServeConfigError(
                    f"--certfile/--keyfile: cannot load them as a PEM certificate (chain) and its key: {why}"
                ) from None
        self.certfile, self.keyfile = certfile, keyfile
        self.keep_alive = getattr(args, "keep_alive", None)
        root_path = getattr(args, "root_path", None) or ""
        if root_path and not root_path.startswith("/"):
            raise ServeConfigError(f"--root-path must start with /, not {root_path!r}")
        self.root_path = root_path.rstrip("/")
        allowed = getattr(args, "forwarded_allow_ips", None)
        if allowed is not None:
            try:
                self.forwarded_allow_ips = parse_trusted(allowed)
            except ValueError as exc:
                raise ServeConfigError(f"--forwarded-allow-ips: {exc}") from None

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.certfile else "http"

    def _choose_store(self, args: argparse.Namespace) -> None:
        tuning = {
            name: value
            for name, value in (
                ("lease_ttl", args.redis_lease),
                ("ttl_running", args.redis_ttl_running),
                ("ttl_finished", args.redis_ttl_finished),
                ("ttl_events_finished", args.redis_ttl_events),
                ("max_pending_bytes", args.redis_max_pending),
                ("max_buffered_events", args.redis_max_buffered),
            )
            if value is not None
        }
        _check_redis_ttls(tuning)
        if args.redis_max_buffered is not None:
            logger.warning(
                "--redis-max-buffered is deprecated: bound the buffer in bytes with --redis-max-pending"
            )
        if self.workers > 1:
            if args.store == "memory":
                raise ServeConfigError(
                    f"--workers {self.workers} cannot use --store memory: each worker would hold its "
                    "own runs, and a run started on one could not be followed or cancelled through "
                    "another; leave --store out (the workers get an embedded redis-server) or give "
                    "--redis-url or --data-dir"
                )
            if args.redis_url and args.data_dir:
                raise ServeConfigError(
                    "give --redis-url (an external Redis) or --data-dir (an embedded one), not both"
                )
            self._workers_store(args)
            return
        kind = args.store or ("redis" if args.redis_url or args.data_dir else "memory")
        if kind == "memory":
            if args.redis_url or args.data_dir:
                raise ServeConfigError("--store memory does not take --redis-url or --data-dir")
            if tuning:
                raise ServeConfigError("the --redis-* flags need --redis-url or --data-dir")
            if args.cross_instance_keys is not None:
                raise ServeConfigError(
                    "--cross-instance-keys needs --redis-url or --data-dir: one instance decides alone"
                )
            return
        if args.cross_instance_keys is not None:
            self.options["cross_instance_keys"] = args.cross_instance_keys
        if args.redis_url and args.data_dir:
            raise ServeConfigError(
                "give --redis-url (an external Redis) or --data-dir (an embedded one), not both"
            )
        if not (args.redis_url or args.data_dir):
            raise ServeConfigError("--store redis needs --redis-url URL or --data-dir DIR")
        if args.redis_url and not args.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ServeConfigError(
                f"--redis-url must start with redis://, rediss:// or unix://, not {args.redis_url[:20]!r}"
            )
        try:
            redis_store: Any = importlib.import_module("trio_streams.log.redis._store")
        except ImportError as exc:
            raise ServeConfigError(f"the Redis store cannot be loaded: {exc}") from None
        prefix = args.redis_prefix
        # Durable Streams follow the runs into Redis, a single one or a
        # Cluster (same URL and prefix; docs/durable.md).
        self.options["durable_streams"] = "redis"
        if args.redis_url:
            url = args.redis_url
            self.store_label = f"redis ({_safe_url(url)})"

            @asynccontextmanager
            async def external() -> AsyncIterator[Store]:
                await trio.lowlevel.checkpoint()
                yield redis_store.RedisStore(url, prefix=prefix, **tuning)

            self.options["store"] = external
            return
        data_dir: Path = args.data_dir
        embedded = getattr(redis_store, "open_embedded_redis", None)
        if embedded is None:
            raise ServeConfigError("--data-dir needs the embedded Redis support, missing from this build")
        self.store_label = f"embedded redis ({data_dir})"

        @asynccontextmanager
        async def supervised() -> AsyncIterator[Store]:
            async with embedded(data_dir) as url:
                yield redis_store.RedisStore(url, prefix=prefix, **tuning)

        self.options["store"] = supervised

    def _workers_store(self, args: argparse.Namespace) -> None:
        """With workers: record the store they will share (the supervisor starts
        an embedded Redis unless ``--redis-url`` names one); nothing is opened here.

        Raises:
            ServeConfigError: a malformed ``--redis-url``.
        """
        if args.cross_instance_keys is not None:
            self.options["cross_instance_keys"] = args.cross_instance_keys
        self.options["durable_streams"] = "redis"
        if args.redis_url:
            if not args.redis_url.startswith(("redis://", "rediss://", "unix://")):
                raise ServeConfigError(
                    f"--redis-url must start with redis://, rediss:// or unix://, not {args.redis_url[:20]!r}"
                )
            self.redis_url = args.redis_url
            self.store_label = f"redis ({_safe_url(args.redis_url)})"
            return
        self.embedded_redis = EmbeddedRedisPlan(args.data_dir)
        where = "ephemeral" if args.data_dir is None else str(args.data_dir)
        self.store_label = f"embedded redis ({where})"

    def build_app(self) -> tuple[QuartTrio, TrioStreams]:
        """The app to serve and its TrioStreams extension.

        Raises:
            ServeConfigError: a user factory that does not build a fitting app.
            ServeStartupError: a user factory that raised (its traceback logged).
        """
        from ..web import TrioStreams, create_app

        factory = self.app_factory
        if factory is None:
            # Our own app answers the hot routes without Quart's request path
            # (TRIO_STREAMS_FAST_PATHS=0: through Quart, to compare); an --app only if it opts in.
            fast_paths = os.environ.get("TRIO_STREAMS_FAST_PATHS", "1") != "0"
            app = create_app(fast_paths=fast_paths, **self.options)
        else:
            try:
                if _takes_options(factory):
                    app = factory(**self.options)
                else:
                    ignored = "--store, --token and the run flags are ignored"
                    logger.warning("%s takes no options: %s", factory, ignored)
                    app = factory()
            except Exception as exc:  # the app's own code: its traceback is in the log
                name = getattr(factory, "__qualname__", factory)
                logger.error("--app: %s raised", name, exc_info=True)
                raise ServeStartupError(
                    f"--app: {name} raised {type(exc).__name__}: {exc} (its traceback is logged above)"
                ) from None
            from quart_trio import QuartTrio

            if not isinstance(app, QuartTrio):
                raise ServeConfigError(
                    f"--app: {getattr(factory, '__qualname__', factory)} returned "
                    f"{type(app).__name__}, not a QuartTrio app"
                )
            app.config.setdefault("MAX_CONTENT_LENGTH", self.options["max_body"])
        streams = getattr(app, "extensions", {}).get("trio_streams")
        if not isinstance(streams, TrioStreams):
            raise ServeConfigError("the app factory returned an app without a TrioStreams extension")
        return app, streams


@dataclass
class EmbeddedRedisPlan:
    """The redis-server ``serve --workers`` starts for its workers."""

    #: Append-only files there (``--data-dir``); None: ephemeral, no files.
    data_dir: Path | None
    #: Its ``maxmemory`` in bytes (half of ``--max-memory``; see ``_split_memory``).
    maxmemory: int | None = None


def _check_hub_flags(options: dict[str, Any]) -> None:
    """Refuse hub flags that do not go together (e.g. ``--max-event-bytes`` over an
    eighth of ``--max-memory``), naming the flags.

    Raises:
        ServeConfigError: with HubConfig's message, in flag names.
    """
    from ..runs._config import HubConfig

    try:
        HubConfig(**{name: options[name] for name in _HUB_FLAGS if name in options})
    except ValueError as exc:
        message = str(exc)
        for name in _HUB_FLAGS:
            message = message.replace(name, "--" + name.replace("_", "-"))
        raise ServeConfigError(message) from None


def _check_redis_ttls(tuning: dict[str, Any]) -> None:
    """A live run's keys must outlive its lease: they are refreshed with it
    (``lease / 6``) and a run whose owner is gone is declared ``dead`` a lease
    after its last renewal -- with a shorter ``ttl_running`` it would vanish
    first. (Defaults: ``Ttls`` in log/redis/_writer.py.)

    Raises:
        ServeConfigError: ``--redis-ttl-running`` shorter than ``--redis-lease``.
    """
    if "lease_ttl" not in tuning and "ttl_running" not in tuning:
        return
    try:
        from ..log.redis._writer import Ttls
    except ImportError:  # no Redis support: refused with the store flags
        return
    defaults = Ttls()
    lease, running = tuning.get("lease_ttl", defaults.lease), tuning.get("ttl_running", defaults.running)
    if running < lease:
        raise ServeConfigError(
            f"--redis-ttl-running ({running:g}s) must be at least --redis-lease ({lease:g}s): a live "
            "run's keys would expire before a run whose owner died could be declared dead"
        )


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as ``(host, port)``.

    Raises:
        ServeConfigError: malformed, or a port outside 0-65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ServeConfigError(f"--bind must be HOST:PORT, not {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ServeConfigError(f"--bind port must be 0-65535, not {port}")
    if host.startswith("[") or host.endswith("]"):
        try:
            if not (host.startswith("[") and host.endswith("]")):
                raise ValueError(host)
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ServeConfigError(
                f"--bind: {host} is not an IPv6 address in brackets ([::1]:8000)"
            ) from None
    return host.removeprefix("[").removesuffix("]"), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _metrics_users(names: list[str], auth: TokenAuth | None) -> frozenset[str]:
    """``--metrics-user`` names, each a user some token maps to.

    Raises:
        ServeConfigError: without tokens (``/metrics`` is open then), or a
            name no token has (a typo would leave /metrics closed to all).
    """
    if auth is None:
        raise ServeConfigError(
            "--metrics-user needs --token (or --token-file): without tokens /metrics is open to every caller"
        )
    unknown = sorted(set(names) - auth.users)
    if unknown:
        raise ServeConfigError(f"--metrics-user {unknown[0]}: no --token (or --token-file line) has it")
    return frozenset(names)


def _no_passphrase() -> str:
    """An encrypted key would make OpenSSL ask for its passphrase on the terminal: refuse it."""
    raise ServeConfigError("--keyfile: the key is encrypted (it has a passphrase); serve needs one without")


def _auth_from(args: argparse.Namespace) -> TokenAuth | None:
    """Every ``--token`` and the ``--token-file``'s lines as one :class:`TokenAuth`, or None.

    Raises:
        ServeConfigError: the token file cannot be read or has a bad line, or
            one secret is given to two users (one line, never a secret).
    """
    from ..web import TokenAuth, TokenSourceError
    from ..web._token_sources import collect_tokens, read_token_file

    path: Path | None = args.token_file
    if not args.token and path is None:
        return None
    label = f"--token-file {path}"
    try:
        file = None if path is None else (label, read_token_file(path))
        return TokenAuth(collect_tokens(args.token, file))
    except OSError as exc:
        raise ServeConfigError(f"{label}: cannot read it: {exc.strerror or exc}") from None
    except TokenSourceError as exc:
        raise ServeConfigError(str(exc)) from None


def _import_factory(spec: str) -> Callable[..., QuartTrio]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ServeConfigError(f"--app must be MODULE:FACTORY, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServeConfigError(f"--app: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the app's own code (or a SyntaxError in it): its traceback is in the log
        logger.error("--app: importing %s raised", module_name, exc_info=True)
        raise ServeStartupError(
            f"--app: importing {module_name!r} raised {type(exc).__name__}: {exc} "
            "(its traceback is logged above)"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ServeConfigError(f"--app: {module_name} has no callable {attribute!r}")
    return factory  # type: ignore[no-any-return]


def _takes_options(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    _credentials, at, location = rest.rpartition("@")
    return f"{scheme}{sep}***@{location}" if at else url


def _subscription_options(args: argparse.Namespace) -> dict[str, Any]:
    """``durable_subscriptions`` for ``TrioStreams`` from ``--subscriptions`` and the webhook flags."""
    options: dict[str, Any] = {"allow_loopback_http": bool(args.webhook_allow_loopback)}
    previous_files = getattr(args, "webhook_previous_key_file", None) or []
    if args.webhook_key_file or previous_files:
        from pathlib import Path

        from ..durable._webhook_signing import WebhookSigner, load_public_key

        try:
            previous = [load_public_key(Path(path)) for path in previous_files]
            if args.webhook_key_file:
                options["signer"] = WebhookSigner.from_file(Path(args.webhook_key_file), previous=previous)
            else:  # a generated key (replaced by the one in Redis, if any), publishing the old ones
                options["signer"] = WebhookSigner(previous=previous)
        except (OSError, ValueError) as exc:
            raise ServeConfigError(f"--webhook-key-file / --webhook-previous-key-file: {exc}") from None
    return options
