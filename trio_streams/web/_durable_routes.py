"""``durable_streams_blueprint``: the Durable Streams protocol on Quart-Trio.

A thin adapter: the protocol itself (every operation, its refusals, its
headers) is :func:`trio_streams.protocol.handle_stream_request`; this turns
Quart's request into the parsed one, renders refusals, adds the browser
headers to every response, and drops request bodies nobody read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request
from trio_util import AsyncValue
from werkzeug.exceptions import HTTPException

from ..durable._access import ACCESS_MODES
from ..durable._backend import as_backend
from ..durable._errors import DurableStreamError
from ..durable._reads import ReadSettings
from ..protocol import BROWSER_HEADERS, DurableService, handle_stream_request
from ..protocol._ds_http import render_error, render_http_error
from ._adapter import parsed_request, to_quart
from ._http_body import consume_body

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..durable._access import DurableAccess
    from ..durable._backend import DurableBackend
    from ..durable._store import DurableStreamStore
    from ..protocol import RunStreams


def durable_streams_blueprint(
    store: DurableStreamStore | DurableBackend,
    *,
    long_poll_timeout: float = 20.0,
    sse_recycle: float = 60.0,
    runs: RunStreams | None = None,
    authorize: Callable[[str | None], object] | None = None,
    access: DurableAccess = "shared",
    max_body: int = 16 * 1024 * 1024,
    name: str = "durable_streams",
    live_reads: AsyncValue[int] | None = None,
) -> Blueprint:
    """The protocol's routes over ``store``; register it with ``url_prefix="/v1/stream"``.

    Args:
        store: where streams live: the memory store, or any
            :class:`~trio_streams.durable.DurableBackend` (the Redis store).
        long_poll_timeout: how long a long-poll waits before ``204``.
        sse_recycle: an SSE response ends after this many seconds (clients reconnect).
        runs: serve the hub's runs as read-only streams under ``runs/``.
        authorize: called with the ``Authorization`` header before anything
            else; raise to refuse (e.g. the runs API's 401). ``None``: open.
        access: ``"shared"``: one namespace of stream names for every caller;
            ``"owner"``: each caller's names are their own, the user name
            ``authorize`` returns being the owner (runs keep their own rule).
        max_body: the largest ``PUT``/``POST`` body, in bytes (413 beyond).
        name: the blueprint's name (to mount more than one).
        live_reads: kept equal to the number of live reads (long-polls, SSE
            responses) waiting for data; a fresh one if omitted.

    Raises:
        ValueError: a timeout or limit that is not positive, an unknown
            ``access``, or ``access="owner"`` without ``authorize``.
    """
    service = durable_service(
        store,
        long_poll_timeout=long_poll_timeout,
        sse_recycle=sse_recycle,
        runs=runs,
        authorize=authorize,
        access=access,
        max_body=max_body,
        live_reads=live_reads,
    )
    return service_blueprint(service, name=name)


def durable_service(
    store: DurableStreamStore | DurableBackend,
    *,
    long_poll_timeout: float = 20.0,
    sse_recycle: float = 60.0,
    runs: RunStreams | None = None,
    authorize: Callable[[str | None], object] | None = None,
    access: DurableAccess = "shared",
    max_body: int = 16 * 1024 * 1024,
    live_reads: AsyncValue[int] | None = None,
    observe_append: Callable[[float], None] | None = None,
    subscriptions: Mapping[str, Any] | None = None,
) -> DurableService:
    """What the protocol's handlers serve (the arguments of :func:`durable_streams_blueprint`).

    ``observe_append`` is called with each acknowledged append's duration
    in seconds (the extension's ``durable_append_duration_seconds``).

    ``subscriptions``: serve ``__ds/`` with a
    :class:`~trio_streams.durable.SubscriptionRegistry` made with these
    options (a fresh webhook signing key unless ``signer`` is given); its
    tasks run in ``service.subscriptions.serve``, which the caller must run.

    Raises:
        ValueError: as :func:`durable_streams_blueprint`.
    """
    if long_poll_timeout <= 0 or sse_recycle <= 0 or max_body < 1:
        raise ValueError("long_poll_timeout, sse_recycle and max_body must be positive")
    if access not in ACCESS_MODES:
        raise ValueError(f"access must be 'owner' or 'shared', not {access!r}")
    if access == "owner" and authorize is None:
        raise ValueError("access='owner' needs authorize (it names each request's owner)")
    settings = ReadSettings(
        long_poll_timeout,
        sse_recycle,
        private=authorize is not None,
        waiting=AsyncValue(0) if live_reads is None else live_reads,
    )
    backend = as_backend(store)
    registry = None
    if subscriptions is not None:
        from ..durable._sub_backend import with_subscriptions
        from ..durable._webhook_signing import WebhookSigner

        options = dict(subscriptions)
        options.setdefault("signer", WebhookSigner())
        backend = with_subscriptions(backend, **options)
        registry = backend.registry
    return DurableService(backend, settings, max_body, authorize, access, runs, observe_append, registry)


def service_blueprint(service: DurableService, *, name: str = "durable_streams") -> Blueprint:
    """The protocol's routes over ``service`` (see :func:`durable_streams_blueprint`)."""
    blueprint = Blueprint(name, __name__)

    # Handlers are coroutines: Quart runs plain functions in a worker thread.
    async def protocol_error(error: DurableStreamError) -> Response:
        await consume_body()
        return to_quart(render_error(error, request.method))

    async def http_error(error: HTTPException) -> Response:
        await consume_body()
        message = str(error.description or error.name)
        return to_quart(render_http_error(error.code or 500, message, request.method))

    blueprint.register_error_handler(DurableStreamError, protocol_error)
    blueprint.register_error_handler(HTTPException, http_error)

    @blueprint.after_request
    async def browser_headers(response: Response) -> Response:
        if request.method not in ("PUT", "POST"):
            await consume_body()  # a body nobody reads would stall the kept-alive connection
        for header, value in BROWSER_HEADERS.items():
            response.headers[header] = value
        return response

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"]

    @blueprint.route("/<path:stream_name>", methods=methods, provide_automatic_options=False)
    async def stream_endpoint(stream_name: str) -> Response:
        return to_quart(await handle_stream_request(parsed_request(stream_name=stream_name), service))

    return blueprint
