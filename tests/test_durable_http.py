"""Durable Streams over a real Hypercorn server: the protocol's HTTP surface, live reads, runs.

Real I/O: no mock clock; every test runs under a trio deadline instead.
The public conformance suite (scripts/conformance) covers the protocol
exhaustively; these tests pin what it does not: our errors, limits, SSE
recycling, keep-alive after refusals, and runs as streams.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
import trio

from trio_streams.bench._httpclient import HTTPConnection, SSEParser
from trio_streams.log.redis import RedisStore

from .redis_support import unique_prefix
from .server_support import running_server

DEADLINE = 20


async def sse_events(base_url: str, path: str, stop_after: int | None = None) -> list[tuple[str, str]]:
    """Read an SSE response until the server ends it (or ``stop_after`` events): ``(event, data)`` pairs."""
    connection = HTTPConnection(base_url)
    parser = SSEParser()
    events: list[tuple[str, str]] = []
    try:
        async with connection.stream("GET", path) as (status, headers, body):
            assert status == 200
            assert dict(headers)["content-type"] == "text/event-stream"
            async for chunk in body:
                for message in parser.feed(chunk):
                    if message.comment is None:
                        events.append((message.event, message.data))
                        if stop_after is not None and len(events) >= stop_after:
                            return events
    finally:
        await connection.aclose()
    return events


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The server options that put runs and Durable Streams in memory, or in Redis."""
    if request.param == "memory":
        return {}
    return {"store": RedisStore(request.getfixturevalue("redis_url"), prefix=unique_prefix())}


async def test_location_is_a_uri_that_leads_back_to_the_stream():
    """A name with a space, '?', '#', '%' or non-ASCII letters went into Location as it
    was: not a URI, and a client following it read another stream (or none)."""
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            url = "/v1/stream/notes/caf%C3%A9%20%3Fq%3D1%23top%25"  # the name: "notes/café ?q=1#top%"
            created = await client.put(url, content=b"x", headers={"Content-Type": "text/plain"})
            assert created.status_code == 201
            assert created.headers["location"] == f"{server.url}{url}"
            read = await client.get(created.headers["location"], params={"offset": "-1"})
            assert (read.status_code, read.text) == (200, "x")
            # ...and names the stream where a path is asked for: a fork's source.
            source = httpx.URL(created.headers["location"]).raw_path.decode()
            fork = await client.put("/v1/stream/fork", headers={"Stream-Forked-From": source})
            assert fork.status_code == 201, fork.text
            forked = await client.get("/v1/stream/fork", params={"offset": "-1"})
            assert (forked.status_code, forked.text) == (200, "x")


