"""HTTP plumbing shared by the Durable Streams routes: bodies, errors, security and CORS headers."""

from __future__ import annotations

import contextlib
import json

from quart import Response, request
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


async def read_body(limit: int) -> bytes:
    """The request body, at most ``limit`` bytes.

    Raises:
        DurableStreamError: 413 beyond ``limit``.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise DurableStreamError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    if len(body) > limit:
        raise DurableStreamError(413, "body_too_large", f"the body is over the {limit}-byte limit")
    return body


async def drain_body() -> None:
    """Read and drop an unread request body (within the app's limit).

    A refused request must still consume its body: otherwise the rest of a
    chunked body stays on the kept-alive connection and the client's next
    request on it stalls. Over the app's limit Quart refuses to read, and
    the connection closes after the response instead.
    """
    with contextlib.suppress(HTTPException):
        await request.get_data(cache=False)


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
