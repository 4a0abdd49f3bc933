"""The hot routes of ``serve``'s own app, straight from ASGI to the protocol handlers.

:class:`FastPaths` is an ASGI callable in front of a Quart-Trio app that
carries a :class:`~._extension.TrioStreams`. It answers, without Quart's
request machinery, exactly the requests Quart would route to these
handlers:

- Durable Streams, every method the protocol defines, at
  ``{url_prefix}/stream/<name>`` (appends, reads, long-polls, SSE, ...);
- run starts, ``POST {url_prefix}/runs``;
- run event streams, ``GET {url_prefix}/runs/<run_id>/events``.

It calls the same handlers with the same context the Quart routes use
(:meth:`TrioStreams.fast_routes`: the auth, the limits, the idempotency
keys, the counters and gauges behind /metrics), renders refusals the way
those routes' error handlers do (counted the same), and adds the Durable
Streams browser headers to every Durable Streams response. Everything else,
lifespan included, goes to the Quart app unchanged; access logging is
Hypercorn's either way, so the log lines are the same.

It skips the app's own request hooks on those routes: ``serve`` uses it for
its own app, and for an ``--app`` only when that app opts in
(``TrioStreams(fast_paths=True)``); see README.md, "Serving".
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from trio import current_time
from werkzeug.exceptions import InternalServerError, RequestEntityTooLarge, RequestTimeout

from ..durable._errors import DurableStreamError
from ..protocol import (
    BROWSER_HEADERS,
    ApiError,
    Request,
    Response,
    StreamingResponse,
    api_error_response,
    handle_run_events,
    handle_start_run,
    handle_stream_request,
    http_error_response,
    render_http_error,
)
from ..protocol._ds_http import render_error
from ._asgi import CONNECTION_OVER, BodyTimeout, BodyTooLarge, Exchange, app_path, parsed_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
    from quart_trio import QuartTrio

    from ._asgi import _Responder
    from ._extension import FastRoutes

#: The methods the Durable Streams route takes (others get Quart's 405).
DURABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})

_TOO_LARGE = str(RequestEntityTooLarge.description)
_TIMEOUT = str(RequestTimeout.description)
_INTERNAL = str(InternalServerError.description)


class FastPaths:
    """ASGI: the hot routes to the protocol handlers, the rest to ``app`` (see the module docstring).

    Args:
        app: a Quart-Trio app with a :class:`TrioStreams` extension (its
            limits and timeouts are read from ``app.config`` now).

    Raises:
        ValueError: ``app`` has no TrioStreams extension.
    """

    def __init__(self, app: QuartTrio) -> None:
        streams = app.extensions.get("trio_streams")
        if streams is None:
            raise ValueError("FastPaths needs an app with a TrioStreams extension")
        self.app = app
        self.routes: FastRoutes = streams.fast_routes()
        self._prefix = self.routes.url_prefix
        self._stream_prefix = f"{self._prefix}/stream/"
        self._runs = f"{self._prefix}/runs"
        # The route labels of the request-duration histogram: Quart's rules for these routes.
        self._durable_rule = f"{self._prefix}/stream/<path:stream_name>"
        self._events_rule = f"{self._runs}/<run_id>/events"
        self._metrics = self.routes.runs.metrics
        config = app.config
        self._limits: dict[str, Any] = {
            "max_content_length": config["MAX_CONTENT_LENGTH"],
            "body_timeout": config["BODY_TIMEOUT"],
            "response_timeout": config["RESPONSE_TIMEOUT"],
        }
        #: Where the server bounds a complete response's sends itself (CONNECTION_OVER's "bounded_sends").
        self._bounded_limits: dict[str, Any] = {**self._limits, "response_timeout": None}
        self._logger = app.logger

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Answer a hot route here, pass anything else to the app.

        Cancellation: see :meth:`Exchange.run`.
        """
        await self.dispatch(scope, receive, send)

    def dispatch(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Awaitable[None]:
        """:meth:`__call__` without a frame of its own while the request lasts (an idle event
        stream holds it for its whole life): what to await, the exchange's or the app's."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        method = scope["method"]
        respond = self._responder(scope, method)
        if respond is None:
            return self.app(scope, receive, send)
        offered = (scope.get("extensions") or {}).get(CONNECTION_OVER)
        if offered is None:
            exchange = Exchange(receive, send, **self._limits)
        else:
            limits = self._bounded_limits if offered.get("bounded_sends") else self._limits
            when_over, cancel_on_over = offered.get("when_over"), offered.get("cancel_on_over")
            if method == "GET" and _has_body(scope):
                # A read with a body: what of it is past the limit is not consumed before the
                # response, so the server's bounded queue to the app fills and the connection is
                # no longer read -- its end would never be seen. A watcher task receives it all.
                when_over = cancel_on_over = None
            exchange = Exchange(receive, send, when_over=when_over, cancel_on_over=cancel_on_over, **limits)
        # Only reads wait (long-polls, event streams): only they need a disconnect watcher.
        # (Exchange.run drops ``respond`` once answered, and with it what it holds.)
        return exchange.run(respond, watch=method == "GET")

    def _responder(self, scope: HTTPScope, method: str) -> _Responder | None:
        """What answers a request of a hot route (``None``: not one): :meth:`_respond` with the
        route's path parameters, handler, refusal and rule (a partial, not a closure: no cells)."""
        respond = functools.partial
        path = app_path(scope)
        if path is None or not path.startswith(self._prefix) or "//" in path:
            return None  # (Werkzeug redirects a path with "//": leave that to Quart.)
        durable = self.routes.durable
        if durable is not None and path.startswith(self._stream_prefix) and method in DURABLE_METHODS:
            name = path[len(self._stream_prefix) :]
            if name:
                params = {"stream_name": name}
                return respond(
                    self._respond, scope, params, self._durable, self._refuse_durable, self._durable_rule
                )
        elif path == self._runs:
            if method == "POST":
                return respond(self._respond, scope, {}, self._start_run, self._refuse_runs, self._runs)
        elif path.startswith(self._runs) and path.endswith("/events") and method == "GET":
            run_id = path[len(self._runs) + 1 : -len("/events")]
            if path[len(self._runs)] == "/" and run_id and "/" not in run_id:
                params = {"run_id": run_id}
                return respond(
                    self._respond, scope, params, self._run_events, self._refuse_runs, self._events_rule
                )
        return None

    async def _respond(
        self,
        scope: HTTPScope,
        params: dict[str, str],
        handle: Callable[[Request], Awaitable[Response | StreamingResponse]],
        refuse: Callable[[Exception, HTTPScope], Response],
        rule: str,
        exchange: Exchange,
    ) -> Response | StreamingResponse:
        # Timed as under Quart (web/_metrics.py): until the response is ready.
        started = current_time()
        request = parsed_request(scope, params, exchange)
        try:
            response = await handle(request)
        except Exception as exc:
            response = refuse(exc, scope)
        self._metrics.observe_request(rule, scope["method"], response.status, current_time() - started)
        return response

    # -- the runs blueprint ----------------------------------------------------------

    async def _start_run(self, request: Request) -> Response:
        return await handle_start_run(request, self.routes.runs)

    async def _run_events(self, request: Request) -> StreamingResponse:
        return await handle_run_events(request, self.routes.runs)

    def _refuse_runs(self, exc: Exception, scope: HTTPScope) -> Response:
        """As the runs blueprint's error handlers: counted as ``error:<code>`` (API errors) or
        ``error:<status>`` (HTTP errors)."""
        counters = self.routes.runs.counters
        if isinstance(exc, ApiError):
            counters[f"error:{exc.code}"] += 1
            return api_error_response(exc)
        if isinstance(exc, BodyTooLarge):
            response = http_error_response(413, _TOO_LARGE)
        elif isinstance(exc, BodyTimeout):
            response = http_error_response(408, _TIMEOUT)
        else:
            self._log_exception(scope, exc)
            response = http_error_response(500, _INTERNAL)
        counters[f"error:{response.status}"] += 1
        return response

    # -- the Durable Streams blueprint ----------------------------------------------

    async def _durable(self, request: Request) -> Response | StreamingResponse:
        durable = self.routes.durable
        assert durable is not None
        response = await handle_stream_request(request, durable)
        response.headers.update(BROWSER_HEADERS)
        return response

    def _refuse_durable(self, exc: Exception, scope: HTTPScope) -> Response:
        """As the Durable Streams blueprint's error handlers, browser headers included."""
        method = scope["method"]
        if isinstance(exc, DurableStreamError):
            response = render_error(exc, method)
        elif isinstance(exc, ApiError):  # 401 and 503 from the runs API's helpers
            response = api_error_response(exc)
        elif isinstance(exc, BodyTooLarge):
            response = render_http_error(413, _TOO_LARGE, method)
        elif isinstance(exc, BodyTimeout):
            response = render_http_error(408, _TIMEOUT, method)
        else:
            self._log_exception(scope, exc)
            response = render_http_error(500, _INTERNAL, method)
        response.headers.update(BROWSER_HEADERS)
        return response

    def _log_exception(self, scope: HTTPScope, exc: Exception) -> None:
        """An unexpected error, logged as Quart logs an unhandled one (same logger, same words)."""
        self._logger.error(
            "Exception on request %s %s",
            scope["method"],
            scope["path"],
            exc_info=(type(exc), exc, exc.__traceback__),
        )


def _has_body(scope: HTTPScope) -> bool:
    """Whether the request declares a body (a ``Content-Length`` other than 0, or chunked)."""
    for name, value in scope["headers"]:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return True
    return False
