"""The ceiling for the Durable Streams benchmark: Hypercorn + Quart-Trio doing nothing.

``PUT`` answers 201 and ``POST`` 204 (after reading the body), each with a
``Stream-Next-Offset`` header, and no store at all: whatever our server
does per append on top of this is ours to optimize; this much is the stack's.

Run:  python -m hypercorn --worker-class trio --bind 127.0.0.1:8002 benchmarks.durable_ceiling:app
"""

from __future__ import annotations

import itertools

from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio(__name__)
_counter = itertools.count(1)


@app.route("/v1/stream/<path:name>", methods=["PUT", "POST"])
async def stream(name: str) -> Response:
    await request.get_data(cache=False)
    response = Response(b"", status=201 if request.method == "PUT" else 204)
    del response.headers["Content-Type"]
    response.headers["Stream-Next-Offset"] = f"{next(_counter):016d}_{0:016d}"
    return response
