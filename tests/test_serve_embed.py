"""``trio_streams.serve`` embedded in a nursery: binds, serves, reports its URLs,
and shuts down as SIGTERM does when cancelled.

Real sockets and the real clock, each test under a deadline.
"""

from __future__ import annotations

import socket
from contextlib import closing

import httpx
import pytest
import trio

import trio_streams
from trio_streams import ServeStartupError, serve, serve_plan
from trio_streams.web import create_app

#: Shutdown flags small enough that a cancelled serve() ends well within this.
GRACE = 0.5
FINALIZE = 1.0
FLAGS = ["--bind", "127.0.0.1:0", f"--shutdown-grace={GRACE}s", f"--finalize-timeout={FINALIZE}s"]
DEADLINE = 30


def open_fds() -> set[int]:
    import os

    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def test_serves_until_cancelled_then_drains_and_closes_everything():
    events: list[str] = []
    with trio.fail_after(DEADLINE):
        before = open_fds()
        plan = serve_plan(FLAGS)
        async with trio.open_nursery() as outside, httpx.AsyncClient() as client:
            async with trio.open_nursery() as server:
                urls = await server.start(serve, plan)
                assert len(urls) == 1
                assert urls[0].startswith("http://127.0.0.1:")
                started = await client.post(
                    urls[0] + "/v1/runs", json={"producer": "demo", "input": {"tokens": 1000, "rate": 20}}
                )
                assert started.status_code == 201
                run_id = started.json()["run_id"]
                first_event = trio.Event()
                stream_ended = trio.Event()

                # A live stream open while serve() is cancelled ends with its
                # terminal event (the drain), not a reset connection.
                async def follow() -> None:
                    async with client.stream("GET", f"{urls[0]}/v1/runs/{run_id}/events") as response:
                        async for line in response.aiter_lines():
                            if line.startswith("event: "):
                                events.append(line.removeprefix("event: "))
                                first_event.set()
                    stream_ended.set()

                outside.start_soon(follow)
                await first_event.wait()
                server.cancel_scope.cancel()
            assert server.cancel_scope.cancelled_caught
            assert stream_ended.is_set()
        assert events[0] == "token"
        assert events[-1] == "cancelled", events
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(urls[0] + "/healthz")
        assert open_fds() <= before, "a socket or file left open"


async def test_a_cancelled_serve_ends_within_its_bound():
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, serve_plan(FLAGS))
            async with httpx.AsyncClient(base_url=urls[0]) as client:
                response = await client.post(
                    "/v1/runs", json={"producer": "demo", "input": {"tokens": 100000, "rate": 10}}
                )
                assert response.status_code == 201
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
        took = trio.current_time() - cancelled_at
        # The run outlives the grace: cancelled at GRACE, finalized at once.
        assert GRACE <= took < GRACE + FINALIZE + 2, took


async def test_serves_a_given_app():
    app = create_app(heartbeat=1.0)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, serve_plan(["--bind", "127.0.0.1:0"]), app)
            async with httpx.AsyncClient(base_url=urls[0]) as client:
                assert (await client.get("/healthz")).status_code == 200
            assert app.extensions["trio_streams"].running
            nursery.cancel_scope.cancel()
        assert not app.extensions["trio_streams"].running


async def test_an_address_in_use_raises_one_clear_error_not_a_group():
    with closing(socket.socket()) as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        port = occupier.getsockname()[1]
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                with pytest.raises(ServeStartupError, match="already in use") as caught:
                    await nursery.start(serve, serve_plan(["--bind", f"127.0.0.1:{port}"]))
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)


async def test_a_failed_startup_raises_one_clear_error(tmp_path):
    # Nothing listens on this port: the Redis store cannot connect.
    with closing(socket.socket()) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    plan = serve_plan(["--bind", "127.0.0.1:0", "--redis-url", f"redis://127.0.0.1:{port}/0"])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            with pytest.raises(ServeStartupError, match="startup failed: cannot use redis") as caught:
                await nursery.start(serve, plan)
    assert not isinstance(caught.value, BaseExceptionGroup)


def test_bad_flags_raise_instead_of_exiting():
    with pytest.raises(trio_streams.ServeConfigError, match="--bind must be HOST:PORT"):
        serve_plan(["--bind", "nowhere"])
    with pytest.raises(trio_streams.ServeConfigError, match="unrecognized arguments"):
        serve_plan(["--no-such-flag"])


def test_import_trio_streams_does_not_load_the_server():
    import subprocess
    import sys

    code = "import sys, trio_streams; print('hypercorn' in sys.modules, 'quart' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


async def test_the_start_line_says_the_auth_the_app_really_has(caplog: pytest.LogCaptureFixture):
    # A given app (or an --app factory without **options) ignores --token: the
    # start line must not tell the operator that users see only their runs.
    plan = serve_plan([*FLAGS, "--token", "alice:s3cret"])
    caplog.set_level("INFO", logger="trio_streams.serve")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, plan, create_app())
            async with httpx.AsyncClient(base_url=urls[0]) as client:
                assert (await client.post("/v1/runs", json={"producer": "demo"})).status_code == 201
            nursery.cancel_scope.cancel()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("store: ")]
    assert line.endswith("auth: off: the app does not use --token (every run is visible)"), line
