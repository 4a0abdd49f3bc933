"""Dropping the request bodies nobody read (on Quart-Trio).

Reading a body within a limit is the protocol layer's
(:func:`trio_streams.protocol.read_body`); this is the framework's side:
a refused request's body must still leave the connection.
"""

from __future__ import annotations

import contextlib

from quart import request
from werkzeug.exceptions import HTTPException


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
