"""Per-producer options at registration, and the one producer signature ``function(ctx)``."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from trio_streams import RunContext, RunStatus
from trio_streams.web import TrioStreams

from .web_support import events_of, parse_sse, raw

# Every test takes autojump_clock as an argument: pytest-trio picks the clock
# from the test's own arguments.


async def test_producer_on_finish_runs_after_the_extension_hook_with_the_outcome(autojump_clock):
    calls: list[tuple[str, str, RunStatus, Any]] = []

    async def extension_hook(run: Any, outcome: Any) -> None:
        calls.append(("extension", run.id, outcome.status, outcome.result))

    async def producer_hook(run: Any, outcome: Any) -> None:
        calls.append(("producer", run.id, outcome.status, outcome.result))

    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False, on_finish=extension_hook)

    @streams.producer("echo", on_finish=producer_hook)
    async def echo(ctx: RunContext) -> Any:
        await ctx.emit("word", ctx.input)
        return {"echoed": ctx.input}

    async def other(ctx: RunContext) -> None:
        await ctx.emit("word", "x")

    streams.register("other", other)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        doc = await (await client.post("/v1/runs", json={"producer": "echo", "input": "hi"})).get_json()
        events = events_of(parse_sse(await raw(await client.get(doc["events_url"]))))
        assert [e[1:] for e in events] == [("word", "hi"), ("done", {"result": {"echoed": "hi"}})]
        # The hooks run before the terminal event: both are in by now, in this order.
        assert calls == [
            ("extension", doc["run_id"], RunStatus.DONE, {"echoed": "hi"}),
            ("producer", doc["run_id"], RunStatus.DONE, {"echoed": "hi"}),
        ]
        # Another producer's runs get the extension's hook only.
        calls.clear()
        doc = await (await client.post("/v1/runs", json={"producer": "other"})).get_json()
        await raw(await client.get(doc["events_url"]))
        assert calls == [("extension", doc["run_id"], RunStatus.DONE, None)]


async def test_producer_defaults_apply_and_the_request_overrides_them(autojump_clock):
    release = trio.Event()

    async def waits(ctx: RunContext) -> None:
        await release.wait()

    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False)
    streams.register("waits", waits, on_conflict="enqueue", on_disconnect="cancel")
    streams.register("plain", waits)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        hub = streams.hub
        first = await (await client.post("/v1/runs", json={"producer": "waits", "key": "k"})).get_json()
        assert first["status"] == "running"
        run = hub.get(first["run_id"])
        assert run is not None
        assert run.on_disconnect == "cancel"
        # No on_conflict in the request: the producer's "enqueue", not "reject".
        second = await (await client.post("/v1/runs", json={"producer": "waits", "key": "k"})).get_json()
        assert second["status"] == "queued"
        # The request wins over the producer's defaults.
        body = {"producer": "waits", "key": "k", "on_conflict": "reject"}
        refused = await client.post("/v1/runs", json=body)
        assert refused.status_code == 409
        third = await (
            await client.post("/v1/runs", json={"producer": "waits", "on_disconnect": "continue"})
        ).get_json()
        run = hub.get(third["run_id"])
        assert run is not None
        assert run.on_disconnect == "continue"
        # A producer without defaults keeps the hub's: "reject" and "continue".
        plain = await (await client.post("/v1/runs", json={"producer": "plain", "key": "p"})).get_json()
        run = hub.get(plain["run_id"])
        assert run is not None
        assert run.on_disconnect == "continue"
        refused = await client.post("/v1/runs", json={"producer": "plain", "key": "p"})
        assert refused.status_code == 409
        release.set()


def test_bad_producer_defaults_are_refused_at_registration():
    streams = TrioStreams(demo=False)

    async def producer(ctx: RunContext) -> None:
        pass

    with pytest.raises(ValueError, match="on_conflict"):
        streams.register("a", producer, on_conflict="queue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_disconnect"):
        streams.register("b", producer, on_disconnect="stop")  # type: ignore[arg-type]
    assert streams.producers == {}


async def test_hub_start_producers_read_ctx_input(stream_hub, autojump_clock):
    seen: list[Any] = []

    async def producer(ctx: RunContext) -> None:
        seen.append(ctx.input)

    await (await stream_hub.start(producer)).wait()
    await (await stream_hub.start(producer, input={"n": 1})).wait()
    assert seen == [None, {"n": 1}]


async def test_the_two_argument_form_works_with_one_deprecation_warning(autojump_clock):
    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False)

    async def old(ctx: RunContext, text: str) -> str:
        assert text == ctx.input
        return text.upper()

    with pytest.warns(DeprecationWarning, match=r"function\(ctx, input\) is deprecated") as record:
        streams.register("old", old, parse_input=str)  # type: ignore[arg-type]  # the old form
    assert len(record) == 1
    assert "'old'" in str(record[0].message)
    assert "function(ctx)" in str(record[0].message)
    assert "ctx.input" in str(record[0].message)
    assert record[0].filename == __file__  # points at the registration, not the library
    with pytest.warns(DeprecationWarning, match="'old_decorated'") as record:

        @streams.producer("old_decorated")
        async def old_decorated(ctx: RunContext, text: str) -> str:
            return text

    assert len(record) == 1
    assert record[0].filename == __file__
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for name, result in (("old", "HI"), ("old_decorated", "hi")):
            doc = await (await client.post("/v1/runs", json={"producer": name, "input": "hi"})).get_json()
            events = events_of(parse_sse(await raw(await client.get(doc["events_url"]))))
            assert events[-1][1:] == ("done", {"result": result})


def test_one_argument_forms_register_without_a_warning():
    # filterwarnings = error: any warning here fails the test.
    streams = TrioStreams(demo=True)

    async def new(ctx: RunContext) -> None:
        pass

    async def with_options(ctx: RunContext, extra: int = 0, *, flag: bool = False) -> None:
        pass

    streams.register("new", new)
    streams.register("with_options", with_options)
    assert set(streams.producers) == {"demo", "new", "with_options"}


async def test_a_result_so_far_that_is_no_json_is_shown_as_none_not_a_500():
    """A producer's ``ctx.result`` that is not JSON (yet) made ``GET /v1/runs/{id}`` and every
    listing with the run a 500 while it ran; the run still ends in ``error`` for it."""
    import httpx

    from trio_streams.web import create_app

    from .server_support import running_server

    app = create_app()
    streams: TrioStreams = app.extensions["trio_streams"]
    release, emitted = trio.Event(), trio.Event()

    @streams.producer("sets")
    async def sets(ctx: RunContext) -> None:
        ctx.result = {"so far": object()}
        await ctx.emit("token", 1)
        emitted.set()
        await release.wait()

    with trio.fail_after(20):
        async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post("/v1/runs", json={"producer": "sets"})
            run_id = started.json()["run_id"]
            await emitted.wait()
            one = await client.get(f"/v1/runs/{run_id}")
            assert (one.status_code, one.json()["status"], one.json()["result"]) == (200, "running", None)
            listed = await client.get("/v1/runs")
            assert listed.status_code == 200
            assert [run["run_id"] for run in listed.json()["runs"]] == [run_id]
            release.set()
            ended = await client.get(f"/v1/runs/{run_id}/events")
            assert "event: error" in ended.text
            final = (await client.get(f"/v1/runs/{run_id}")).json()
            assert (final["status"], final["error"]["code"]) == ("error", "bad_result")
