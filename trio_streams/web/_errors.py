"""API errors as Quart responses (the error type and its JSON shape live in the protocol layer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import ApiError, api_error_response, http_error_response
from ._adapter import to_quart

if TYPE_CHECKING:
    from quart import Response
    from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "error_response", "http_exception_response"]


def error_response(error: ApiError) -> Response:
    """The JSON response for ``error``."""
    return to_quart(api_error_response(error))


def http_exception_response(exc: HTTPException) -> Response:
    """A Werkzeug/Quart HTTP error as our JSON error document."""
    allowed = getattr(exc, "valid_methods", None)
    message = exc.description or exc.name
    return to_quart(http_error_response(exc.code or 500, str(message), allowed=allowed))
