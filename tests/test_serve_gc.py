"""``serve`` tunes the garbage collector once serving (``--gc-threshold``; :mod:`trio_streams.cli._gc`).

The in-process tests run the real ``serve_command`` on Hypercorn and look at
this process's collector while it serves; the workers test reads what each
worker process reports of its own collector.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams.cli._gc import DEFAULT_THRESHOLD
from trio_streams.cli._plan import ServeConfigError
from trio_streams.cli._serve import serve_command, serve_plan

from .test_serve_workers import workers  # noqa: F401 (the fixture)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def collector() -> Iterator[None]:
    """This process's collector, unfrozen before the test and given back as it was after."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def collector_while_serving(*flags: str) -> dict[str, Any]:
    """Serve in this process with ``flags``; the collector's state once a request was answered."""
    plan = serve_plan(["--bind", "127.0.0.1:0", *flags])
    app, streams = plan.build_app()
    seen: dict[str, Any] = {}
    served = trio.Event()

    def announce(urls: list[str]) -> None:
        seen["url"] = urls[0]
        served.set()

    async def check(shutdown: trio.Event) -> None:
        await served.wait()
        async with httpx.AsyncClient() as client:
            seen["status"] = (await client.get(seen["url"] + "/healthz")).status_code
        seen["frozen"] = gc.get_freeze_count()
        seen["threshold"] = gc.get_threshold()
        shutdown.set()

    with trio.fail_after(30):
        seen["exit"] = await serve_command(plan, app, streams, announce=announce, watch=check)
    return seen


@pytest.mark.timeout(60)
async def test_serve_freezes_the_startup_objects_and_raises_the_thresholds(collector: None):
    assert gc.get_freeze_count() == 0
    seen = await collector_while_serving()
    assert seen["status"] == 200
    assert seen["exit"] == 0
    assert seen["threshold"] == DEFAULT_THRESHOLD
    # The modules, the app and its store are alive at startup: many thousands of objects.
    assert seen["frozen"] > 10_000


@pytest.mark.timeout(60)
async def test_gc_threshold_sets_the_thresholds_unset_ones_keep_pythons(collector: None):
    seen = await collector_while_serving("--gc-threshold", "5000")
    assert seen["threshold"] == (5000, 10, 10)
    assert seen["frozen"] > 10_000


@pytest.mark.timeout(60)
async def test_gc_threshold_off_leaves_the_collector_alone(collector: None):
    gc.set_threshold(123, 4, 5)
    seen = await collector_while_serving("--gc-threshold", "off")
    assert seen["status"] == 200
    assert seen["threshold"] == (123, 4, 5)
    assert seen["frozen"] == 0


def test_gc_threshold_comes_from_the_environment():
    plan = serve_plan([], environ={"TRIO_STREAMS_GC_THRESHOLD": "30000,20,20"})
    assert plan.gc_threshold == (30000, 20, 20)
    assert serve_plan(["--gc-threshold", "off"]).gc_threshold is None
    assert serve_plan([]).gc_threshold == DEFAULT_THRESHOLD


@pytest.mark.parametrize("value", ["", "1,2,3,4", "lots", "0", "100,-1", "100,,3"])
def test_bad_gc_thresholds_are_one_line_errors(value: str):
    with pytest.raises(ServeConfigError, match="--gc-threshold"):
        serve_plan(["--gc-threshold", value])
    done = subprocess.run(
        [sys.executable, "-m", "trio_streams", "serve", "--gc-threshold", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--gc-threshold" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_every_worker_tunes_its_own_collector(workers: Callable[..., Any]):  # noqa: F811
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--log-format", "json", "--gc-threshold", "15000,15,15")
        await server.log(r"2 workers serving")
    # Each worker logs its collector before it reports ready, on the stderr it shares with the
    # supervisor, which logs "serving" after both reported: both lines are already here.
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    for slot in (0, 1):
        tuned = [r for r in records if r.get("worker") == slot and r["message"].startswith("gc: ")]
        assert len(tuned) == 1, records
        words = tuned[0]["message"].split()
        assert words[-1] == "15000,15,15"
        assert int(words[1]) > 10_000, tuned
