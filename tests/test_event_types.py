"""What a producer may emit (issue 12, items 9 and 10): event types that cannot forge SSE
fields, and data that is strict JSON. Refused at emit, with a ValueError naming the rule.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams import RESERVED_TYPES, RunContext, RunStatus
from trio_streams.bench._httpclient import HTTPConnection, SSEParser
from trio_streams.testing import collect, events_of
from trio_streams.web import create_app

from .server_support import running_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_streams.web import TrioStreams


@pytest.mark.parametrize(
    ("type", "rule"),
    [
        ("tok\nid: 999\ndata: injected", "may not contain CR, LF or NUL"),
        ("tok\rid: 999", "may not contain CR, LF or NUL"),
        ("tok\r\n", "may not contain CR, LF or NUL"),
        ("a\0b", "may not contain CR, LF or NUL"),
        ("x" * 65, "at most 64 characters"),
        ("", "must not be empty"),
        ("tok\ud800", "no lone surrogate"),
        (7, "must be a string"),
        *[(name, "is reserved") for name in sorted(RESERVED_TYPES)],
    ],
)
async def test_a_type_breaking_a_rule_is_refused_at_emit_and_nothing_is_published(
    stream_hub, autojump_clock, type: Any, rule: str
) -> None:
    raised: list[str] = []

    async def producer(ctx: RunContext) -> str:
        for emit in (ctx.emit, _nowait(ctx)):
            try:
                await emit(type, "payload")
            except ValueError as exc:
                raised.append(str(exc))
        await ctx.emit("token", "after")  # the producer carries on
        return "ok"

    run = await stream_hub.start(producer)
    info = await run.wait()
    assert len(raised) == 2
    assert all(rule in message for message in raised), raised
    assert info.status == RunStatus.DONE
    assert [(e.seq, e.type) for e in events_of(await collect(stream_hub, run.id))] == [
        (1, "token"),
        (2, "done"),
    ]


def _nowait(ctx: RunContext) -> Any:
    async def emit(type: Any, data: Any) -> None:
        await trio.lowlevel.checkpoint()
        ctx.emit_nowait(type, data)

    return emit


async def test_the_longest_type_and_unusual_but_safe_characters_are_accepted(
    stream_hub, autojump_clock
) -> None:
    names = ["x" * 64, "tab\there", " leading space", "ünïcödé ✓", "a:b"]

    async def producer(ctx: RunContext) -> None:
        for name in names:
            await ctx.emit(name, 1)

    run = await stream_hub.start(producer)
    assert (await run.wait()).status == RunStatus.DONE
    assert [e.type for e in events_of(await collect(stream_hub, run.id))][:-1] == names


async def test_an_async_iterable_yielding_a_forged_type_fails_the_run(stream_hub, autojump_clock) -> None:
    async def items() -> AsyncIterator[Any]:
        yield ("token", "a")
        yield ("tok\nid: 999", "b")

    run = await stream_hub.start(items())
    info = await run.wait()
    assert info.status == RunStatus.ERROR
    assert info.error == {"code": "producer_error", "message": "the producer failed (ValueError)"}
    assert [e.type for e in events_of(await collect(stream_hub, run.id))] == ["token", "error"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (math.nan, "NaN, Infinity and -Infinity are not JSON"),
        ({"score": math.inf}, "NaN, Infinity and -Infinity are not JSON"),
        ([1, -math.inf], "NaN, Infinity and -Infinity are not JSON"),
        ({"text": "half a pair \ud83d"}, "lone UTF-16 surrogate"),
    ],
)
async def test_data_that_is_not_strict_json_is_refused_at_emit_naming_the_event(
    stream_hub, autojump_clock, data: Any, says: str
) -> None:
    raised: list[ValueError] = []

    async def producer(ctx: RunContext) -> None:
        try:
            await ctx.emit("t", data)
        except ValueError as exc:
            raised.append(exc)

    run = await stream_hub.start(producer)
    assert (await run.wait()).status == RunStatus.DONE
    [exc] = raised
    assert str(exc).startswith("event 't': its data is not valid JSON")
    assert says in str(exc)
    assert run.last_seq == 1  # only the terminal: nothing was published, no seq was used


async def test_a_nan_result_ends_the_run_in_error_not_in_invalid_json(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> float:
        return math.nan

    info = await (await stream_hub.start(producer)).wait()
    assert info.status == RunStatus.ERROR
    assert info.error == {"code": "bad_result", "message": "the run's result is not JSON-serializable"}


async def test_nan_metadata_is_refused_by_hub_start(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(ValueError, match="NaN, Infinity and -Infinity are not JSON"):
        await stream_hub.start(producer, metadata={"x": math.nan})
    assert stream_hub.statistics().runs_started == 0


async def test_an_injected_type_never_reaches_a_real_sse_client() -> None:
    """Over Hypercorn: the forged ``id: 999`` never appears; ids stay the seqs."""
    app = create_app()
    streams: TrioStreams = app.extensions["trio_streams"]
    refusals: list[str] = []

    async def hostile(ctx: RunContext) -> None:
        await ctx.emit("token", "a")
        try:
            await ctx.emit("tok\nid: 999\ndata: injected", "b")
        except ValueError as exc:
            refusals.append(str(exc))
        await ctx.emit("token", "c")

    streams.register("hostile", hostile)
    with trio.fail_after(20):
        async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post("/v1/runs", json={"producer": "hostile"})
            run_id = started.json()["run_id"]
            connection = HTTPConnection(server.url)
            parser = SSEParser()
            raw = b""
            try:
                async with connection.stream("GET", f"/v1/runs/{run_id}/events") as (status, _headers, body):
                    assert status == 200
                    async for chunk in body:
                        raw += chunk
            finally:
                await connection.aclose()
    messages = [m for m in parser.feed(raw) if m.comment is None]
    assert [(m.id, m.event) for m in messages] == [("1", "token"), ("2", "token"), ("3", "done")]
    assert b"999" not in raw
    assert b"injected" not in raw
    assert len(refusals) == 1
    assert "CR, LF or NUL" in refusals[0]
