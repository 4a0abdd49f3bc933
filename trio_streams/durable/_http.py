"""HTTP plumbing shared by the Durable Streams routes: bodies, errors, security and CORS headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from quart import Response, request

if TYPE_CHECKING:
    from werkzeug.exceptions import HTTPException

    from ._errors import DurableStreamError

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


def protocol_response(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response with exactly the headers given (no default ``Content-Type`` on empty ones)."""
    response = Response(body, status=status, content_type=content_type or "application/octet-stream")
    if content_type is None:
        del response.headers["Content-Type"]
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_document(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": {"code", "message"}}`` with the protocol's headers (a HEAD gets no body)."""
    body = (
        b""
        if request.method == "HEAD"
        else json.dumps({"error": {"code": code, "message": message}}).encode()
    )
    return protocol_response(status, headers, body=body, content_type="application/json")


def render_error(error: DurableStreamError) -> Response:
    return error_document(error.status, error.code, error.message, error.headers)


def render_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = {413: "body_too_large", 405: "method_not_allowed"}.get(status, "http_error")
    return error_document(status, code, str(error.description or error.name))


def add_browser_headers(response: Response) -> None:
    """Security and CORS headers for every Durable Streams response (errors included)."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    headers["Access-Control-Allow-Origin"] = "*"
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS


def preflight() -> Response:
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


def etag_matches(etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (or ``*``)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = {candidate.strip() for candidate in header.split(",")}
    return etag in candidates or "*" in candidates
