"""Bad input on every route of a real server: never a 5xx, never a traceback in the log.

A black-box sweep (issue 12): hostile bodies under several content types,
bad query parameters, headers and paths, on the runs API, the ops
endpoints and Durable Streams (``/v1/stream/*``, runs as streams
included). Each answer must be a 4xx (or a 2xx where the input is merely
odd); the one deliberate 5xx is the protocol's ``501`` for ``__ds/``.

Real I/O: no mock clock; the whole sweep runs under a trio deadline.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import trio

from .server_support import running_server

DEADLINE = 120
JSON = {"Content-Type": "application/json"}

BODIES = [
    b"{",
    b"[]",
    b"null",
    b"",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"producer": "demo", "metadata": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    b'{"producer": "demo", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"producer": "demo", "metadata": {"x": NaN}}',
    b'{"producer": "demo", "metadata": {"x": 1e999}}',
    b'{"producer": "demo", "metadata": {"x": ' + b"9" * 5000 + b"}}",
    b'{"producer": "demo", "metadata": {"x": "\xff\xfe"}}',
    b'{"producer": "demo", "metadata": {"\\udfff": "\\ud800"}}',
    b'{"producer": "demo", "key": "\\ud800"}',
    b'{"producer": "demo", "input": {"rate": 1e999, "tokens": 1e999}}',
    b'{"reason": "\\ud800"}',
    '{"producer": "demo"}'.encode("utf-16"),
]
CONTENT_TYPES: list[dict[str, str]] = [JSON, {"Content-Type": "text/plain"}, {}]
QUERIES = [
    "status=x",
    "status=%ff",
    "limit=1e999",
    "limit=NaN",
    "limit=99999999999999999999999",
    "limit=%00",
    "after=1e999",
    "after=-1",
    "after=%ff",
    "wait=%ff",
    "offset=1e999",
    "offset=%ff",
    "offset=" + "9" * 100,
    "offset=-1&live=%ff",
    "offset=-1&offset=now",
    "live=sse",
]
HEADERS = [
    {"Last-Event-ID": "1e999"},
    {"Last-Event-ID": "9" * 30},
    {"Authorization": "Bearer " + "a" * 5000},
    {"Stream-TTL": "1e999"},
    {"Stream-Expires-At": "9999-99-99T99:99:99Z"},
    {"Stream-Forked-From": "/v1/stream/%ff"},
    {"Stream-Fork-Offset": "NaN"},
    {"Producer-Id": "p", "Producer-Epoch": "1e999", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "9" * 100, "Producer-Seq": "0"},
]


async def _raw(url: str, request: bytes) -> int:
    """Send bytes httpx would refuse to (invalid UTF-8 in a path); the status answered."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


async def test_no_bad_input_gets_a_5xx_or_a_traceback(caplog: Any) -> None:
    caplog.set_level(logging.ERROR)
    answers: list[tuple[int, str]] = []
    with trio.fail_after(DEADLINE):
        async with running_server(long_poll_timeout=0.5) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def send(method: str, path: str, **kwargs: Any) -> None:
                    response = await client.request(method, path, **kwargs)
                    answers.append((response.status_code, f"{method} {path[:60]} {kwargs.get('headers')}"))

                started = await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 2}})
                run_id = started.json()["run_id"]
                assert (await client.put("/v1/stream/sweep", headers=JSON)).status_code == 201
                assert (
                    await client.put("/v1/stream/text", headers={"Content-Type": "text/plain"})
                ).status_code == 201
                for body in BODIES:
                    for headers in CONTENT_TYPES:
                        for path in ("/v1/runs", f"/v1/runs/{run_id}/cancel", "/v1/runs/nope/cancel"):
                            await send("POST", path, content=body, headers=headers)
                        await send("POST", "/v1/stream/sweep", content=body, headers=headers)
                        await send("PUT", "/v1/stream/sweep-new", content=body, headers=headers)
                    await send(
                        "POST", "/v1/stream/text", content=body, headers={"Content-Type": "text/plain"}
                    )
                for query in QUERIES:
                    for path in (
                        "/v1/runs",
                        f"/v1/runs/{run_id}/events",
                        "/v1/stream/sweep",
                        "/v1/stream/text",
                        f"/v1/stream/runs/{run_id}",
                    ):
                        await send("GET", f"{path}?{query}")
                    await send("POST", f"/v1/runs/{run_id}/cancel?{query}", content=b"", headers=JSON)
                for headers in HEADERS:
                    await send("GET", "/v1/runs", headers=headers)
                    await send("GET", f"/v1/runs/{run_id}/events", headers=headers)
                    await send("PUT", "/v1/stream/headers", headers={**JSON, **headers})
                    await send("POST", "/v1/stream/sweep", content=b"[1]", headers={**JSON, **headers})
                for path in (
                    "/v1/runs/%ff",
                    "/v1/runs/%00",
                    "/v1/runs/" + "a" * 5000,
                    "/%ff",
                    "/healthz?x=%ff",
                    "/metrics?%ff",
                    "/openapi.json?%ff=1",
                    "/v1/stream/%ff",
                    "/v1/stream/a%00b",
                    "/v1/stream/runs/%ff",
                    "/v1/stream/" + "a" * 5000,
                ):
                    await send("GET", path)
                    await send("POST", path, content=b"[1]", headers=JSON)
                # The listing still works: nothing above left a run it cannot encode.
                listing = await client.get("/v1/runs")
                answers.append((listing.status_code, "GET /v1/runs (after the sweep)"))
            for target in (b"/v1/runs/\xff\xfe", b"/v1/stream/\xff\xfe", b"/v1/runs?status=\xff"):
                status = await _raw(server.url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append((status, f"GET {target!r} (raw)"))
    assert len(answers) > 300
    server_errors = [(status, what) for status, what in answers if status >= 500]
    assert server_errors == [], server_errors
    tracebacks = [
        record
        for record in caplog.records
        if record.exc_info or "Exception on request" in record.getMessage()
    ]
    assert tracebacks == [], [record.getMessage() for record in tracebacks]