async def test_create_append_read_head_delete(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with running_server(**stores) as server, httpx.AsyncClient(base_url=server.url) as client:
            url = "/v1/stream/chat/room-1"
            created = await client.put(url, content=b"hello", headers={"Content-Type": "text/plain"})
            assert created.status_code == 201
            assert created.headers["location"] == f"{server.url}{url}"
            assert created.headers["content-type"] == "text/plain"
            assert created.headers["x-content-type-options"] == "nosniff"
            first = created.headers["stream-next-offset"]
            appended = await client.post(url, content=b" world", headers={"Content-Type": "text/plain"})
            assert appended.status_code == 204
            assert appended.headers["stream-next-offset"] > first
            read = await client.get(url)
            assert (read.status_code, read.text) == (200, "hello world")
            assert read.headers["stream-up-to-date"] == "true"
            assert (await client.get(url, params={"offset": first})).text == " world"
            cached = await client.get(url, headers={"If-None-Match": read.headers["etag"]})
            assert (cached.status_code, cached.content) == (304, b"")
            head = await client.head(url)
            assert head.headers["stream-next-offset"] == appended.headers["stream-next-offset"]
            assert head.headers["cache-control"] == "no-store"
            if not stores:  # the memory store counts what it holds
                metrics = (await client.get("/metrics")).text
                assert "trio_streams_durable_streams 1.0\n" in metrics
                assert "trio_streams_durable_stream_bytes 11.0\n" in metrics
            assert (await client.delete(url)).status_code == 204
            assert (await client.get(url)).status_code == 404


async def test_refusals_are_json_errors_and_keep_the_connection_usable(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with running_server(**stores) as server, httpx.AsyncClient(base_url=server.url) as client:
            await client.put("/v1/stream/s", headers={"Content-Type": "text/plain"})
            for params in (
                {"offset": "nope"},
                {"offset": ""},
                {"live": "sse"},
                {"offset": "-1", "live": "x"},
            ):
                response = await client.get("/v1/stream/s", params=params)
                assert response.status_code == 400, params
                assert response.headers["content-type"] == "application/json"
                assert response.json()["error"]["code"] in {
                    "invalid_offset",
                    "offset_required",
                    "invalid_live",
                }
            response = await client.put("/v1/stream/t", headers={"Stream-TTL": "03600"})
            assert response.json()["error"]["code"] == "invalid_stream_ttl"
            response = await client.put("/v1/stream/a/%2E%2E/b")
            assert response.json()["error"]["code"] == "invalid_stream_name"

            # A refused chunked body is drained: the next request on the same
            # kept-alive connection is answered, not stalled behind it.
            async def chunks() -> Any:
                for _ in range(64):
                    yield b"x" * 1024

            refused = await client.post(
                "/v1/stream/missing", content=chunks(), headers={"Content-Type": "text/plain"}
            )
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "stream_not_found"
            assert (await client.get("/v1/stream/s")).status_code == 200
            # So is a body on a request that takes none.
            deleted = await client.request("DELETE", "/v1/stream/s", content=chunks())
            assert deleted.status_code == 204
            assert (await client.get("/v1/stream/s")).status_code == 404


async def test_body_limit_is_413(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with (
            running_server(**stores, durable_max_body=1000) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            await client.put("/v1/stream/s", headers={"Content-Type": "application/octet-stream"})
            response = await client.post(
                "/v1/stream/s", content=b"x" * 1001, headers={"Content-Type": "application/octet-stream"}
            )
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "body_too_large"
            ok = await client.post(
                "/v1/stream/s", content=b"x" * 1000, headers={"Content-Type": "application/octet-stream"}
            )
            assert ok.status_code == 204


async def test_long_poll_waits_for_data_and_times_out(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with (
            running_server(**stores, long_poll_timeout=1.0) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/lp"
            tail = (await client.put(url, headers={"Content-Type": "text/plain"})).headers[
                "stream-next-offset"
            ]
            started = trio.current_time()
            timed_out = await client.get(url, params={"offset": tail, "live": "long-poll"})
            assert timed_out.status_code == 204
            assert trio.current_time() - started >= 1.0
            assert timed_out.headers["stream-up-to-date"] == "true"
            assert timed_out.headers["stream-cursor"].isdigit()
            got: list[httpx.Response] = []

            async def poll() -> None:
                got.append(await client.get(url, params={"offset": tail, "live": "long-poll"}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await server.streams.durable_live_reads.wait_value(1)
                assert "trio_streams_durable_live_reads 1.0\n" in (await client.get("/metrics")).text
                await client.post(url, content=b"news", headers={"Content-Type": "text/plain"})
            assert (got[0].status_code, got[0].text) == (200, "news")
            # Closed at the tail: no wait at all.
            closing = await client.post(url, headers={"Stream-Closed": "true"})
            started = trio.current_time()
            eof = await client.get(
                url, params={"offset": closing.headers["stream-next-offset"], "live": "long-poll"}
            )
            assert (eof.status_code, eof.headers["stream-closed"]) == (204, "true")
            assert trio.current_time() - started < 1.0  # not the long-poll timeout


async def test_sse_data_and_control_events_and_recycling(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with (
            running_server(**stores, sse_recycle=0.4) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/feed"
            await client.put(url, content=b"one\ntwo", headers={"Content-Type": "text/plain"})
            # Open: the server ends the response after sse_recycle; the last control says where to resume.
            events = await sse_events(server.url, f"{url}?offset=-1&live=sse")
            assert [event for event, _ in events] == ["data", "control"]
            assert events[0][1] == "one\ntwo"
            control = json.loads(events[1][1])
            assert control["upToDate"] is True
            await client.post(url, content=b"three", headers={"Content-Type": "text/plain"})
            await client.post(url, headers={"Stream-Closed": "true"})
            events = await sse_events(server.url, f"{url}?offset={control['streamNextOffset']}&live=sse")
            assert events[0] == ("data", "three")
            final = json.loads(events[-1][1])
            assert final["streamClosed"] is True
            assert "streamCursor" not in final
            # Binary streams are base64.
            await client.put("/v1/stream/bin", content=bytes([0, 255]), headers={"Content-Type": "image/png"})
            events = await sse_events(server.url, "/v1/stream/bin?offset=-1&live=sse", stop_after=2)
            assert events[0] == ("data", "AP8=")


async def test_cors_preflight_and_headers_on_errors(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with running_server(**stores) as server, httpx.AsyncClient(base_url=server.url) as client:
            preflight = await client.options(
                "/v1/stream/x",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
            )
            assert preflight.status_code == 204
            assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()
            assert "PUT" in preflight.headers["access-control-allow-methods"]
            missing = await client.get("/v1/stream/x")
            assert missing.status_code == 404
            assert missing.headers["access-control-allow-origin"] == "*"
            assert "Stream-Next-Offset" in missing.headers["access-control-expose-headers"]
            assert missing.headers["cross-origin-resource-policy"] == "cross-origin"


async def test_runs_read_as_json_streams_closed_when_finished():
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 20, "rate": 100}}
            )
            run_id = started.json()["run_id"]
            url = f"/v1/stream/runs/{run_id}"
            # Follow it live with long-polls, as any Durable Streams client would.
            offset, seqs = "-1", []
            while True:
                response = await client.get(url, params={"offset": offset, "live": "long-poll"})
                if response.status_code == 200:
                    seqs += [message["seq"] for message in response.json()]
                offset = response.headers["stream-next-offset"]
                if response.headers.get("stream-closed") == "true" and response.status_code == 204:
                    break
            assert seqs == list(range(1, 22))
            everything = await client.get(url)
            messages = everything.json()
            assert messages[-1]["type"] == "done"
            assert messages[-1]["data"]["result"]["tokens"] == 20
            assert everything.headers["stream-closed"] == "true"
            assert everything.headers["content-type"] == "application/json"
            head = await client.head(url)
            assert (head.headers["stream-closed"], head.headers["stream-next-offset"]) == ("true", offset)
            # SSE from the middle: the rest, then the close.
            events = await sse_events(
                server.url, f"{url}?offset={messages[9]['seq']:016d}_{10:016d}&live=sse"
            )
            data = [
                message for event, payload in events if event == "data" for message in json.loads(payload)
            ]
            assert [message["seq"] for message in data] == list(range(11, 22))
            assert json.loads(events[-1][1])["streamClosed"] is True
            # Read-only, and unknown runs are 404.
            refused = await client.post(url, content=b"{}", headers={"Content-Type": "application/json"})
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
            assert (await client.put(url)).status_code == 405
            assert (await client.get("/v1/stream/runs/nope")).status_code == 404


async def test_durable_streams_follow_the_runs_api_auth():
    tokens = {"a-secret": "alice", "b-secret": "bob"}
    alice = {"Authorization": "Bearer a-secret"}
    bob = {"Authorization": "Bearer b-secret"}
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=tokens, durable_access="shared") as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            assert (await client.put("/v1/stream/s")).status_code == 401
            assert (await client.put("/v1/stream/s", headers=alice)).status_code == 201
            read = await client.get("/v1/stream/s", headers=bob)
            assert read.status_code == 200, "shared: stored streams are shared by every authenticated user"
            assert read.headers["cache-control"].startswith("private")
            run_id = (await client.post("/v1/runs", json={"producer": "demo"}, headers=alice)).json()[
                "run_id"
            ]
            assert (await client.get(f"/v1/stream/runs/{run_id}", headers=alice)).status_code == 200
            assert (await client.get(f"/v1/stream/runs/{run_id}", headers=bob)).status_code == 404
            assert (await client.head(f"/v1/stream/runs/{run_id}", headers=bob)).status_code == 404
            unauthorized = await client.get(f"/v1/stream/runs/{run_id}")
            assert unauthorized.status_code == 401
            assert unauthorized.headers["x-content-type-options"] == "nosniff"

            # A refused chunked body is drained: the connection stays usable.
            async def chunks() -> Any:
                for _ in range(64):
                    yield b"x" * 1024

            refused = await client.post(
                "/v1/stream/s", content=chunks(), headers={"Content-Type": "text/plain"}
            )
            assert refused.status_code == 401
            assert (await client.get("/v1/stream/s", headers=alice)).status_code == 200


async def test_durable_streams_can_be_turned_off():
    with trio.fail_after(DEADLINE):
        async with (
            running_server(durable_streams=False) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            assert (await client.put("/v1/stream/s")).status_code == 404
            assert server.streams.durable_store is None


async def test_stopping_ends_live_reads_at_once(stores: dict[str, Any]):
    with trio.fail_after(DEADLINE):
        async with (
            running_server(**stores, long_poll_timeout=60, sse_recycle=60) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            created = await client.put("/v1/stream/s", content=b"x", headers={"Content-Type": "text/plain"})
            tail = created.headers["stream-next-offset"]
            polled: list[httpx.Response] = []
            streamed: list[list[tuple[str, str]]] = []

            async def poll() -> None:
                polled.append(await client.get("/v1/stream/s", params={"offset": tail, "live": "long-poll"}))

            async def follow() -> None:
                streamed.append(await sse_events(server.url, "/v1/stream/s?offset=-1&live=sse"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                nursery.start_soon(follow)
                await server.streams.durable_live_reads.wait_value(2)  # both parked
                started = trio.current_time()
                await server.streams.stop()  # what SIGTERM does first
            assert trio.current_time() - started < 5
            assert polled[0].status_code == 204
            assert [event for event, _ in streamed[0]] == ["data", "control"]


async def test_sse_follows_a_live_run_to_its_end():
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 30, "rate": 30}}
            )
            run_id = started.json()["run_id"]
            events = await sse_events(server.url, f"/v1/stream/runs/{run_id}?offset=-1&live=sse")
            kinds = [event for event, _ in events]
            assert kinds[0::2] == ["data"] * (len(kinds) // 2), "every data event is followed by a control"
            assert kinds[1::2] == ["control"] * (len(kinds) // 2)
            assert len(kinds) > 4, "followed live, not read at once"
            seqs = [m["seq"] for event, data in events if event == "data" for m in json.loads(data)]
            assert seqs == list(range(1, 32))
            controls = [json.loads(data) for event, data in events if event == "control"]
            assert controls[-1] == {
                "streamNextOffset": f"{31:016d}_{31:016d}",
                "streamClosed": True,
                "upToDate": True,
            }
            assert all(c["streamNextOffset"] < d["streamNextOffset"] for c, d in itertools.pairwise(controls))
