"""The OpenAPI paths of the Durable Streams protocol (``<prefix>/stream/...``).

Written by hand from :mod:`trio_streams.protocol._ds_handlers` and
:mod:`trio_streams.protocol._ds_reads`: every method, the headers and query
parameters each reads, the statuses it answers. A stream's bytes have the
stream's own media type, so data bodies are described as ``*/*`` (requests:
the three common types, which a client can replace by any ``type/subtype``).
The suite fuzzes the live server against it (``tests/test_openapi_fuzz.py``).
"""

from __future__ import annotations

from typing import Any

from ._openapi_subscriptions import subscription_paths

_DECIMAL = "^(0|[1-9][0-9]{0,15})$"
_STREAM_NAME = {
    "name": "stream_name",
    "in": "path",
    "required": True,
    "description": (
        "The stream's name; it may contain `/` (then percent-encoded here). Names under `runs/` are "
        "the hub's runs (read-only), `__ds/` is reserved (501)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 1024},
}
_SUBSCRIBED_NAME = {
    **_STREAM_NAME,
    "description": (
        "The stream's name; it may contain `/` (then percent-encoded here). Names under `runs/` are "
        "the hub's runs (read-only), `__ds/` the subscriptions' control API."
    ),
}
_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"} if schema is None else schema,
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"} if schema is None else schema,
    }


def _error(description: str, *, head: bool = False) -> dict[str, Any]:
    """A protocol error document (a ``HEAD`` answer has the status and no body)."""
    if head:
        return {"description": description + " (no body: HEAD)"}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"schema": {"type": "string"}} for name in names}


_TAIL = _headers("Stream-Next-Offset", "Stream-Closed")
_READ_STATE = _headers(
    "Stream-Next-Offset", "Stream-Up-To-Date", "Stream-Closed", "Stream-Cursor", "ETag", "Cache-Control"
)
_BYTES: dict[str, Any] = {"*/*": {"schema": {}}}
_REQUEST_BODY = {
    "required": False,
    "description": "Bytes of the stream's media type (JSON streams: a value or an array of values).",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {}},
    },
}
_AUTH = {"401": _error("Auth is on and the bearer token is missing or unknown.")}
_UNAVAILABLE = {"503": _error("The store is unreachable, or the server is not serving (`Retry-After`).")}
_NAME_ERRORS = {
    "400": _error("A malformed header, query parameter or stream name."),
    "501": _error("A name under the reserved `__ds/` namespace (subscriptions are not implemented)."),
}
_TTL = _header("Stream-TTL", "Seconds of idleness before the stream expires.", {"type": "string"})
_EXPIRES = _header("Stream-Expires-At", "An RFC 3339 time (with a zone) at which the stream expires.")
_CLOSED = _header("Stream-Closed", "`true`: (create or append and) close the stream.")


#: What a client does next with a stream it created (schemathesis follows these).
_LINKS = {
    operation: {"operationId": operation, "parameters": {"stream_name": "$request.path.stream_name"}}
    for operation in ("appendToStream", "readStream", "describeStream", "deleteStream")
}


def _create() -> dict[str, Any]:
    return {
        "operationId": "createStream",
        "summary": "Create a stream (or a fork); idempotent for the same configuration",
        "parameters": [
            _STREAM_NAME,
            _TTL,
            _EXPIRES,
            _CLOSED,
            _header("Stream-Forked-From", "Fork this stream (a name, or a path on this server)."),
            _header("Stream-Fork-Offset", "Fork at this offset of the source (default: its tail)."),
            _header("Stream-Fork-Sub-Offset", "Units into the append at Stream-Fork-Offset."),
        ],
        "requestBody": _REQUEST_BODY,
        "responses": {
            "201": {"description": "Created.", "headers": {**_TAIL, **_headers("Location")}, "links": _LINKS},
            "200": {"description": "It exists already with this configuration.", "headers": _TAIL},
            **_NAME_ERRORS,
            "404": _error("The fork's source does not exist."),
            "409": _error("It exists with another configuration, or the fork's offset is not in its source."),
            "410": _error("The fork's source was deleted."),
            "413": _error("The body is over the limit."),
            "507": _error("The memory budget refuses the data."),
            **_AUTH,
            **_UNAVAILABLE,
        },
    }


def _append() -> dict[str, Any]:
    producer = "Idempotent producer: all three together (id, epoch, seq: decimal integers)."
    return {
        "operationId": "appendToStream",
        "summary": "Append the body and/or close the stream",
        "parameters": [
            _STREAM_NAME,
            _CLOSED,
            _header("Stream-Seq", "A writer's sequence: each must sort after the last (else 409)."),
            _header("Producer-Id", producer),
            _header("Producer-Epoch", producer),
            _header("Producer-Seq", producer),
        ],
        "requestBody": _REQUEST_BODY,
        "responses": {
            "204": {"description": "Appended (or closed).", "headers": _TAIL},
            "200": {
                "description": "An idempotent producer's append (or its duplicate).",
                "headers": {**_TAIL, **_headers("Producer-Epoch", "Producer-Seq")},
            },
            **_NAME_ERRORS,
            "403": _error("A stale producer epoch."),
            "404": _error("No such stream."),
            "409": _error(
                "The stream is closed, the media type differs, a Stream-Seq or producer seq is out of order."
            ),
            "410": _error("The stream was deleted."),
            "413": _error("The body is over the limit."),
            "507": _error("The memory budget refuses the data."),
            **_AUTH,
            **_UNAVAILABLE,
        },
    }


