"""Durable Streams HTTP plumbing: exact responses, error documents, security and CORS headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ._messages import Response

if TYPE_CHECKING:
    from ..durable._errors import DurableStreamError
    from ._messages import Request

#: The protocol's headers a browser may send (CORS preflight) and read.
REQUEST_HEADERS = (
    "Authorization, Content-Type, If-None-Match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, "
    "Producer-Id, Producer-Epoch, Producer-Seq"
)
EXPOSED_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Stream-SSE-Data-Encoding, ETag, Location, Content-Type, "
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq"
)
METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
#: Security and CORS headers for every Durable Streams response, errors included
#: (the adapter adds them, so that refusals it renders get them too).
BROWSER_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": EXPOSED_HEADERS,
}


def protocol_response(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response with exactly the headers given (no ``Content-Type`` unless one is given)."""
    all_headers = {} if content_type is None else {"Content-Type": content_type}
    all_headers.update(headers or {})
    return Response(status, all_headers, body)


def error_document(
    method: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """``{"error": {"code", "message"}}`` with the protocol's headers (a HEAD gets no body)."""
    body = b"" if method == "HEAD" else json.dumps({"error": {"code": code, "message": message}}).encode()
    return protocol_response(status, headers, body=body, content_type="application/json")


def render_error(error: DurableStreamError, method: str) -> Response:
    """The response to a refused request (``method``: the request's)."""
    return error_document(method, error.status, error.code, error.message, error.headers)


def render_http_error(status: int, message: str, method: str) -> Response:
    """An HTTP error of the server or framework (413, 405, ...) as a protocol error document."""
    code = {413: "body_too_large", 405: "method_not_allowed"}.get(status, "http_error")
    return error_document(method, status, code, message)


def preflight(request: Request) -> Response:
    """The answer to a CORS preflight (``OPTIONS``)."""
    asked = request.headers.get("Access-Control-Request-Headers")
    return protocol_response(
        204,
        {
            "Access-Control-Allow-Methods": METHODS,
            "Access-Control-Allow-Headers": f"{REQUEST_HEADERS}, {asked}" if asked else REQUEST_HEADERS,
            "Access-Control-Max-Age": "86400",
            "Allow": METHODS,
        },
    )


def etag_matches(request: Request, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (or ``*``)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = {candidate.strip() for candidate in header.split(",")}
    return etag in candidates or "*" in candidates
