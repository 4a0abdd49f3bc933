"""Reading a request body within a limit, refusing in the caller's error format."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._messages import Request


async def read_body(request: Request, limit: int, refuse: Callable[[int, str, str], Exception]) -> bytes:
    """The request body, at most ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything
    is read; a chunked body is refused once it has grown past the limit.
    Each API passes its own error type (both take ``(status, code,
    message)``), so a refusal renders in that API's error format.

    Raises:
        ``refuse(413, "body_too_large", message)``: the body is over ``limit``.
        Whatever the body reader raises (the framework's own limit).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise refuse(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    body = await request.read_body()
    if len(body) > limit:
        raise refuse(413, "body_too_large", f"the body is over the {limit}-byte limit")
    return body
