"""The runs API through Quart's test client, on the mock clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_streams import MemoryStore, RunStatus
from trio_streams.web import TrioStreams, create_app

from .web_support import error_code, events_of, parse_sse, raw, serving

# Every test takes autojump_clock as an argument: pytest-trio picks the clock
# from the test's own arguments.


async def test_start_follow_and_read_a_run(autojump_clock):
    async with serving() as api:
        doc = await api.start(input={"tokens": 5, "rate": 10, "size": 6}, key="conv-1", metadata={"m": 1})
        assert doc["status"] == "running"
        assert doc["key"] == "conv-1"
        assert doc["producer"] == "demo"
        assert doc["metadata"] == {"producer": "demo", "m": 1}
        assert doc["events_url"] == f"/v1/runs/{doc['run_id']}/events"
        start = trio.current_time()
        events = events_of(await api.events(doc["run_id"]))
        # Five tokens at 10/s: the first at once, the last 0.4 s later.
        assert trio.current_time() - start == pytest.approx(0.4)
        assert [e[:2] for e in events] == [(i, "token") for i in range(1, 6)] + [(6, "done")]
        assert [e[2]["i"] for e in events[:5]] == [1, 2, 3, 4, 5]
        text = "".join(e[2]["text"] for e in events[:5])
        assert len(text) == 30
        assert events[5][2] == {"result": {"text": text, "tokens": 5}}
        status = await api.status(doc["run_id"])
        assert status["status"] == "done"
        assert status["last_seq"] == 6
        assert status["result"] == {"text": text, "tokens": 5}
        assert status["partial"] is False
        assert status["subscribers"] == 0
        assert status["ended_at"] >= status["created_at"]


async def test_created_response_has_location(autojump_clock):
    async with serving() as api:
        response = await api.client.post("/v1/runs", json={"producer": "demo"})
        assert response.status_code == 201
        doc = await response.get_json()
        assert response.headers["Location"] == f"/v1/runs/{doc['run_id']}"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{nope", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"producer": "nope"}', "unknown_producer"),
        (b"{}", "invalid_body"),
        (b'{"producer": "demo", "surprise": 1}', "invalid_body"),
        (b'{"producer": "demo", "input": {"tokens": -1}}', "invalid_input"),
        (b'{"producer": ""}', "unknown_producer"),
        (b'{"producer": "demo", "input": {"tokens": 2.5}}', "invalid_input"),
        (b'{"producer": "demo", "input": {"rate": "fast"}}', "invalid_input"),
        (b'{"producer": "demo", "input": {"colour": "red"}}', "invalid_input"),
        (b'{"producer": "demo", "on_conflict": "fight"}', "invalid_body"),
        (b'{"producer": "demo", "on_disconnect": "explode"}', "invalid_body"),
        (b'{"producer": "demo", "key": ""}', "invalid_body"),
        (b'{"producer": "demo", "metadata": [1]}', "invalid_body"),
        (b'{"producer": "demo", "metadata": {"producer": "x"}}', "invalid_body"),
    ],
)
async def test_bad_start_bodies_are_400(body, code, autojump_clock):
    async with serving() as api:
        response = await api.client.post("/v1/runs", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        doc = await response.get_json()
        assert error_code(doc) == code
        assert doc["error"]["message"]
        assert api.streams.hub.statistics().runs_started == 0


async def test_body_over_the_limit_is_413(autojump_clock):
    async with serving(max_body=200) as api:
        response = await api.client.post("/v1/runs", json={"producer": "demo", "metadata": {"x": "y" * 300}})
        assert response.status_code == 413
        assert error_code(await response.get_json()) == "body_too_large"


async def test_unknown_runs_and_routes_are_json_404(autojump_clock):
    async with serving() as api:
        for path in ("/v1/runs/nope", "/v1/runs/nope/events", "/v1/runs/bad%20id", "/v1/no-such-route"):
            response = await api.client.get(path)
            assert response.status_code == 404, path
            assert error_code(await response.get_json()) in {"run_not_found", "not_found"}
        response = await api.client.post("/v1/runs/nope/cancel")
        assert response.status_code == 404
        response = await api.client.delete("/v1/runs")
        assert response.status_code == 405
        assert error_code(await response.get_json()) == "method_not_allowed"


async def test_resume_with_header_or_query_and_header_wins(autojump_clock):
    async with serving() as api:
        run_id = (await api.start(input={"tokens": 6, "rate": None}))["run_id"]
        everything = events_of(await api.events(run_id))
        assert [e[0] for e in everything] == list(range(1, 8))
        after_query = events_of(await api.events(run_id, query="?after=4"))
        assert after_query == everything[4:]
        after_header = events_of(await api.events(run_id, headers={"Last-Event-ID": "2"}))
        assert after_header == everything[2:]
        both = events_of(await api.events(run_id, headers={"Last-Event-ID": "5"}, query="?after=1"))
        assert both == everything[5:]
        assert events_of(await api.events(run_id, query="?after=7")) == []


@pytest.mark.parametrize(
    ("headers", "query", "code"),
    [
        ({"Last-Event-ID": "abc"}, "", "invalid_last_event_id"),
        ({"Last-Event-ID": "-1"}, "", "invalid_last_event_id"),
        ({}, "?after=x", "invalid_after"),
        ({"Last-Event-ID": "0"}, "?after=-1", "invalid_after"),
        ({}, "?after=99", "after_beyond_end"),
    ],
)
async def test_bad_resume_points_are_400(headers, query, code, autojump_clock):
    async with serving() as api:
        run_id = (await api.start(input={"tokens": 2, "rate": None}))["run_id"]
        response = await api.client.get(f"/v1/runs/{run_id}/events{query}", headers=headers)
        assert response.status_code == 400
        assert error_code(await response.get_json()) == code


async def test_stream_starts_with_retry_and_has_sse_headers(autojump_clock):
    async with serving(retry_ms=2500) as api:
        run_id = (await api.start(input={"tokens": 1, "rate": None}))["run_id"]
        response = await api.client.get(f"/v1/runs/{run_id}/events")
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert "no-cache" in response.headers["Cache-Control"]
        assert (await raw(response)).startswith(b"retry: 2500\n\n")


async def test_heartbeats_on_idle_at_exact_times(autojump_clock):
    async with serving(heartbeat=5) as api:
        run_id = (await api.start(input={"tokens": 3, "rate": None, "await_input_at": 2}))["run_id"]
        start = trio.current_time()
        chunks: list[tuple[float, bytes]] = []
        async with api.client.request(f"/v1/runs/{run_id}/events") as connection:
            await connection.send_complete()
            while len([c for c in chunks if b"heartbeat" in c[1]]) < 2:
                chunk = await connection.receive()
                chunks.append((trio.current_time() - start, chunk))
            assert (await api.status(run_id))["awaiting_input"] is True
            response = await api.client.post(f"/v1/runs/{run_id}/cancel?wait=true")
            assert (await response.get_json())["status"] == "cancelled"
            while not chunks[-1][1].rstrip().endswith(b"}"):
                chunk = await connection.receive()
                chunks.append((trio.current_time() - start, chunk))
        beats = [t for t, chunk in chunks if b": heartbeat" in chunk]
        assert beats == [pytest.approx(5), pytest.approx(10)]
        events = events_of(parse_sse(b"".join(c for _, c in chunks)))
        assert [e[:2] for e in events] == [(1, "token"), (2, "cancelled")]


async def test_cancel_saves_partial_and_is_idempotent(autojump_clock):
    async with serving() as api:
        run_id = (await api.start(input={"tokens": 100, "rate": 10, "size": 4}))["run_id"]
        await trio.sleep(0.45)  # mock clock: tokens 1-5 are out
        response = await api.client.post(f"/v1/runs/{run_id}/cancel?wait=true", json={"reason": "user_stop"})
        assert response.status_code == 200
        doc = await response.get_json()
        assert doc["status"] == "cancelled"
        assert doc["reason"] == "user_stop"
        assert doc["partial"] is True
        assert doc["result"]["tokens"] == 5
        events = events_of(await api.events(run_id))
        assert [e[:2] for e in events][-1] == (6, "cancelled")
        assert events[-1][2]["partial"] is True
        assert doc["result"]["text"] == "".join(e[2]["text"] for e in events[:5])
        again = await api.client.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 200
        assert await again.get_json() == doc
        done_id = (await api.start(input={"tokens": 1, "rate": None}))["run_id"]
        await api.events(done_id)
        response = await api.client.post(f"/v1/runs/{done_id}/cancel?wait=true")
        assert (await response.get_json())["status"] == "done"


async def test_cancel_rejects_bad_bodies_and_flags(autojump_clock):
    async with serving() as api:
        run_id = (await api.start(input={"tokens": 10}))["run_id"]
        for body, query in (({"reason": 5}, ""), ({"why": "x"}, ""), ({}, "?wait=maybe"), ({}, "?wait=")):
            response = await api.client.post(f"/v1/runs/{run_id}/cancel{query}", json=body)
            assert response.status_code == 400
        assert (await api.status(run_id))["status"] == "running"


async def test_cancel_refuses_a_reason_in_the_query(autojump_clock):
    # Black-box pass: ?reason=... was dropped in silence (the run ended "cancelled").
    async with serving() as api:
        run_id = (await api.start(input={"tokens": 10}))["run_id"]
        response = await api.client.post(f"/v1/runs/{run_id}/cancel?reason=user_stop")
        assert response.status_code == 400
        error = (await response.get_json())["error"]
        assert error["code"] == "invalid_reason"
        assert '{"reason": "..."}' in error["message"]
        assert (await api.status(run_id))["status"] == "running"


async def test_key_conflicts_reject_interrupt_enqueue(autojump_clock):
    async with serving() as api:
        first = await api.start(input={"tokens": 100, "rate": 10}, key="k")
        conflict = await api.start(409, input={"tokens": 1}, key="k", on_conflict="reject")
        assert error_code(conflict) == "run_conflict"
        assert conflict["error"]["run_id"] == first["run_id"]
        await trio.sleep(0.25)
        second = await api.start(input={"tokens": 100, "rate": 10}, key="k", on_conflict="interrupt")
        old = await api.status(first["run_id"])
        assert old["status"] == "cancelled"
        assert old["reason"] == "interrupted"
        assert old["partial"] is True
        assert old["result"]["tokens"] == 3
        # It waited for the old run's finalization; by now it runs.
        assert second["status"] == "queued"
        await trio.testing.wait_all_tasks_blocked()
        assert (await api.status(second["run_id"]))["status"] == "running"
        third = await api.start(input={"tokens": 2, "rate": None}, key="k", on_conflict="enqueue")
        assert third["status"] == "queued"
        await api.client.post(f"/v1/runs/{second['run_id']}/cancel")
        events = events_of(await api.events(third["run_id"]))
        assert [e[1] for e in events] == ["token", "token", "done"]


async def test_idempotency_key_returns_the_same_run(autojump_clock):
    async with serving() as api:
        body: dict[str, Any] = {"input": {"tokens": 3}}
        first = await api.start(headers={"Idempotency-Key": "abc"}, **body)
        again = await api.start(200, headers={"Idempotency-Key": "abc"}, **body)
        assert again["run_id"] == first["run_id"]
        other = await api.start(422, headers={"Idempotency-Key": "abc"}, input={"tokens": 4})
        assert error_code(other) == "idempotency_key_reused"
        fresh = await api.start(headers={"Idempotency-Key": "def"}, **body)
        assert fresh["run_id"] != first["run_id"]
        assert api.streams.hub.statistics().runs_started == 2


async def test_concurrent_requests_with_one_idempotency_key_start_one_run(autojump_clock):
    async with serving() as api:
        results: list[dict[str, Any]] = []

        async def post() -> None:
            response = await api.client.post(
                "/v1/runs", json={"producer": "demo"}, headers={"Idempotency-Key": "same"}
            )
            results.append({**(await response.get_json()), "http": response.status_code})

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(post)
        assert len({r["run_id"] for r in results}) == 1
        assert sorted(r["http"] for r in results) == [200, 200, 200, 200, 201]


TOKENS = {"alice-secret": "alice", "bob-secret": "bob"}
ALICE = {"Authorization": "Bearer alice-secret"}
BOB = {"Authorization": "Bearer bob-secret"}


async def test_auth_required_and_runs_isolated_by_owner(autojump_clock):
    async with serving(auth=TOKENS) as api:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            response = await api.client.post("/v1/runs", json={"producer": "demo"}, headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert error_code(await response.get_json()) == "unauthorized"
        mine = await api.start(headers=ALICE, input={"tokens": 50, "rate": 10})
        assert mine["owner"] == "alice"
        theirs = await api.start(headers=BOB, input={"tokens": 50, "rate": 10})
        run_id = mine["run_id"]
        for method, path in (
            ("GET", f"/v1/runs/{run_id}"),
            ("GET", f"/v1/runs/{run_id}/events"),
            ("POST", f"/v1/runs/{run_id}/cancel"),
        ):
            response = await api.client.open(path, method=method, headers=BOB)  # type: ignore[call-arg]
            assert response.status_code == 404, path
            assert error_code(await response.get_json()) == "run_not_found"
        assert (await api.status(run_id, ALICE))["status"] == "running"
        listed = await (await api.client.get("/v1/runs", headers=BOB)).get_json()
        assert [r["run_id"] for r in listed["runs"]] == [theirs["run_id"]]
        # The same Idempotency-Key from two users: two runs.
        a = await api.start(headers={**ALICE, "Idempotency-Key": "k"})
        b = await api.start(headers={**BOB, "Idempotency-Key": "k"})
        assert a["run_id"] != b["run_id"]


async def test_list_filters_by_status_and_limits(autojump_clock):
    async with serving() as api:
        done = await api.start(input={"tokens": 1, "rate": None})
        await api.events(done["run_id"])
        live = [await api.start(input={"tokens": 100, "rate": 1}) for _ in range(3)]
        response = await api.client.get("/v1/runs?status=running")
        running = [r["run_id"] for r in (await response.get_json())["runs"]]
        assert sorted(running) == sorted(r["run_id"] for r in live)
        response = await api.client.get("/v1/runs?status=done")
        assert [r["run_id"] for r in (await response.get_json())["runs"]] == [done["run_id"]]
        response = await api.client.get("/v1/runs?limit=2")
        assert len((await response.get_json())["runs"]) == 2
        for query in ("?status=happy", "?limit=0", "?limit=x", "?limit=1001"):
            response = await api.client.get(f"/v1/runs{query}")
            assert response.status_code == 400, query


async def test_capacity_is_429(autojump_clock):
    async with serving(auth=TOKENS, max_live_runs_per_owner=1) as api:
        await api.start(headers=ALICE, input={"tokens": 10, "rate": 1})
        refused = await api.start(429, headers=ALICE)
        assert error_code(refused) == "at_capacity"
        assert refused["error"]["limit"] == "max_live_runs_per_owner"
        await api.start(headers=BOB)
    async with serving(max_runs=1, evict_finished_when_full=False) as api:
        await api.start(input={"tokens": 10, "rate": 1})
        response = await api.client.post("/v1/runs", json={"producer": "demo"})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"


async def test_health_metrics_and_openapi(autojump_clock):
    async with serving() as api:
        response = await api.client.get("/healthz")
        assert response.status_code == 200
        assert await response.get_json() == {"status": "ok", "store": "MemoryStore"}
        run_id = (await api.start(input={"tokens": 3, "rate": None}))["run_id"]
        await api.events(run_id)
        await api.client.get("/v1/runs/missing")
        text = (await raw(await api.client.get("/metrics"))).decode()
        assert "trio_streams_runs_started_total 1.0\n" in text
        assert 'trio_streams_runs_ended_total{status="done"} 1.0\n' in text
        assert "trio_streams_events_published_total 4.0\n" in text
        assert 'trio_streams_http_errors_total{code="run_not_found"} 1.0\n' in text
        assert "trio_streams_up 1.0\n" in text
        spec = await (await api.client.get("/openapi.json")).get_json()
        assert spec["openapi"].startswith("3.")
        assert set(spec["paths"]) >= {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events"}


async def test_shutdown_drains_live_runs_after_the_grace(autojump_clock):
    app = create_app(shutdown_grace=3.05)
    streams: TrioStreams = app.extensions["trio_streams"]
    async with app.test_app() as test_app:
        client = test_app.test_client()
        short = await (
            await client.post("/v1/runs", json={"input": {"tokens": 10, "rate": 10}, "producer": "demo"})
        ).get_json()
        long = await (
            await client.post("/v1/runs", json={"input": {"tokens": 100, "rate": 10}, "producer": "demo"})
        ).get_json()
        runs = [streams.hub.get(short["run_id"]), streams.hub.get(long["run_id"])]
        stopping = trio.current_time()
    assert trio.current_time() - stopping == pytest.approx(3.05)
    assert [run.status for run in runs if run] == [RunStatus.DONE, RunStatus.CANCELLED]
    assert runs[1] is not None
    assert runs[1].reason == "shutdown"
    assert runs[1].partial is True
    assert runs[1].result["tokens"] == 31  # tokens at 0.0, 0.1, ... 3.0
    with pytest.raises(RuntimeError, match="test_app"):
        _ = streams.hub


async def test_requests_before_the_app_serves_are_503(autojump_clock):
    app = create_app()
    response = await app.test_client().post("/v1/runs", json={"producer": "demo"})
    assert response.status_code == 503
    assert error_code(await response.get_json()) == "not_serving"
    response = await app.test_client().get("/healthz")
    assert response.status_code == 503


async def test_custom_producer_and_store_factory(autojump_clock):
    from contextlib import asynccontextmanager

    from quart_trio import QuartTrio

    opened: list[str] = []

    @asynccontextmanager
    async def store():
        opened.append("open")
        yield MemoryStore()
        opened.append("closed")

    app = QuartTrio(__name__)
    streams = TrioStreams(app, store=store, demo=False)

    def parse(raw):
        if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str):
            raise ValueError("input.prompt (a string) is required")
        return raw["prompt"]

    @streams.producer("echo", parse_input=parse)
    async def echo(ctx):
        prompt = ctx.input
        for word in prompt.split():
            await ctx.emit("word", {"word": word})
        return {"echoed": prompt}

    with pytest.raises(ValueError, match="already registered"):
        streams.register("echo", echo)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.post("/v1/runs", json={"producer": "echo", "input": {"prompt": 5}})
        assert response.status_code == 400
        assert "prompt" in (await response.get_json())["error"]["message"]
        response = await client.post("/v1/runs", json={"producer": "demo"})
        assert response.status_code == 400
        doc = await (
            await client.post("/v1/runs", json={"producer": "echo", "input": {"prompt": "a b"}})
        ).get_json()
        stream = await raw(await client.get(doc["events_url"]))
        assert [e[1:] for e in events_of(parse_sse(stream))] == [
            ("word", {"word": "a"}),
            ("word", {"word": "b"}),
            ("done", {"result": {"echoed": "a b"}}),
        ]
        assert opened == ["open"]
    assert opened == ["open", "closed"]


async def test_integral_floats_are_integers_as_in_json_schema(autojump_clock):
    async with serving() as api:
        doc = await api.start(input={"tokens": 3.0, "rate": None, "size": 2.0})
        events = events_of(await api.events(doc["run_id"]))
        assert [len(e[2]["text"]) for e in events[:3]] == [2, 2, 2]
