"""``TrioStreams``: the runs API as a Quart-Trio extension, hub and all."""

from __future__ import annotations

import logging
import re
from collections import Counter
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import trio
from quart_trio import QuartTrio
from trio_util import AsyncValue

from .._exception_groups import collapse
from ..durable import DurableStreamStore, RedisDurableStore
from ..durable._access import resolve_access
from ..durable._webhook_key import share_signing_key
from ..log import MemoryStore, Store
from ..runs._config import HubConfig
from ..runs._open_hub import open_hub
from ..runs._run import OnConflict, OnDisconnect
from ._app_config import config_options
from ._auth import TokenAuth
from ._demo import DemoInput, demo_input_schema, demo_limits, demo_producer, demo_reserve
from ._errors import ApiError, error_response
from ._http_body import consume_body
from ._idempotency import IdempotencyKeys
from ._metrics import Metrics, time_requests
from ._metrics_workers import WorkerMetrics, serve_worker_metrics
from ._producers import RegisteredProducer, input_validator, one_argument_form

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

    from quart import Blueprint, Response

    from ..durable import DurableAccess, SubscriptionRegistry
    from ..durable._webhook_signing import WebhookSigner
    from ..protocol import DurableService
    from ..runs._config import OnFinish
    from ..runs._hub import Hub
    from ..runs._run import RunContext, RunInfo

logger = logging.getLogger("trio_streams.web")

T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class FastRoutes:
    """What ``web._asgi_routes.FastPaths`` serves: the mounted routes' own context."""

    #: Where the runs API is mounted (Durable Streams at ``{url_prefix}/stream``).
    url_prefix: str
    #: The runs API's handlers' application (the extension itself).
    runs: TrioStreams
    #: The Durable Streams handlers' service (``None``: not served).
    durable: DurableService | None


