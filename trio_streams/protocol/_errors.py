"""The runs API's refusals: one exception type, one JSON shape, the right status."""

from __future__ import annotations

from typing import Any

from .._errors import StreamError
from ..log._events import encode_json
from ._messages import Response


class ApiError(StreamError):
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


def api_error_response(error: ApiError) -> Response:
    """The JSON response for ``error``."""
    document = {"error": {"code": error.code, "message": error.message, **error.extra}}
    headers = {"Content-Type": "application/json", **error.headers}
    return Response(error.status, headers, encode_json(document).encode())


# HTTP errors of the server or framework (routing, body limit, method) mapped to our codes.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "at_capacity",
}


def http_error_response(status: int, message: str, *, allowed: list[str] | None = None) -> Response:
    """An HTTP error the framework raised (e.g. a 405 from routing) as our JSON error document."""
    response = api_error_response(ApiError(status, HTTP_CODES.get(status, "http_error"), message))
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(sorted(allowed))
    return response