_READ_PARAMETERS = [
    _query("offset", "Where to read from: `-1` the beginning (default), `now` the tail, or an offset."),
    _query(
        "live",
        "`long-poll`: wait for data (204 at the timeout); `sse`: Server-Sent Events. Needs `offset`.",
        {"enum": ["long-poll", "sse"]},
    ),
    _query("cursor", "The last Stream-Cursor (long-poll and SSE: keeps caches from collapsing reads)."),
    _header("If-None-Match", "An ETag of an earlier catch-up read (304 when unchanged)."),
]


def _read(*, runs: bool) -> dict[str, Any]:
    return {
        "operationId": "readRun" if runs else "readStream",
        "summary": "Read a run's events as a JSON stream" if runs else "Read: catch-up, long-poll or SSE",
        "parameters": [_RUN_ID if runs else _STREAM_NAME, *_READ_PARAMETERS],
        "responses": {
            "200": {
                "description": "Data (the stream's media type), or the SSE stream with `live=sse`.",
                "headers": _READ_STATE,
                "content": {"text/event-stream": {"schema": {"type": "string"}}, **_BYTES},
            },
            "204": {"description": "Long-poll: no data before the timeout.", "headers": _READ_STATE},
            "304": {"description": "Not modified (If-None-Match).", "headers": _READ_STATE},
            "400": _error("A malformed offset or live, or an offset past the tail."),
            **({} if runs else {"501": _NAME_ERRORS["501"]}),
            "404": _error("No such stream." if not runs else "No such run, or not the caller's."),
            "410": _error("The stream was deleted."),
            **_AUTH,
            **_UNAVAILABLE,
        },
    }


def _head(*, runs: bool) -> dict[str, Any]:
    return {
        "operationId": "describeRun" if runs else "describeStream",
        "summary": "The stream's tail, state, media type and expiry (never cached)",
        "parameters": [_RUN_ID if runs else _STREAM_NAME],
        "responses": {
            "200": {
                "description": "The stream exists (no body; Content-Type is the stream's).",
                "headers": {**_TAIL, **_headers("Stream-TTL", "Stream-Expires-At", "Cache-Control")},
            },
            "400": _error("A malformed stream name.", head=True),
            **({} if runs else {"501": _error("A reserved name.", head=True)}),
            "404": _error("No such stream.", head=True),
            "410": _error("The stream was deleted.", head=True),
            "401": _error("Auth is on and the token is missing or unknown.", head=True),
            "503": _error("The store is unreachable.", head=True),
        },
    }


def _delete() -> dict[str, Any]:
    return {
        "operationId": "deleteStream",
        "summary": "Delete the stream (its forks still read its data)",
        "parameters": [_STREAM_NAME],
        "responses": {
            "204": {"description": "Deleted."},
            **_NAME_ERRORS,
            "404": _error("No such stream."),
            "410": _error("Already deleted (forks still read it)."),
            **_AUTH,
            **_UNAVAILABLE,
        },
    }


def _read_only() -> dict[str, Any]:
    return {
        "summary": "Refused: runs are read-only streams (start runs with POST /runs)",
        "parameters": [_RUN_ID],
        "responses": {
            "405": _error("Runs are read-only (`Allow` names the read methods)."),
            # The name is checked before the runs namespace is: a malformed one is a 400,
            # and one that is not a route at all (an empty segment) a 404.
            "400": _error("A malformed stream name."),
            "404": _error("Not a stream route."),
        },
    }


def _preflight(name: str) -> dict[str, Any]:
    # A preflight answers before the name is looked at: any name.
    return {
        "summary": "CORS preflight",
        "security": [{}],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}},
            _header("Access-Control-Request-Headers", "Headers the browser wants to send (echoed)."),
        ],
        "responses": {
            "204": {
                "description": "The methods and headers a browser may use.",
                "headers": _headers(
                    "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"
                ),
            }
        },
    }


def durable_paths(prefix: str, *, subscriptions: bool = False) -> dict[str, Any]:
    """The Durable Streams paths, mounted at ``{prefix}/stream``; with
    ``subscriptions``, the control API under ``__ds/`` too (else its names are 501)."""
    paths = {
        f"{prefix}/stream/runs/{{run_id}}": {
            "description": "A run of the hub as a read-only JSON stream (one message per event).",
            "get": _read(runs=True),
            "head": _head(runs=True),
            "put": _read_only(),
            "post": _read_only(),
            "delete": _read_only(),
            "options": _preflight("run_id"),
        },
        f"{prefix}/stream/{{stream_name}}": {
            "description": "A Durable Stream (PROTOCOL.md of durable-streams/durable-streams).",
            "put": _create(),
            "post": _append(),
            "get": _read(runs=False),
            "head": _head(runs=False),
            "delete": _delete(),
            "options": _preflight("stream_name"),
        },
    }
    if not subscriptions:
        return paths
    # The control API answers every __ds/ name (404 for one it does not know): no 501.
    stream: dict[str, Any] = paths[f"{prefix}/stream/{{stream_name}}"]
    stream["description"] += " Names under `__ds/` are the subscriptions' control API."
    for operation in stream.values():
        if isinstance(operation, dict) and "parameters" in operation:
            operation["responses"].pop("501", None)
            operation["parameters"] = [
                _SUBSCRIBED_NAME if p is _STREAM_NAME else p for p in operation["parameters"]
            ]
    return {**paths, **subscription_paths(prefix)}
