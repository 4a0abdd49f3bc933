"""Fuzz the live server against its own OpenAPI document with schemathesis:
no 5xx, no hangs, every response as documented (status, content type, schema),
over every route: the runs API, the operations endpoints and Durable Streams."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from trio_streams.durable import DurableStreamStore
from trio_streams.web import create_app

from .server_support import running_server

if TYPE_CHECKING:
    import subprocess

    from trio_streams import RunContext


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is part of the test extra (pip install -e '.[test]')"
    return found


ECHO_INPUT = {
    "$defs": {"word": {"type": "string", "maxLength": 16}},
    "type": "object",
    "required": ["words"],
    "additionalProperties": False,
    "properties": {"words": {"type": "array", "maxItems": 8, "items": {"$ref": "#/$defs/word"}}},
}


async def _echo(ctx: RunContext) -> str:
    for word in ctx.input["words"]:
        await ctx.emit("token", word)
    return " ".join(ctx.input["words"])


async def _schemathesis(url: str, cwd: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [
            _st(),
            "run",
            f"{url}/openapi.json",
            "--checks=all",
            # Schema-valid but refused by design: a resume point beyond
            # the run's end (400), an Idempotency-Key reused with another
            # body (422, as the IETF draft says), a subscription document
            # that the schema alone cannot refuse (a pull-wake one without
            # wake_stream: 400). Tested in test_web_api and test_subscription_rules.
            "--exclude-checks=positive_data_acceptance",
            "--max-examples=25",
            "--request-timeout=15",
            "--generation-deterministic",
            "--suppress-health-check=all",
            "--no-color",
            *options,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=cwd,
    )


@pytest.mark.timeout(300)  # its own trio deadline is 240 s: let that one speak first
async def test_schemathesis_finds_nothing(tmp_path):
    with trio.fail_after(240):
        # Live reads end within the request timeout: a long-poll after 1 s, an SSE response after 2 s.
        app = create_app(
            max_body=4096, shutdown_grace=0, demo_max_tokens=2000, long_poll_timeout=1, sse_recycle=2
        )
        # A second producer, so StartRun has alternatives (by `producer`), each with
        # its own defaults, and an input schema with a reference (rebased in the document).
        app.extensions["trio_streams"].register(
            "echo", _echo, input_schema=ECHO_INPUT, on_conflict="interrupt", on_disconnect="cancel"
        )
        async with running_server(app) as server:
            result = await _schemathesis(server.url, tmp_path)
            # It reached the Durable Streams' core logic: it created streams and appended to them.
            durable = server.streams.durable_store
            assert isinstance(durable, DurableStreamStore)
            created = durable.statistics()
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-6000:]
    assert created.streams > 0
    assert created.bytes > 0, created


@pytest.mark.timeout(300)
async def test_schemathesis_finds_nothing_in_the_subscriptions_control_api(tmp_path):
    """The ``__ds/`` operations (described only when subscriptions are served)."""
    with trio.fail_after(240):
        app = create_app(max_body=4096, shutdown_grace=0, durable_subscriptions=True)
        async with running_server(app) as server:
            # A CORS preflight answers before the name is looked at (as for every stream
            # name): its Allow names the methods of the stream route, not of each control path.
            options = ("--include-path-regex=/__ds/", "--exclude-checks=allow_header_conformance")
            result = await _schemathesis(server.url, tmp_path, *options)
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-6000:]
    assert "claimWake" in output or "/claim" in output, "the control API's operations were run"
