"""Reading request bodies within a limit, and dropping the ones nobody reads.

Shared by the runs API and the Durable Streams blueprint; each passes its own
error type (both take ``(status, code, message)``), so a refusal renders in
that API's error format.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from quart import request
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from collections.abc import Callable


async def read_body(limit: int, refuse: Callable[[int, str, str], Exception]) -> bytes:
    """The request body, at most ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything
    is read; a chunked body is refused once it has grown past the limit.

    Raises:
        ``refuse(413, "body_too_large", message)``: the body is over ``limit``.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise refuse(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    if len(body) > limit:
        raise refuse(413, "body_too_large", f"the body is over the {limit}-byte limit")
    return body


async def consume_body() -> None:
    """Read (and drop) the rest of the request body, within the app's body limit.

    A request refused before its body was read (a 405 from routing, a 401)
    must still have its body consumed: Hypercorn otherwise leaves the rest of
    a chunked body on the kept-alive connection, and the client's next
    request on it hangs (found by schemathesis; reproduced with requests).
    Over the app's limit Quart refuses to read, and the connection closes
    after the response instead.
    """
    with contextlib.suppress(HTTPException):
        await request.get_data(cache=False)
