"""docs/guide.md's recipes run on today's API.

Every code block titled ``title="<file>"`` in the guide is extracted and
exercised: the apps are built and driven with Quart's test client, the
producer and its abort test run under pytest (pytester), and the two
``serve`` command lines are parsed with today's flags. So the guide cannot
go stale silently.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from trio_streams import serve_plan

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
_BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def recipes() -> dict[str, str]:
    """The guide's titled blocks, by title (each title once)."""
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(GUIDE.read_text()):
        title = match.group(2)
        assert title not in found, f"two blocks titled {title}"
        found[title] = match.group(3)
    return found


def recipes_text() -> str:
    """The guide as one line of text (for what its prose promises)."""
    return " ".join(GUIDE.read_text().split())


def test_the_guide_has_every_recipe() -> None:
    assert sorted(recipes()) == [
        "chat_app.py",
        "durable_app.py",
        "summarizer.py",
        "test_summarizer.py",
        "two-servers.sh",
    ]


@contextmanager
def recipe_module(title: str) -> Iterator[types.ModuleType]:
    """The block ``title`` executed as a module of that name (importable while in use)."""
    name = title.removesuffix(".py")
    module = types.ModuleType(name)
    module.__file__ = str(GUIDE.parent / title)
    sys.modules[name] = module
    try:
        exec(compile(recipes()[title], f"docs/guide.md:{title}", "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[name]


def _sse_events(body: str) -> list[tuple[str, Any]]:
    events = []
    for frame in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_recipe_mount_on_an_app(autojump_clock: Any) -> None:
    with recipe_module("chat_app.py") as recipe:
        app = recipe.create_app(shutdown_grace=1.0)
        async with app.test_app_class(app, shutdown_timeout=60) as test_app:
            client = test_app.test_client()
            alice = {"Authorization": "Bearer s3cret"}
            assert (await client.get("/")).status_code == 200
            body = {"producer": "echo", "input": {"words": ["a", "b", "c"]}}
            assert (await client.post("/v1/runs", json=body)).status_code == 401
            started = await client.post("/v1/runs", json=body, headers=alice)
            assert started.status_code == 201
            run_id = (await started.get_json())["run_id"]
            stream = await client.get(f"/v1/runs/{run_id}/events", headers=alice)
            events = _sse_events(await stream.get_data(as_text=True))
            assert events == [("token", "a"), ("token", "b"), ("token", "c"), ("done", {"result": "abc"})]
            document = await (await client.get(f"/v1/runs/{run_id}", headers=alice)).get_json()
            assert (document["status"], document["subscribers"]) == ("done", 0)  # no reader attached now
            # The schema refuses a bad input before the producer starts, naming the field (as the guide says).
            bad = await client.post(
                "/v1/runs", json={"producer": "echo", "input": {"words": ["a", 3]}}, headers=alice
            )
            assert (bad.status_code, await bad.get_json()) == (
                400,
                {
                    "error": {
                        "code": "invalid_input",
                        "message": "input.words[1] must be a string",
                        "field": "input.words[1]",
                    }
                },
            )
            assert '"field": "input.words[1]"' in recipes_text()
            spec = await (await client.get("/openapi.json")).get_json()
            assert spec["components"]["schemas"]["Input.echo"] == recipe.ECHO_INPUT
            demo = await client.post("/v1/runs", json={"producer": "demo"}, headers=alice)
            assert demo.status_code == 400  # demo=False: only the app's own producers


def test_recipe_producer_and_its_abort_test(pytester: pytest.Pytester) -> None:
    found = recipes()
    pytester.makepyfile(summarizer=found["summarizer.py"], test_summarizer=found["test_summarizer.py"])
    pytester.syspathinsert()
    # The command the guide gives, without the installed entry point.
    result = pytester.runpytest(
        "-q", "-p", "no:trio_streams", "-p", "trio_streams.testing", "-o", "trio_mode=true"
    )
    result.assert_outcomes(passed=1)


def test_recipe_two_servers_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tokens.txt").write_text("alice:s3cret\n")
    lines = [line for line in recipes()["two-servers.sh"].splitlines() if line.startswith("trio-streams")]
    assert len(lines) == 2
    binds = set()
    for line in lines:
        words = shlex.split(line.removesuffix("&"))
        assert words[:2] == ["trio-streams", "serve"]
        plan = serve_plan(words[2:])
        assert plan.store_label != "memory"  # both on the Redis the line names
        assert "redis://127.0.0.1:6379/0" in plan.store_label
        binds.add((plan.host, plan.port))
    assert binds == {("127.0.0.1", 8001), ("127.0.0.1", 8002)}


async def test_recipe_durable_streams_behind_tokens(autojump_clock: Any) -> None:
    with recipe_module("durable_app.py") as recipe:
        app = recipe.create_app()
        async with app.test_app_class(app, shutdown_timeout=60) as test_app:
            client = test_app.test_client()
            alice = {"Authorization": "Bearer alice-secret", "Content-Type": "application/json"}
            bob = {"Authorization": "Bearer bob-secret"}
            url = "/v1/stream/notes/1"
            assert (await client.put(url, headers=alice)).status_code == 201
            assert (await client.post(url, data='[{"n":1}]', headers=alice)).status_code == 204
            read = await client.get(url, query_string={"offset": "-1"}, headers=alice)
            assert (read.status_code, await read.get_json()) == (200, [{"n": 1}])
            other = await client.get(url, query_string={"offset": "-1"}, headers=bob)
            assert other.status_code == 404
            anonymous = await client.get(url, query_string={"offset": "-1"})
            assert anonymous.status_code == 401


async def test_recipe_producer_runs_to_the_end(stream_hub: Any, autojump_clock: Any) -> None:
    with recipe_module("summarizer.py") as recipe:
        run = await stream_hub.start(recipe.summarize, input={"prompt": "one two"})
        info = await stream_hub.wait(run.id)
        assert (info.status, info.result, info.partial) == ("done", "ONE TWO ", False)
        assert (trio.current_time(), recipe.saved) == (2.5, ["ONE TWO "])  # cleanup runs on success too
