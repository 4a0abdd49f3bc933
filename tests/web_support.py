"""Helpers for the HTTP tests: an app under test, SSE parsing."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trio_streams.bench._httpclient import SSEMessage, SSEParser
from trio_streams.web import TrioStreams, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from quart.typing import TestClientProtocol


@dataclass
class Api:
    client: TestClientProtocol
    streams: TrioStreams

    async def start(
        self, status: int = 201, headers: dict[str, str] | None = None, **body: Any
    ) -> dict[str, Any]:
        body.setdefault("producer", "demo")
        response = await self.client.post("/v1/runs", json=body, headers=headers or {})
        doc = await response.get_json()
        assert response.status_code == status, doc
        return doc  # type: ignore[no-any-return]

    async def events(
        self, run_id: str, headers: dict[str, str] | None = None, query: str = ""
    ) -> list[SSEMessage]:
        response = await self.client.get(f"/v1/runs/{run_id}/events{query}", headers=headers or {})
        assert response.status_code == 200, await raw(response)
        return parse_sse(await raw(response))

    async def status(self, run_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/v1/runs/{run_id}", headers=headers or {})
        assert response.status_code == 200, await raw(response)
        return await response.get_json()  # type: ignore[no-any-return]


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Api]:
    """The ``serve`` app with ``options``, started as under a server."""
    app = create_app(**options)
    failure: BaseException | None = None
    # Quart's test app gives shutdown 6 s by default; the hub's drain may
    # take shutdown_grace (10 s) plus finalization.
    async with app.test_app_class(app, shutdown_timeout=60) as test_app:  # type: ignore[call-arg]
        try:
            yield Api(test_app.test_client(), app.extensions["trio_streams"])
        except AssertionError as exc:
            # Raised through TrioTestApp's hand-entered nursery, a failure
            # shows up as "Nursery stack corrupted"; re-raise it outside.
            failure = exc
    if failure is not None:
        raise failure


async def raw(response: Any) -> bytes:
    """A test response's body as bytes."""
    data = await response.get_data(as_text=False)
    assert isinstance(data, bytes)
    return data


def parse_sse(raw: bytes) -> list[SSEMessage]:
    """Every message and comment in a complete event stream."""
    return SSEParser().feed(raw)


def events_of(messages: list[SSEMessage]) -> list[tuple[int | None, str, Any]]:
    """``(id, event, data)`` of the real messages (comments dropped; a gap has id None)."""
    out = []
    for message in messages:
        if message.comment is not None:
            continue
        ident = int(message.id) if message.id is not None and message.event != "gap" else None
        out.append((ident, message.event, json.loads(message.data)))
    return out


def error_code(doc: dict[str, Any]) -> str:
    return str(doc["error"]["code"])
