"""API errors: one exception type, one JSON shape, the right status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response

from .._events import encode_json

if TYPE_CHECKING:
    from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An error the API reports as ``{"error": {"code", "message", ...}}``.

    Attributes:
        status: the HTTP status.
        code: a stable, machine-readable code (``run_not_found``, ...).
        extra: more fields for the error object (e.g. ``run_id``).
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers = headers or {}


def error_response(error: ApiError) -> Response:
    """The JSON response for ``error``."""
    body = {"error": {"code": error.code, "message": error.message, **error.extra}}
    response = Response(encode_json(body), status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


# Werkzeug's HTTP errors (routing, body limit, method) mapped to our codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "at_capacity",
}


def http_exception_response(exc: HTTPException) -> Response:
    """A Werkzeug/Quart HTTP error as our JSON error document."""
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    response = error_response(ApiError(status, code, str(message)))
    if status == 405:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
    return response
