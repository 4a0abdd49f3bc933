"""The Durable Streams protocol's operations as framework-free handlers.

Every stream is ``<mount>/<name>`` (``name`` may contain slashes). ``PUT``
creates (or forks), ``POST`` appends and/or closes, ``HEAD`` describes,
``DELETE`` deletes, ``GET`` reads (catch-up, ``live=long-poll``,
``live=sse``), ``OPTIONS`` answers CORS preflights. Names under ``runs/``
are the runs of the hub, read-only (:class:`~._run_streams.RunStreams`);
``__ds/`` is the protocol's reserved control namespace: subscriptions
(:mod:`._ds_subscriptions`) when the service has a registry, else 501.

With ``access="owner"`` every name is in the caller's own namespace
(:mod:`trio_streams.durable._access`): a request reaches only its caller's
streams, so another user's stream is exactly as absent as one nobody created.

:func:`handle_stream_request` takes a parsed request and a
:class:`DurableService` and returns the response; refusals are raised
(:class:`~trio_streams.durable.DurableStreamError`, rendered with
:func:`~._ds_http.render_error`) and the adapter adds
:data:`~._ds_http.BROWSER_HEADERS` to every response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import trio

from ..durable import _headers as parse
from ..durable._errors import DurableStreamError, bad_request
from ..durable._producers import parse_claim
from ..durable._stream import AppendRequest, CreateRequest, ForkSpec
from ._body import read_body
from ._ds_http import preflight, protocol_response
from ._ds_reads import read_query, serve_read
from ._ds_subscriptions import handle_control

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..durable._access import DurableAccess
    from ..durable._backend import DurableBackend, StreamInfo
    from ..durable._reads import ReadSettings
    from ..durable._subscriptions import SubscriptionRegistry
    from ._messages import Request, Response, StreamingResponse
    from ._run_streams import RunStreams

RUNS_PREFIX = "runs/"
RESERVED_PREFIX = "__ds/"

MAX_NAME_LENGTH = 1024
#: A control character (one regex search, not a generator over every character).
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class DurableService:
    """Everything the handlers use besides the request.

    Attributes:
        store: where streams live.
        settings: live reads' timeouts, caching, and the waiting gauge.
        max_body: the largest ``PUT``/``POST`` body, in bytes (413 beyond).
        authorize: called with the ``Authorization`` header before anything
            else; raises to refuse. ``None``: open.
        access: ``"shared"`` or ``"owner"`` (names per caller: ``authorize``
            returns the owner).
        runs: serves ``runs/<run_id>``; ``None``: those are ordinary names.
        observe_append: called with each acknowledged append's duration
            (seconds on the trio clock, from handing it to the store to
            the store's answer); ``None``: not measured.
    """

    store: DurableBackend
    settings: ReadSettings
    max_body: int
    authorize: Callable[[str | None], object] | None = None
    access: DurableAccess = "shared"
    runs: RunStreams | None = None
    observe_append: Callable[[float], None] | None = None
    #: Serves ``__ds/`` (subscriptions); ``None``: those names answer 501.
    subscriptions: SubscriptionRegistry | None = None


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """The stream a request is about: its store, name and namespace."""

    service: DurableService
    name: str
    #: The namespace the name is in (``None``: the shared one).
    owner: str | None


async def handle_stream_request(request: Request, service: DurableService) -> Response | StreamingResponse:
    """Answer one request for ``request.path_params["stream_name"]``.

    A long-poll awaits data (at most the long-poll timeout); an SSE read
    returns at once, its frames generated as the server iterates them.
    Cancellation ends any wait and propagates; nothing is left parked.

    Raises:
        DurableStreamError: the protocol's refusals (400, 404, 409, 413, 501...).
        Whatever ``service.authorize`` raises to refuse.
        KeyError: a method the protocol does not define (routing refuses those first).
    """
    name = request.path_params["stream_name"]
    if request.method == "OPTIONS":
        return preflight(request)
    if service.subscriptions is not None and _is_reserved(name):
        check_name(name)
        return await handle_control(request, service, name, lambda: _caller_namespace(request, service))
    owner = None
    if service.authorize is not None:
        caller = service.authorize(request.headers.get("Authorization"))
        if service.access == "owner":
            owner = _owner(caller)
    check_name(name)
    if _is_reserved(name):
        raise DurableStreamError(501, "not_implemented", "subscriptions (__ds/) are not implemented")
    if service.runs is not None and name.startswith(RUNS_PREFIX):
        return await service.runs.handle(request, name.removeprefix(RUNS_PREFIX), service.settings)
    handler = HANDLERS[request.method]
    return await handler(request, StreamTarget(service, name, owner))


def _is_reserved(name: str) -> bool:
    """The protocol reserves every name whose first segment is ``__ds`` (``__ds`` itself too)."""
    return name.startswith(RESERVED_PREFIX) or name == "__ds"


def _caller_namespace(request: Request, service: DurableService) -> str | None:
    """Authorize ``request``; the namespace its names are in (``None``: the shared one)."""
    if service.authorize is None:
        return None
    caller = service.authorize(request.headers.get("Authorization"))
    return _owner(caller) if service.access == "owner" else None


def _owner(caller: object) -> str:
    if not isinstance(caller, str):
        # A configuration error (not the client's): authorize must name the caller.
        raise TypeError(f"with access='owner', authorize must return the caller's name, not {caller!r}")
    return caller


def check_name(name: str) -> None:
    """Refuse (400) a name that is too long, has control characters, or empty/dot segments."""
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request("invalid_stream_name", f"a stream name is at most {MAX_NAME_LENGTH} characters")
    if _CONTROL.search(name):
        raise bad_request("invalid_stream_name", "a stream name may not contain control characters")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise bad_request("invalid_stream_name", "a stream name may not have empty, '.' or '..' segments")


async def handle_create(request: Request, target: StreamTarget) -> Response:
    """``PUT``: create the stream (or a fork); 201 when created, 200 when it matched."""
    headers = request.headers
    fork = fork_spec(request, target.name)
    creation = CreateRequest(
        content_type=parse.media_type(headers.get("Content-Type")),
        ttl=parse.ttl(headers.get("Stream-TTL")),
        expires_at=parse.expires_at(headers.get("Stream-Expires-At")),
        closed=parse.flag(headers.get("Stream-Closed")),
        fork=fork,
        body=await read_body(request, target.service.max_body, DurableStreamError),
    )
    stream, created = await target.service.store.create(target.name, creation, owner=target.owner)
    response_headers = _tail_headers(stream)
    if created:
        # The path is percent-decoded: encoded again, a name with a space, '?', '#', '%' or
        # non-ASCII letters is a URI that leads back to it.
        response_headers["Location"] = request.host_url.rstrip("/") + quote(request.path, safe="/")
    return protocol_response(201 if created else 200, response_headers, content_type=stream.content_type)


def fork_spec(request: Request, name: str) -> ForkSpec | None:
    """The fork a ``PUT`` asks for (``Stream-Forked-From`` and its offsets), or ``None``."""
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
    return ForkSpec(_source_name(request, source.strip(), name), offset, sub_offset)


def _source_name(request: Request, source: str, name: str) -> str:
    """``Stream-Forked-From`` (a path on this server) as a stream name.

    The header is a URL's path component, so it is percent-decoded as the request's own path is:
    a stream's ``Location`` (percent-encoded) names it.
    """
    source = unquote(source)
    mount = request.path[: len(request.path) - len(name)]
    if source.startswith(mount):
        return source[len(mount) :]
    if source.startswith("/"):
        raise DurableStreamError(404, "stream_not_found", f"{source!r} is not a stream on this server")
    return source


async def handle_append(request: Request, target: StreamTarget) -> Response:
    """``POST``: append the body and/or close; idempotent producers and ``Stream-Seq`` checked."""
    headers = request.headers
    try:
        claim = parse_claim(
            headers.get("Producer-Id"), headers.get("Producer-Epoch"), headers.get("Producer-Seq")
        )
    except ValueError as exc:
        raise bad_request("invalid_producer_headers", str(exc)) from None
    close = parse.flag(headers.get("Stream-Closed"))
    body = await read_body(request, target.service.max_body, DurableStreamError)
    # An empty (close-only) request is never refused for its Content-Type.
    content_type = parse.media_type(headers.get("Content-Type")) if body else None
    started = trio.current_time()
    outcome = await target.service.store.append(
        target.name,
        AppendRequest(body, content_type, close, claim, headers.get("Stream-Seq")),
        owner=target.owner,
    )
    if target.service.observe_append is not None:
        target.service.observe_append(trio.current_time() - started)
    response_headers = {"Stream-Next-Offset": str(outcome.next_offset)}
    if outcome.closed:
        response_headers["Stream-Closed"] = "true"
    if outcome.producer_epoch is not None:
        response_headers["Producer-Epoch"] = str(outcome.producer_epoch)
        response_headers["Producer-Seq"] = str(outcome.producer_seq)
    return protocol_response(outcome.status, response_headers)


async def handle_head(request: Request, target: StreamTarget) -> Response:
    """``HEAD``: the stream's tail, state, type and expiry, never cached."""
    stream = await target.service.store.head(target.name, owner=target.owner)
    headers = _tail_headers(stream)
    headers["Cache-Control"] = "no-store"
    if stream.ttl is not None:
        headers["Stream-TTL"] = str(stream.ttl)
    if stream.expires_at is not None:
        headers["Stream-Expires-At"] = stream.expires_at.text
    return protocol_response(200, headers, content_type=stream.content_type)


async def handle_delete(request: Request, target: StreamTarget) -> Response:
    """``DELETE``: 204 (forks still read a deleted stream's data)."""
    await target.service.store.delete(target.name, owner=target.owner)
    return protocol_response(204)


async def handle_read(request: Request, target: StreamTarget) -> Response | StreamingResponse:
    """``GET``: catch-up, long-poll or SSE (the query is checked before the stream is looked up)."""
    start, live = read_query(request)
    source = await target.service.store.open_read(target.name, owner=target.owner)
    return await serve_read(request, source, start, live, target.service.settings)


def _tail_headers(stream: StreamInfo) -> dict[str, str]:
    headers = {"Stream-Next-Offset": str(stream.tail)}
    if stream.closed:
        headers["Stream-Closed"] = "true"
    return headers


HANDLERS: dict[str, Callable[[Request, StreamTarget], Awaitable[Response | StreamingResponse]]] = {
    "PUT": handle_create,
    "POST": handle_append,
    "HEAD": handle_head,
    "DELETE": handle_delete,
    "GET": handle_read,
}
