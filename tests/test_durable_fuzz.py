"""Random requests against the Durable Streams routes: never a 5xx, always a JSON error, never a hang.

A seeded generator mixes valid and broken values for every header and query
parameter the protocol reads, on a handful of stream names (so creates,
appends, forks, closes and deletes meet each other), through the app on the
autojump clock (long-polls and SSE end by their timeouts, instantly).
"""

from __future__ import annotations

import json
import random

import trio
import trio.testing

from .web_support import raw, serving

NAMES = ["a", "b", "dir/c", "runs/nope", "__ds/subscriptions/x"]
OFFSETS = [
    "-1",
    "now",
    "",
    "0000000000000000_0000000000000000",
    "0000000000000001_0000000000000003",
    "9999999999999999_9999999999999999",
    "abc",
    "0,1",
    "../x",
    "0000000000000000_000000000000000",
]
CONTENT_TYPES = [
    None,
    "text/plain",
    "application/json",
    "application/octet-stream",
    "TEXT/PLAIN; charset=x",
    "",
    "nonsense",
    "application/json; charset=utf-8",
]
BODIES = [b"", b"x", b"{}", b"[]", b"[1,2]", b'{"a":', b"\xff\xfe", b"NaN", b"[[1]]", b"line\r\nbreak"]
NUMBERS = [None, "0", "1", "2", "-1", "01", "1.5", "1e3", "+1", "x", "9007199254740992", ""]
METHODS = ["GET", "GET", "HEAD", "PUT", "PUT", "POST", "POST", "POST", "DELETE", "OPTIONS", "PATCH"]


def random_request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    method = rng.choice(METHODS)
    name = rng.choice(NAMES)
    query: list[str] = []
    if rng.random() < 0.7:
        query.append(f"offset={rng.choice(OFFSETS)}")
    if rng.random() < 0.3:
        query.append(f"live={rng.choice(['long-poll', 'sse', 'nope', ''])}")
    if rng.random() < 0.2:
        query.append(f"cursor={rng.choice(['1', 'x', '99999999999999999999'])}")
    headers: dict[str, str] = {}
    content_type = rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    for header, values in (
        ("Stream-TTL", NUMBERS),
        (
            "Stream-Expires-At",
            [None, "2099-01-01T00:00:00Z", "2000-01-01T00:00:00+00:00", "soon", "2099-01-01"],
        ),
        ("Stream-Closed", [None, "true", "TRUE", "false", "yes"]),
        ("Stream-Seq", [None, "1", "2", "a", "B"]),
        ("Producer-Id", [None, "p", ""]),
        ("Producer-Epoch", NUMBERS),
        ("Producer-Seq", NUMBERS),
        ("Stream-Forked-From", [None, "/v1/stream/a", "b", "/elsewhere/x", "/v1/stream/missing"]),
        ("Stream-Fork-Offset", [None, *OFFSETS[3:6], "bad"]),
        ("Stream-Fork-Sub-Offset", NUMBERS),
        ("If-None-Match", [None, '"1:0:0"', "*", "junk"]),
    ):
        value = rng.choice(values) if rng.random() < 0.3 else None
        if value is not None:
            headers[header] = value
    body = rng.choice(BODIES) if method in ("PUT", "POST") else b""
    path = f"/v1/stream/{name}" + (f"?{'&'.join(query)}" if query else "")
    return method, path, headers, body


async def test_random_requests_get_protocol_answers(autojump_clock: trio.testing.MockClock):
    rng = random.Random(20261130)
    statuses: set[int] = set()
    async with serving(long_poll_timeout=5, sse_recycle=7) as api:
        for _ in range(600):
            method, path, headers, body = random_request(rng)
            with trio.fail_after(30):  # trio's clock: live reads end at 5 and 7 s
                # quart.typing marks json= required; passing it at all makes it clash with data=
                response = await api.client.open(path, method=method, headers=headers, data=body)  # type: ignore[call-arg]
                content = await raw(response)
            status = response.status_code
            statuses.add(status)
            assert status < 500 or status in (501, 507), (method, path, headers, body, status, content)
            assert response.headers.get("X-Content-Type-Options") == "nosniff" or method == "PATCH", (
                method,
                status,
            )
            if status >= 400 and method != "HEAD":
                error = json.loads(content)["error"]
                assert error["code"]
                assert error["message"]
    # The mix exercised successes and refusals of many kinds.
    assert {200, 201, 204, 400, 404, 405, 409, 501}.issubset(statuses), statuses
