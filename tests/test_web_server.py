"""The runs API over a real Hypercorn server, with httpx and the bench client.

Real I/O: no mock clock; every test runs under a trio deadline instead.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from trio_streams import RunStatus
from trio_streams.bench._cli import main as bench_main
from trio_streams.bench._httpclient import HTTPConnection, SSEParser

from .server_support import running_server

DEADLINE = 20


async def read_events(
    base_url: str, path: str, headers: dict[str, str] | None = None, stop_after: int | None = None
) -> list[tuple[int | None, str, Any]]:
    """GET an event stream (our h11 client: closing early is clean); parse it;
    drop the connection after ``stop_after`` real events if given."""
    connection = HTTPConnection(base_url)
    parser = SSEParser()
    events: list[tuple[int | None, str, Any]] = []
    try:
        async with connection.stream("GET", path, headers=headers) as (status, response_headers, body):
            assert status == 200
            assert dict(response_headers)["content-type"].startswith("text/event-stream")
            async for chunk in body:
                for message in parser.feed(chunk):
                    if message.comment is not None:
                        continue
                    ident = None if message.event == "gap" else int(message.id or 0)
                    events.append((ident, message.event, json.loads(message.data)))
                    if stop_after is not None and len(events) >= stop_after:
                        return events
    finally:
        await connection.aclose()
    return events


async def test_follow_reload_mid_run_and_cancel_over_real_http():
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 40, "rate": 200}}
            )
            assert response.status_code == 201
            run_id = response.json()["run_id"]
            # A page reload: read some events, drop the connection, resume with Last-Event-ID.
            first = await read_events(server.url, f"/v1/runs/{run_id}/events", stop_after=7)
            rest = await read_events(
                server.url, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(first[-1][0])}
            )
            ids = [e[0] for e in first + rest]
            assert ids == list(range(1, 42)), "no duplicates, no holes across the reload"
            assert rest[-1][1] == "done"
            text = "".join(e[2]["text"] for e in first + rest[:-1])
            assert rest[-1][2]["result"]["text"] == text
            # ?after= works the same.
            assert [e[0] for e in await read_events(server.url, f"/v1/runs/{run_id}/events?after=38")] == [
                39,
                40,
                41,
            ]
            # Cancel with wait on a live run: the partial result is in the document.
            response = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 10_000, "rate": 100}}
            )
            live_id = response.json()["run_id"]
            seen = await read_events(server.url, f"/v1/runs/{live_id}/events", stop_after=3)
            response = await client.post(f"/v1/runs/{live_id}/cancel?wait=true")
            doc = response.json()
            assert response.status_code == 200
            assert doc["status"] == "cancelled"
            assert doc["partial"] is True
            assert doc["result"]["tokens"] >= len(seen)
            events = await read_events(server.url, f"/v1/runs/{live_id}/events")
            assert events[-1][1] == "cancelled"
            assert [e[0] for e in events] == list(range(1, doc["last_seq"] + 1))


async def test_client_going_away_is_not_stop_unless_asked():
    with trio.fail_after(DEADLINE):
        async with (
            running_server(disconnect_grace=0.2) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            runs = {}
            for policy in ("continue", "cancel"):
                body = {"producer": "demo", "input": {"tokens": 60, "rate": 50}, "on_disconnect": policy}
                runs[policy] = (await client.post("/v1/runs", json=body)).json()["run_id"]
                # Returning early closes the connection mid-stream.
                await read_events(server.url, f"/v1/runs/{runs[policy]}/events", stop_after=2)
            hub = server.streams.hub
            dropped = hub.get(runs["cancel"])
            kept = hub.get(runs["continue"])
            assert dropped is not None
            assert kept is not None
            info = await dropped.wait()
            assert info.status is RunStatus.CANCELLED
            assert info.reason == "disconnected"
            assert info.partial is True
            info = await kept.wait()
            assert info.status is RunStatus.DONE
            assert info.result["tokens"] == 60
            # A user's stop is told apart from a departure.
            run_id = (
                await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 500, "rate": 50}})
            ).json()["run_id"]
            doc = (
                await client.post(f"/v1/runs/{run_id}/cancel?wait=true", json={"reason": "user_stop"})
            ).json()
            assert doc["reason"] == "user_stop"


async def test_ownership_over_real_http():
    tokens = {"a-secret": "alice", "b-secret": "bob"}
    with trio.fail_after(DEADLINE):
        async with running_server(auth=tokens) as server, httpx.AsyncClient(base_url=server.url) as client:
            alice = {"Authorization": "Bearer a-secret"}
            bob = {"Authorization": "Bearer b-secret"}
            assert (await client.get("/v1/runs")).status_code == 401
            run_id = (await client.post("/v1/runs", json={"producer": "demo"}, headers=alice)).json()[
                "run_id"
            ]
            assert (await client.get(f"/v1/runs/{run_id}", headers=bob)).status_code == 404
            assert (await client.get(f"/v1/runs/{run_id}/events", headers=bob)).status_code == 404
            assert (await client.post(f"/v1/runs/{run_id}/cancel", headers=bob)).status_code == 404
            assert (await client.get(f"/v1/runs/{run_id}", headers=alice)).status_code == 200
            assert (await client.get("/healthz")).json()["status"] == "ok"


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_bench_counts_every_event_against_the_real_server(tmp_path):
    with trio.fail_after(60):
        async with running_server() as server:
            out = tmp_path / "bench.json"
            args = [
                server.url,
                "--runs=4",
                "--subscribers-per-run=3",
                "--tokens=300",
                "--rate=2000",
                "--reconnect-every=50",
                "--cancel-fraction=0.25",
                f"--json={out}",
                "--quiet",
            ]
            status = await trio.to_thread.run_sync(bench_main, args)
            result = json.loads(out.read_text())
            assert status == 0, result["violation_examples"]
            assert result["ok"] is True
            assert sum(result["violations"].values()) == 0
            # 3 full runs x 3 subscribers x (300 tokens + done); the cancelled run's
            # subscribers each count exactly up to its terminal event.
            hub = server.streams.hub
            infos = await hub.list_runs()
            expected = sum(info.last_seq * 3 for info in infos)
            assert result["events"] == expected
            # The default rate (0: as fast as the server goes) and --replay, as
            # benchmarks/bench_http.py uses them.
            args = [server.url, "--runs=2", "--tokens=500", "--replay", f"--json={out}", "--quiet"]
            status = await trio.to_thread.run_sync(bench_main, args)
            result = json.loads(out.read_text())
            assert status == 0, result["violation_examples"]
            assert result["events"] == 2 * 501


async def test_unread_chunked_bodies_never_stall_a_kept_alive_connection():
    # A body the app refuses before reading (a 405 from routing, a 401, a GET
    # with a body) must still be consumed, or the connection's next request
    # hangs. Schemathesis found it; `requests` (which schemathesis uses) sends
    # a chunked body in pieces, the exchange that reproduces it.
    import requests

    def exchanges(url: str) -> list[int]:
        statuses = []
        with requests.Session() as session:
            for method, path in [
                ("QUERY", "/v1/runs/0/cancel"),
                ("GET", "/v1/runs/0/cancel"),
                ("QUERY", "/v1/runs/0/cancel"),
                ("PUT", "/v1/runs"),
                ("GET", "/v1/runs"),
                ("POST", "/v1/runs"),
                ("GET", "/healthz"),
            ]:
                body = iter([b'{"reason":', b' "0"}'])
                response = session.request(method, url + path, data=body, timeout=5)
                statuses.append(response.status_code)
        return statuses

    with trio.fail_after(DEADLINE):
        async with running_server() as server:
            statuses = await trio.to_thread.run_sync(exchanges, server.url)
        async with running_server(auth={"s": "u"}) as server:
            statuses += await trio.to_thread.run_sync(exchanges, server.url)
    assert statuses == [405, 405, 405, 405, 200, 400, 200, 405, 405, 405, 405, 401, 401, 200]


async def test_conflicts_idempotency_and_error_codes_over_real_http():
    with trio.fail_after(DEADLINE):
        async with (
            running_server(max_body=2048) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            slow = {"producer": "demo", "input": {"tokens": 10_000, "rate": 100}, "key": "conv"}
            first = await client.post("/v1/runs", json=slow)
            assert first.status_code == 201
            first_id = first.json()["run_id"]
            assert first.headers["Location"].endswith(first_id)
            conflict = await client.post("/v1/runs", json={**slow, "on_conflict": "reject"})
            assert conflict.status_code == 409
            assert conflict.json()["error"]["code"] == "run_conflict"
            assert conflict.json()["error"]["run_id"] == first_id
            # interrupt: the old run is finalized (partial saved) before the new one runs.
            second = await client.post("/v1/runs", json={**slow, "on_conflict": "interrupt"})
            assert second.status_code == 201
            old = (await client.get(f"/v1/runs/{first_id}")).json()
            assert (old["status"], old["reason"], old["partial"]) == ("cancelled", "interrupted", True)
            # enqueue: starts when the live one ends, and runs to completion.
            short = {"producer": "demo", "input": {"tokens": 3}, "key": "conv", "on_conflict": "enqueue"}
            third = await client.post("/v1/runs", json=short)
            assert third.json()["status"] == "queued"
            await client.post(f"/v1/runs/{second.json()['run_id']}/cancel")
            events = await read_events(server.url, f"/v1/runs/{third.json()['run_id']}/events")
            assert [e[1] for e in events] == ["token", "token", "token", "done"]
            # Idempotency-Key: the same run again, 200.
            again = [
                await client.post("/v1/runs", json={"producer": "demo"}, headers={"Idempotency-Key": "x"})
                for _ in range(2)
            ]
            assert [r.status_code for r in again] == [201, 200]
            assert again[0].json()["run_id"] == again[1].json()["run_id"]
            # Errors: JSON bodies with the right status.
            refused = {
                400: await client.post("/v1/runs", json={"producer": "nope"}),
                413: await client.post("/v1/runs", content=b"{" + b" " * 4096 + b"}"),
                404: await client.get("/v1/runs/no-such-run"),
            }
            for status, response in refused.items():
                assert response.status_code == status
                assert set(response.json()["error"]) >= {"code", "message"}
            bad_resume = await client.get(f"/v1/runs/{first_id}/events", headers={"Last-Event-ID": "x"})
            assert bad_resume.status_code == 400
        async with (
            running_server(max_runs=1, evict_finished_when_full=False, shutdown_grace=0) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            live = {"producer": "demo", "input": {"tokens": 50, "rate": 1}}
            assert (await client.post("/v1/runs", json=live)).status_code == 201
            at_capacity = await client.post("/v1/runs", json=live)
            assert at_capacity.status_code == 429
            assert at_capacity.json()["error"]["code"] == "at_capacity"
            assert at_capacity.headers["Retry-After"] == "1"
