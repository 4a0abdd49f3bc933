"""The ceiling for the HTTP benchmarks: Hypercorn + Quart-Trio writing
pre-encoded SSE bytes, with no hub, no log and no store.

It answers the few calls ``trio-streams bench`` makes, so the same load
generator drives it: ``POST /v1/runs`` (remembers the token count),
``GET /v1/runs/<id>`` (always finished) and ``GET /v1/runs/<id>/events``
(the demo's events, encoded once and cached).

The strongest fair ceiling writes at least as few, as large writes as our
server: ``CEILING_CHUNK`` events per write (default 1,024, the most our SSE
writer puts in one write for a backlog), each write's bytes joined once and
cached, so a request costs nothing but the writes; ``CEILING_CHUNK=0``
writes the whole pre-encoded body as one write.

Run:  hypercorn --worker-class trio --bind 127.0.0.1:8001 benchmarks.ceiling_app:app
      CEILING_CHUNK=0 hypercorn --worker-class trio --bind 127.0.0.1:8001 benchmarks.ceiling_app:app
"""

from __future__ import annotations

import itertools
import json
import os
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from quart import Response, request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

app = QuartTrio(__name__)
_run_ids = itertools.count(1)
_tokens: dict[str, tuple[int, int]] = {}

#: Events per write: our SSE writer's largest batch (``receive_batch``'s 1,024); 0 = the whole body.
CHUNK = int(os.environ.get("CEILING_CHUNK", "1024"))


@lru_cache(maxsize=16)
def encoded(tokens: int, size: int) -> list[bytes]:
    """The demo run's SSE frames (tokens, then ``done``), one per event."""
    stamp = time.time()
    text = "x" * max(0, size - 1) + " "
    frames = [
        f"id: {i + 1}\nevent: token\ndata: {json.dumps({'i': i, 'text': text, 'ts': stamp})}\n\n".encode()
        for i in range(tokens)
    ]
    frames.append(
        f"id: {tokens + 1}\nevent: done\ndata: {json.dumps({'result': text * tokens})}\n\n".encode()
    )
    return frames


@lru_cache(maxsize=16)
def writes(tokens: int, size: int, after: int) -> list[bytes]:
    """The bytes of each write for a reader starting after seq ``after``, joined once."""
    frames = encoded(tokens, size)[after:]
    step = CHUNK if CHUNK > 0 else max(1, len(frames))
    return [b"".join(frames[start : start + step]) for start in range(0, len(frames), step)]


@app.post("/v1/runs")
async def start() -> tuple[dict[str, Any], int]:
    body = await request.get_json()
    spec = body.get("input") or {}
    run_id = f"ceiling-{next(_run_ids)}"
    _tokens[run_id] = (int(spec.get("tokens", 100)), int(spec.get("size", 16)))
    return {"run_id": run_id, "status": "done"}, 201


@app.get("/v1/runs/<run_id>")
async def status(run_id: str) -> tuple[dict[str, Any], int]:
    if run_id not in _tokens:
        return {"error": {"code": "run_not_found", "message": run_id}}, 404
    return {"run_id": run_id, "status": "done"}, 200


@app.get("/v1/runs/<run_id>/events")
async def events(run_id: str) -> Response | tuple[dict[str, Any], int]:
    if run_id not in _tokens:
        return {"error": {"code": "run_not_found", "message": run_id}}, 404
    after = int(request.headers.get("Last-Event-ID") or request.args.get("after") or 0)
    chunks = writes(*_tokens[run_id], after)

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    response = Response(body(), content_type="text/event-stream")
    response.timeout = None
    return response
