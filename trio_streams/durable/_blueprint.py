"""``durable_streams_blueprint``: the Durable Streams protocol over HTTP, on Quart-Trio.

Every stream is ``<mount>/<name>`` (``name`` may contain slashes). ``PUT``
creates (or forks), ``POST`` appends and/or closes, ``HEAD`` describes,
``DELETE`` deletes, ``GET`` reads (catch-up, ``live=long-poll``,
``live=sse``), ``OPTIONS`` answers CORS preflights. Names under ``runs/``
are the runs of the hub, read-only (see :mod:`._runs`); ``__ds/`` is the
protocol's reserved control namespace (subscriptions: not implemented, 501).

With ``access="owner"`` every name is in the caller's own namespace
(:mod:`._access`): a request reaches only its caller's streams, so another
user's stream is exactly as absent as one nobody created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Blueprint, Response, request
from trio_util import AsyncValue
from werkzeug.exceptions import HTTPException

from .._http_body import consume_body, read_body
from . import _headers as parse
from ._access import ACCESS_MODES
from ._backend import as_backend
from ._errors import DurableStreamError, bad_request
from ._http import (
    add_browser_headers,
    preflight,
    protocol_response,
    render_error,
    render_http_exception,
)
from ._producers import parse_claim
from ._reads import ReadSettings, read_query, serve_read
from ._stream import AppendRequest, CreateRequest, ForkSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._access import DurableAccess
    from ._backend import DurableBackend, StreamInfo
    from ._runs import RunStreams
    from ._store import DurableStreamStore

RUNS_PREFIX = "runs/"
RESERVED_PREFIX = "__ds/"
MAX_NAME_LENGTH = 1024


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
            :class:`~._backend.DurableBackend` (the Redis store).
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
    if long_poll_timeout <= 0 or sse_recycle <= 0 or max_body < 1:
        raise ValueError("long_poll_timeout, sse_recycle and max_body must be positive")
    if access not in ACCESS_MODES:
        raise ValueError(f"access must be 'owner' or 'shared', not {access!r}")
    if access == "owner" and authorize is None:
        raise ValueError("access='owner' needs authorize (it names each request's owner)")
    blueprint = Blueprint(name, __name__)
    settings = ReadSettings(
        long_poll_timeout,
        sse_recycle,
        private=authorize is not None,
        waiting=AsyncValue(0) if live_reads is None else live_reads,
    )
    backend = as_backend(store)

    # Handlers are coroutines: Quart runs plain functions in a worker thread.
    async def protocol_error(error: DurableStreamError) -> Response:
        await consume_body()
        return render_error(error)

    async def http_error(error: HTTPException) -> Response:
        await consume_body()
        return render_http_exception(error)

    blueprint.register_error_handler(DurableStreamError, protocol_error)
    blueprint.register_error_handler(HTTPException, http_error)

    @blueprint.after_request
    async def browser_headers(response: Response) -> Response:
        if request.method not in ("PUT", "POST"):
            await consume_body()  # a body nobody reads would stall the kept-alive connection
        add_browser_headers(response)
        return response

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"]

    @blueprint.route("/<path:stream_name>", methods=methods, provide_automatic_options=False)
    async def stream_endpoint(stream_name: str) -> Response:
        if request.method == "OPTIONS":
            return preflight()
        owner = None
        if authorize is not None:
            caller = authorize(request.headers.get("Authorization"))
            if access == "owner":
                owner = _owner(caller)
        _check_name(stream_name)
        if stream_name.startswith(RESERVED_PREFIX):
            raise DurableStreamError(501, "not_implemented", "subscriptions (__ds/) are not implemented")
        if runs is not None and stream_name.startswith(RUNS_PREFIX):
            return await runs.handle(stream_name.removeprefix(RUNS_PREFIX), settings)
        handler = _HANDLERS[request.method]
        return await handler(_Context(backend, stream_name, owner, settings, max_body))

    return blueprint


@dataclass(frozen=True, slots=True)
class _Context:
    store: DurableBackend
    name: str
    #: The namespace the name is in (``None``: the shared one).
    owner: str | None
    settings: ReadSettings
    max_body: int


def _owner(caller: object) -> str:
    if not isinstance(caller, str):
        # A configuration error (not the client's): authorize must name the caller.
        raise TypeError(f"with access='owner', authorize must return the caller's name, not {caller!r}")
    return caller


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request("invalid_stream_name", f"a stream name is at most {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        raise bad_request("invalid_stream_name", "a stream name may not contain control characters")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise bad_request("invalid_stream_name", "a stream name may not have empty, '.' or '..' segments")


async def _create(ctx: _Context) -> Response:
    headers = request.headers
    fork = _fork_spec(ctx.name)
    creation = CreateRequest(
        content_type=parse.media_type(headers.get("Content-Type")),
        ttl=parse.ttl(headers.get("Stream-TTL")),
        expires_at=parse.expires_at(headers.get("Stream-Expires-At")),
        closed=parse.flag(headers.get("Stream-Closed")),
        fork=fork,
        body=await read_body(ctx.max_body, DurableStreamError),
    )
    stream, created = await ctx.store.create(ctx.name, creation, owner=ctx.owner)
    response_headers = _tail_headers(stream)
    if created:
        response_headers["Location"] = request.host_url.rstrip("/") + request.path
    return protocol_response(201 if created else 200, response_headers, content_type=stream.content_type)


def _fork_spec(name: str) -> ForkSpec | None:
    headers = request.headers
    source = headers.get("Stream-Forked-From")
    offset_text = headers.get("Stream-Fork-Offset")
    sub_text = headers.get("Stream-Fork-Sub-Offset")
    if source is None:
        if offset_text is not None or sub_text is not None:
            raise bad_request("fork_header_without_source", "fork offsets need Stream-Forked-From")
        return None
    offset = parse.fork_offset(offset_text)
    sub_offset = 0 if sub_text is None else parse.non_negative(sub_text.strip(), "Stream-Fork-Sub-Offset")
    if sub_offset and offset is None:
        raise bad_request("sub_offset_without_offset", "Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
    return ForkSpec(_source_name(source.strip(), name), offset, sub_offset)


def _source_name(source: str, name: str) -> str:
    """``Stream-Forked-From`` (a path on this server) as a stream name."""
    mount = request.path[: len(request.path) - len(name)]
    if source.startswith(mount):
        return source[len(mount) :]
    if source.startswith("/"):
        raise DurableStreamError(404, "stream_not_found", f"{source!r} is not a stream on this server")
    return source


async def _append(ctx: _Context) -> Response:
    headers = request.headers
    try:
        claim = parse_claim(
            headers.get("Producer-Id"), headers.get("Producer-Epoch"), headers.get("Producer-Seq")
        )
    except ValueError as exc:
        raise bad_request("invalid_producer_headers", str(exc)) from None
    close = parse.flag(headers.get("Stream-Closed"))
    body = await read_body(ctx.max_body, DurableStreamError)
    # An empty (close-only) request is never refused for its Content-Type.
    content_type = parse.media_type(headers.get("Content-Type")) if body else None
    outcome = await ctx.store.append(
        ctx.name, AppendRequest(body, content_type, close, claim, headers.get("Stream-Seq")), owner=ctx.owner
    )
    response_headers = {"Stream-Next-Offset": str(outcome.next_offset)}
    if outcome.closed:
        response_headers["Stream-Closed"] = "true"
    if outcome.producer_epoch is not None:
        response_headers["Producer-Epoch"] = str(outcome.producer_epoch)
        response_headers["Producer-Seq"] = str(outcome.producer_seq)
    return protocol_response(outcome.status, response_headers)


async def _head(ctx: _Context) -> Response:
    stream = await ctx.store.head(ctx.name, owner=ctx.owner)
    headers = _tail_headers(stream)
    headers["Cache-Control"] = "no-store"
    if stream.ttl is not None:
        headers["Stream-TTL"] = str(stream.ttl)
    if stream.expires_at is not None:
        headers["Stream-Expires-At"] = stream.expires_at.text
    return protocol_response(200, headers, content_type=stream.content_type)


async def _delete(ctx: _Context) -> Response:
    await ctx.store.delete(ctx.name, owner=ctx.owner)
    return protocol_response(204)


async def _read(ctx: _Context) -> Response:
    start, live = read_query()
    source = await ctx.store.open_read(ctx.name, owner=ctx.owner)
    return await serve_read(source, start, live, ctx.settings)


def _tail_headers(stream: StreamInfo) -> dict[str, str]:
    headers = {"Stream-Next-Offset": str(stream.tail)}
    if stream.closed:
        headers["Stream-Closed"] = "true"
    return headers


_HANDLERS = {"PUT": _create, "POST": _append, "HEAD": _head, "DELETE": _delete, "GET": _read}