class TrioStreams:
    """Mounts the runs API on a Quart-Trio app and runs a hub for its lifetime.

    ``streams = TrioStreams(app)``, or ``TrioStreams()`` and later
    ``streams.init_app(app)``. The hub opens in the app's nursery before the
    app serves (also under ``app.test_app()``) and, when the app shuts down,
    drains: live runs get ``shutdown_grace`` seconds to finish, then are
    cancelled with their partial results saved, and the store is flushed.

    Args:
        app: the app (a :class:`quart_trio.QuartTrio`).
        store: a :class:`Store`, or a function returning an async context
            manager that yields one (opened at startup, closed at shutdown);
            a :class:`MemoryStore` if omitted.
        auth: a :class:`TokenAuth` or ``{secret: user}``; without it every
            caller is anonymous and sees every run.
        metrics_users: with ``auth``, the users whose tokens may read
            ``/metrics`` (its figures are every user's: how many runs, streams
            and bytes); anyone else gets a 404 (401 without a valid token). No
            effect without ``auth``, where ``/metrics`` is open like the rest.
        url_prefix: where the API is mounted.
        heartbeat: seconds of idle before an SSE stream sends a comment line.
        retry_ms: the SSE ``retry:`` hint for browsers' reconnect delay.
        max_body: the largest request body accepted, in bytes (413 beyond).
        shutdown_grace: seconds live runs may take to finish at shutdown.
        cancel_wait_timeout: the longest ``cancel?wait=true`` waits.
        demo: register the built-in ``demo`` producer.
        demo_max_tokens: the most tokens one demo run may ask for (its other
            limits follow from the hub's ``max_memory`` and ``max_event_bytes``).
        durable_streams: serve the Durable Streams protocol at
            ``{url_prefix}/stream`` (runs included, read-only, as
            ``{url_prefix}/stream/runs/<run_id>``): ``True`` for an
            in-memory :class:`~trio_streams.durable.DurableStreamStore`
            (a :class:`~trio_streams.durable.RedisDurableStore` on the run
            store's own connection when ``store`` offers one: a ``RedisStore``
            on a single Redis or a Cluster), ``"redis"`` for streams in the
            run store's Redis under its prefix (``store`` must open a
            ``RedisStore``), a
            store of your own, or ``False`` for none. See docs/durable.md.
        long_poll_timeout: how long a Durable Streams long-poll waits for data.
        sse_recycle: a Durable Streams SSE response ends after this many
            seconds (clients resume from their last offset).
        durable_max_body: the largest Durable Streams append, in bytes.
        durable_access: whose Durable Streams a name means: ``"owner"`` (the
            default with ``auth``): every user's names are their own
            namespace, and another user's stream is a 404 like one nobody
            has; ``"shared"``: one namespace for all (the default, and the
            only one, without ``auth``). Runs keep their rule either way.
        fast_paths: let ``trio-streams serve --app`` answer the hot routes
            (Durable Streams, run starts, run event streams) without Quart's
            request path: faster, but the app's own ``before_request`` hooks,
            middleware and error handlers do not run on them. ``serve``'s
            own app always does; an ``--app`` only with this set (README,
            "Serving").
        hub_config, **hub_options: the hub's :class:`HubConfig` and overrides.

    Raises:
        ValueError: a bad value; ``durable_access`` other than ``"owner"``,
            ``"shared"`` or ``None``, or ``"owner"`` without ``auth``.
    """

    #: The keyword arguments the caller gave (set by ``__new__``, which sees them too).
    _given: frozenset[str] = frozenset()

    def __new__(cls, *args: Any, **kwargs: Any) -> TrioStreams:
        """Notes which options the caller gave: ``init_app`` reads the others from ``app.config``."""
        self = super().__new__(cls)
        self._given = frozenset(kwargs)
        return self

    def __init__(
        self,
        app: QuartTrio | None = None,
        *,
        store: Store | Callable[[], AbstractAsyncContextManager[Store]] | None = None,
        auth: TokenAuth | Mapping[str, str] | None = None,
        metrics_users: Iterable[str] = (),
        url_prefix: str = "/v1",
        heartbeat: float = 15.0,
        retry_ms: int = 1000,
        max_body: int = 1024 * 1024,
        shutdown_grace: float = 10.0,
        cancel_wait_timeout: float = 30.0,
        demo: bool = True,
        demo_max_tokens: int = 1_000_000,
        durable_streams: bool | Literal["redis"] | DurableStreamStore | RedisDurableStore = True,
        long_poll_timeout: float = 20.0,
        sse_recycle: float = 60.0,
        durable_max_body: int = 16 * 1024 * 1024,
        durable_access: DurableAccess | None = None,
        durable_subscriptions: bool | Mapping[str, Any] = False,
        fast_paths: bool = False,
        hub_config: HubConfig | None = None,
        **hub_options: Any,
    ) -> None:
        if heartbeat <= 0:
            raise ValueError(f"heartbeat must be positive, not {heartbeat}")
        if max_body < 1:
            raise ValueError(f"max_body must be positive, not {max_body}")
        if shutdown_grace < 0 or cancel_wait_timeout <= 0:
            raise ValueError("shutdown_grace must be >= 0 and cancel_wait_timeout > 0")
        self.store_source = store
        self.auth = auth if auth is None or isinstance(auth, TokenAuth) else TokenAuth(auth)
        if isinstance(metrics_users, str):  # one name, not its letters
            raise TypeError("metrics_users must be a collection of user names, not a string")
        #: With auth, who may read /metrics (see :meth:`may_read_metrics`).
        self.metrics_users = frozenset(metrics_users)
        self.url_prefix = url_prefix.rstrip("/")
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.max_body = max_body
        self.shutdown_grace = shutdown_grace
        self.cancel_wait_timeout = cancel_wait_timeout
        if long_poll_timeout <= 0 or sse_recycle <= 0 or durable_max_body < 1:
            raise ValueError("long_poll_timeout, sse_recycle and durable_max_body must be positive")
        durable: DurableStreamStore | RedisDurableStore | None
        if durable_streams is True:
            beside = store.durable_storage() if isinstance(store, Store) else None
            durable = DurableStreamStore() if beside is None else RedisDurableStore()
        elif durable_streams == "redis":
            durable = RedisDurableStore()
        elif isinstance(durable_streams, (DurableStreamStore, RedisDurableStore)):
            durable = durable_streams
        else:
            durable = None
        #: The Durable Streams store (``None``: the protocol is not served).
        self.durable_store = durable
        self.long_poll_timeout = long_poll_timeout
        self.sse_recycle = sse_recycle
        self.durable_max_body = durable_max_body
        #: ``"owner"``: stream names are per user; ``"shared"``: one namespace.
        self.durable_access: DurableAccess = resolve_access(durable_access, auth=self.auth is not None)
        #: Serve ``__ds/`` subscriptions (options of SubscriptionRegistry, or True: defaults).
        self.durable_subscriptions = durable_subscriptions
        #: Where the subscriptions' tasks run (cancelled by stop()).
        self._subscriptions_scope = trio.CancelScope()
        #: Durable Streams live reads (long-polls, SSE) waiting for data now.
        self.durable_live_reads: AsyncValue[int] = AsyncValue(0)
        #: ``serve --app`` may answer the hot routes without Quart (see :meth:`fast_routes`).
        self.fast_paths = fast_paths
        self._durable_service: DurableService | None = None
        self._mounted = False
        self.hub_config = hub_config
        self.hub_options = hub_options
        self.producers: dict[str, RegisteredProducer] = {}
        self.idempotency = IdempotencyKeys()
        #: Counters for /metrics: HTTP errors by code, SSE streams served.
        self.counters: Counter[str] = Counter()
        self.sse_streams_open = 0
        #: The Prometheus metrics (its own registry: ``metrics.registry``).
        self.metrics = Metrics(self)
        #: The runs event streams' lag observer (``RunsApi``'s optional member).
        self.observe_delivery_lag = self.metrics.observe_delivery_lag
        #: Under ``serve --workers N``: this worker's place (read from the environment at startup).
        self.workers: WorkerMetrics | None = None
        self._hub: Hub | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        if demo:
            budget = replace(hub_config or HubConfig(), **hub_options)
            limits = demo_limits(budget.max_memory, budget.max_event_bytes)
            self.register(
                "demo",
                partial(_run_demo, max_text=limits.max_text),
                parse_input=partial(DemoInput.from_valid, limits=limits),
                input_schema=demo_input_schema(demo_max_tokens, limits),
                reserve=demo_reserve,
            )
        if app is not None:
            self.init_app(app)

    # -- producers ----------------------------------------------------------------

    def register(
        self,
        name: str,
        function: Callable[[RunContext], Awaitable[Any]],
        *,
        parse_input: Callable[[Any], Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        reserve: Callable[[Any], int] | None = None,
        on_finish: OnFinish | None = None,
        on_conflict: OnConflict | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> None:
        """Make ``function`` startable as ``{"producer": name}``.

        ``function(ctx)`` emits events with ``ctx.emit``; its return value
        (if not ``None``) is the run's result. ``input_schema`` (JSON Schema
        draft 2020-12, OpenAPI 3.1's dialect) is declared once: it validates
        the request's ``input`` (absent is ``null``) -- a refusal is a ``400
        invalid_input`` whose ``field`` and message name the value
        (``input.tokens must be between 0 and 4096``) -- and it is the
        input's schema in ``/openapi.json``. ``parse_input``, if given, runs
        after the schema accepted the input: it converts it (its return
        value is ``ctx.input``; without it, the JSON value is) and may check
        what a schema cannot say (a ``ValueError`` from it is a ``400`` with
        its message).
        ``reserve``, if given, says from the parsed input how many bytes of
        the memory budget a run will need (see ``Hub.start``): a run that
        cannot have them is refused at once (429) rather than failed half-way.

        ``on_finish`` is a hook for this producer's runs (see ``OnFinish``):
        it runs after the extension-wide ``TrioStreams(on_finish=)``, each
        under its own ``finalize_timeout``. ``on_conflict`` and
        ``on_disconnect`` are this producer's defaults for a request that
        does not say (the request wins; without either, ``"reject"`` and
        ``"continue"``).

        Deprecated: ``function(ctx, input)`` (two required positional
        parameters) still works for this release, with a
        ``DeprecationWarning`` here; take ``ctx`` and read ``ctx.input``.

        Raises:
            ValueError: a bad or already registered name, a bad
                ``on_conflict``/``on_disconnect``, or an ``input_schema`` that
                is not a valid draft 2020-12 schema (or names another
                ``$schema``), has a ``$ref`` that does not resolve inside it or
                an ``$id``, or a ``uniqueItems`` without a small ``maxItems``
                (trio_streams/protocol/_input_schema.py).
        """
        if not _NAME.match(name):
            raise ValueError(f"producer name {name!r} must be 1-64 of [A-Za-z0-9_.-]")
        if name in self.producers:
            raise ValueError(f"a producer named {name!r} is already registered")
        if on_conflict is not None and on_conflict not in get_args(OnConflict):
            raise ValueError(f"on_conflict must be one of {get_args(OnConflict)}, not {on_conflict!r}")
        if on_disconnect is not None and on_disconnect not in get_args(OnDisconnect):
            raise ValueError(f"on_disconnect must be one of {get_args(OnDisconnect)}, not {on_disconnect!r}")
        validator = input_validator(name, input_schema)
        function = one_argument_form(name, function)
        self.producers[name] = RegisteredProducer(
            name,
            function,
            parse_input,
            {} if validator is None else validator.schema,
            reserve,
            on_finish,
            on_conflict,
            on_disconnect,
            validator,
        )

    def producer(
        self,
        name: str,
        *,
        parse_input: Callable[[Any], Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        reserve: Callable[[Any], int] | None = None,
        on_finish: OnFinish | None = None,
        on_conflict: OnConflict | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> Callable[[T], T]:
        """Decorator form of :meth:`register`: ``@streams.producer("chat")``."""

        def decorate(function: T) -> T:
            self.register(
                name,
                function,  # type: ignore[arg-type]
                parse_input=parse_input,
                input_schema=input_schema,
                reserve=reserve,
                on_finish=on_finish,
                on_conflict=on_conflict,
                on_disconnect=on_disconnect,
            )
            return function

        return decorate

    # -- the app --------------------------------------------------------------------

    def init_app(self, app: QuartTrio) -> None:
        """Mount the API on ``app`` and tie the hub to its lifecycle.

        Raises:
            TypeError: ``app`` is not a QuartTrio app (the hub needs trio).
            ValueError: an ``app.config["TRIO_STREAMS_*"]`` value does not fit
                its option (the message names the key).
        """
        if not isinstance(app, QuartTrio):
            raise TypeError(f"TrioStreams needs a quart_trio.QuartTrio app, not {type(app).__name__}")
        # Options not given as arguments, from app.config["TRIO_STREAMS_*"] (web/_app_config.py).
        extension, hub = config_options(app.config, self._given)
        for name, value in extension.items():
            setattr(self, name, value.rstrip("/") if name == "url_prefix" else value)
        self.hub_options.update(hub)
        from ._ops import make_ops_blueprint
        from ._routes import make_blueprint

        blueprints = [make_blueprint(self), make_ops_blueprint(self)]
        app.register_blueprint(blueprints[0], url_prefix=self.url_prefix)
        app.register_blueprint(blueprints[1])
        time_requests(app, self.metrics)
        if self.durable_store is not None:
            blueprints.append(self._durable_blueprint())
            app.register_blueprint(blueprints[-1], url_prefix=f"{self.url_prefix}/stream")
        _no_slash_merging(app, {blueprint.name for blueprint in blueprints})
        self._mounted = True
        app.before_serving(self._startup)
        app.after_serving(self._shutdown)
        app.extensions["trio_streams"] = self

    def fast_routes(self) -> FastRoutes:
        """What a dispatcher in front of the app needs to answer the hot routes itself.

        The same objects the mounted routes use: this extension (as the runs
        API: auth, limits, idempotency, counters) and the Durable Streams
        service (``None`` when the protocol is not served).

        Raises:
            RuntimeError: :meth:`init_app` has not run.
        """
        if not self._mounted:
            raise RuntimeError("fast_routes() needs the extension mounted on an app (init_app)")
        return FastRoutes(self.url_prefix, self, self._durable_service)

    def _durable_blueprint(self) -> Blueprint:
        from ..protocol import RunStreams
        from ._durable_routes import durable_service, service_blueprint

        assert self.durable_store is not None
        service = durable_service(
            self.durable_store,
            long_poll_timeout=self.long_poll_timeout,
            sse_recycle=self.sse_recycle,
            runs=RunStreams(self),
            authorize=None if self.auth is None else self.caller,
            access=self.durable_access,
            max_body=self.durable_max_body,
            live_reads=self.durable_live_reads,
            observe_append=self.metrics.observe_append,
            subscriptions=_subscription_options(self.durable_subscriptions),
        )
        self._durable_service = service
        blueprint = service_blueprint(service)

        async def api_error(error: ApiError) -> Response:  # 401 and 503 from the runs API's helpers
            await consume_body()
            return error_response(error)

        blueprint.register_error_handler(ApiError, api_error)
        return blueprint

    def may_read(self, info: RunInfo, caller: str | None) -> bool:
        """Whether ``caller`` may see the run (always, with auth off; else only its owner)."""
        return self.auth is None or info.owner == caller

    @property
    def hub(self) -> Hub:
        """The running hub.

        Raises:
            RuntimeError: the app is not serving (in tests: use
                ``async with app.test_app()``).
        """
        if self._hub is None:
            raise RuntimeError(
                "the trio_streams hub is not running: serve the app, or use `async with app.test_app()`"
            )
        return self._hub

    @property
    def running(self) -> bool:
        """True while the hub accepts work (between startup and shutdown)."""
        return self._hub is not None and not self._stop.is_set()

    async def _startup(self) -> None:
        from quart import current_app

        nursery: trio.Nursery = current_app.nursery  # type: ignore[attr-defined]
        if self.durable_store is not None:
            self.durable_store.resume_live_reads()
        self._stop = trio.Event()
        self._stopped = trio.Event()
        try:
            self._hub = await nursery.start(self._serve_hub)
        except BaseExceptionGroup as group:
            # The hub could not open (e.g. redis-server is missing): report
            # that error itself, not the nursery's group around it, so the
            # server's one-line startup error names the cause.
            sole = collapse(group)
            if isinstance(sole, Exception):
                raise sole from None
            raise
        if self._durable_service is not None and self._durable_service.subscriptions is not None:
            # After the hub: a Redis Durable Streams store is connected by then,
            # and the subscriptions' state is in its Redis (loaded at start).
            self._subscriptions_scope = trio.CancelScope()  # (a fresh one for each start)
            await nursery.start(self._serve_subscriptions, self._durable_service.subscriptions)

    async def _serve_subscriptions(
        self, registry: SubscriptionRegistry, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """The subscriptions' tasks, until :meth:`stop` (before the hub drains and
        the Durable Streams store closes) or the app's cancellation."""
        with self._subscriptions_scope:
            await registry.serve(task_status=task_status)

    async def _shutdown(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Drain the hub (see the class docstring) and wait until it has closed.

        Safe to call more than once (the server calls it on SIGTERM, before
        the app's own shutdown). The wait is shielded, with a deadline of the
        drain's budget: Quart-Trio cancels the app's shutdown after
        ``BACKGROUND_TASK_SHUTDOWN_TIMEOUT``, which must not cut a drain short.
        Durable Streams long-polls and SSE responses end at once (clients
        resume from their offsets).
        """
        if self.durable_store is not None:
            self.durable_store.end_live_reads()
        self._subscriptions_scope.cancel(reason="stopping")
        if self._hub is None:
            return
        self._stop.set()
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._drain_budget()):
            await self._stopped.wait()

    def _drain_budget(self) -> float:
        """The longest a drain can take: the grace, then finalization, then the flush."""
        config = self.hub_config if self._hub is None else self._hub.config
        finalize = self.hub_options.get("finalize_timeout", getattr(config, "finalize_timeout", 10.0))
        flush = self.hub_options.get("store_timeout", getattr(config, "store_timeout", 10.0))
        return float(self.shutdown_grace + finalize + flush + 1.0)

    async def _serve_hub(self, *, task_status: trio.TaskStatus[Hub]) -> None:
        # The hub runs shielded: Quart-Trio puts a deadline on the app's
        # nursery at shutdown (BACKGROUND_TASK_SHUTDOWN_TIMEOUT), which would
        # cut the runs' drain short. The hub gets its own deadline (the drain
        # budget) once stopping starts; a watcher outside the shield turns a
        # cancellation of the app into an immediate stop (no grace).
        self._abrupt = False
        async with trio.open_nursery() as guard:
            guard.start_soon(self._stop_when_cancelled)
            self.workers = WorkerMetrics.from_environment()
            if self.workers is not None:  # one /metrics across workers (web/_metrics_workers.py)
                await guard.start(serve_worker_metrics, self.workers, self.metrics.exposition)
            try:
                with trio.CancelScope(shield=True) as hub_scope:
                    async with AsyncExitStack() as stack:
                        hub = await stack.enter_async_context(self._open_hub(stack))
                        if isinstance(self.durable_store, DurableStreamStore):
                            # Durable Streams in memory share the hub's budget.
                            self.durable_store.use_memory_budget(hub.budget)
                        await self._connect_durable(stack, hub.store)
                        await share_signing_key(self._webhook_signer(), self.durable_store)
                        self.idempotency.share_through(hub.store)
                        hub.store.observe_persisted(self.metrics.persist_observer(hub.wall_clock))
                        task_status.started(hub)
                        await self._stop.wait()
                        hub_scope.deadline = trio.current_time() + self._drain_budget()
                        await hub.drain(0.0 if self._abrupt else self.shutdown_grace)
                if hub_scope.cancelled_caught:
                    logger.error("the hub's shutdown exceeded its %.3gs budget", self._drain_budget())
                else:
                    logger.info("hub stopped: every run finalized, store flushed")
            finally:
                self._hub = None
                self._stopped.set()
                guard.cancel_scope.cancel()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            # (Not while the hub is still opening: then there is nothing to stop.)
            if not self._stop.is_set() and self._hub is not None:
                logger.warning("the app was cancelled: stopping the hub now, live runs cancelled")
                self._abrupt = True
                self._stop.set()

    async def _connect_durable(self, stack: AsyncExitStack, store: Store) -> None:
        """Attach a Redis Durable Streams store to the run store's own
        connection (same Redis, key prefix and health), for as long as the
        hub runs (it closes first)."""
        durable = self.durable_store
        if not isinstance(durable, RedisDurableStore) or durable.connected:
            return
        storage = store.durable_storage()
        if storage is None:
            raise TypeError("Durable Streams in Redis need a RedisStore as the run store")
        await stack.enter_async_context(durable.attach(storage))

    def _webhook_signer(self) -> WebhookSigner | None:
        service = self._durable_service
        return None if service is None or service.subscriptions is None else service.subscriptions.signer

    def _open_hub(self, stack: AsyncExitStack) -> AbstractAsyncContextManager[Hub]:
        @asynccontextmanager
        async def opened() -> AsyncIterator[Hub]:
            source = self.store_source
            if source is None:
                store: Store = MemoryStore()
            elif isinstance(source, Store):
                store = source
            else:
                store = await stack.enter_async_context(source())
            async with open_hub(store, config=self.hub_config, **self.hub_options) as hub:
                logger.info(
                    "hub started: store=%s auth=%s prefix=%s",
                    type(store).__name__,
                    f"{len(self.auth)} token(s)" if self.auth else "off",
                    self.url_prefix,
                )
                yield hub

        return opened()

    # -- request helpers --------------------------------------------------------------

    def caller(self, authorization: str | None) -> str | None:
        """The user a request acts as (``None`` when auth is off).

        Raises:
            ApiError: 401 with auth on and no valid token.
        """
        if self.auth is None:
            return None
        return self.auth.user_for(authorization)

    def check_metrics_reader(self, authorization: str | None) -> None:
        """Return if a request with this ``Authorization`` may read ``/metrics``.

        Raises:
            ApiError: with auth on, 401 without a valid token, 404 for a user
                not in ``metrics_users`` (the page is not theirs to know of).
        """
        user = self.caller(authorization)
        if user is not None and user not in self.metrics_users:
            raise ApiError(404, "not_found", "no such resource")

    def hub_for_reading(self) -> Hub:
        """The hub while it exists (also while it drains at shutdown), else a 503."""
        if self._hub is None:
            raise ApiError(503, "not_serving", "the hub is not running", headers={"Retry-After": "1"})
        return self._hub

    def hub_for_starting(self) -> Hub:
        """The hub, or a 503 while the app is starting or shutting down."""
        hub = self.hub_for_reading()
        if self._stop.is_set():
            raise ApiError(
                503,
                "shutting_down",
                "the server is shutting down and starts no runs",
                headers={"Retry-After": "1"},
            )
        return hub


async def _run_demo(ctx: RunContext, *, max_text: int | None) -> Any:
    """The built-in ``demo`` producer in the ``function(ctx)`` form."""
    return await demo_producer(ctx, ctx.input, max_text=max_text)


def _no_slash_merging(app: QuartTrio, blueprints: set[str]) -> None:
    """Our routes answer a path with ``//`` (``/v1/runs//events``: an empty
    run id) with a JSON 404, not Werkzeug's HTML 308 to the path with the
    slashes merged (another resource). The app's other routes keep its
    ``url_map.merge_slashes``; the matcher reads each rule's flag as it matches.
    """
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] in blueprints:
            rule.merge_slashes = False


def _subscription_options(option: bool | Mapping[str, Any]) -> Mapping[str, Any] | None:
    if option is False:
        return None
    return {} if option is True else option
