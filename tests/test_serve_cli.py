"""``trio-streams serve`` as a process: flags, help, and graceful SIGTERM.

Real processes and sockets: no mock clock; trio deadlines instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams.cli._main import build_parser

from .test_web_server import read_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVE = [sys.executable, "-m", "trio_streams", "serve"]


def test_help_documents_every_flag():
    result = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, check=True, timeout=30)
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr,index]
    flags = [opt for action in serve._actions for opt in action.option_strings if opt.startswith("--")]
    assert len(flags) > 20
    for flag in flags:
        assert flag in result.stdout, flag
    assert "SIGTERM" in result.stdout
    assert "exit status" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "0.0.0.0:8000"], "without auth"),
        (["--bind", "nonsense"], "HOST:PORT"),
        (["--heartbeat", "soon"], "not a duration"),
        (["--token", "no-colon"], "USER:SECRET"),
        (["--store", "redis"], "--redis-url"),
        (["--redis-url", "http://x"], "redis://"),
        (["--redis-lease", "5s"], "need --redis-url or --data-dir"),
        (["--cross-instance-keys", "best_effort"], "needs --redis-url or --data-dir"),
        (["--cross-instance-keys", "sometimes"], "invalid choice"),
        (["--redis-max-buffered", "0"], "--redis-max-buffered"),
        (["--redis-max-pending", "lots"], "not a size"),
        (["--app", "no_such_module_here:create"], "cannot import"),
        (["--max-body", "lots"], "not a size"),
        (["--max-memory", "lots"], "not a size"),
        (["--max-memory", "512KiB"], "--max-memory must be at least 1 MiB"),
        (["--max-memory", "4MiB"], "--max-event-bytes must be between 1 and --max-memory / 8"),
        (["--long-poll-timeout", "0s"], "more than zero"),
        (["--frobnicate"], "unrecognized"),
        # The command's own name and --help, not the top level's.
        (
            ["extra"],
            "trio-streams serve: error: unrecognized arguments: extra (see trio-streams serve --help)",
        ),
        # Black-box pass: these started listening, then failed (exit 1, a raw message)
        # or printed a traceback, or were ignored in silence.
        (["--redis-url", "redis://[bad"], "--redis-url: not a valid redis:// URL: Invalid IPv6 URL"),
        (["--redis-url", "redis://u:hunter2@127.0.0.1:abc"], "not a valid redis:// URL: Port could not"),
        (["--redis-url", "unix://"], "a unix:// URL needs the socket's path"),
        (["--workers", "2", "--redis-url", "rediss://[::1"], "--redis-url: not a valid rediss:// URL"),
        (["--data-dir", "/etc/passwd"], "--data-dir: /etc/passwd: not a directory"),
        (["--data-dir", "/etc/passwd/x"], "--data-dir: /etc/passwd/x: /etc/passwd is not a directory"),
        (["--webhook-key-file", "/nope"], "the --webhook-* flags need --subscriptions"),
        (["--webhook-allow-loopback"], "the --webhook-* flags need --subscriptions"),
        (["--bind", "[nonsense]:0"], "--bind: [nonsense] is not an IPv6 address in brackets"),
        (["--bind", "[::1:0"], "--bind: [::1 is not an IPv6 address in brackets"),
        (
            ["--redis-url", "redis://127.0.0.1:1", "--redis-ttl-running", "5s"],
            "must be at least --redis-lease (10s)",
        ),
        (
            ["--workers", "2", "--redis-lease", "1h", "--redis-ttl-running", "30m"],
            "--redis-ttl-running (1800s)",
        ),
        # Redis takes an expiry in ms that fits 64 bits: beyond it every flush failed, forever.
        (["--redis-url", "redis://127.0.0.1:1", "--redis-ttl-running", "99999999999999d"], "at most 3650d"),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-ttl-finished", "3651d"], "at most 3650d"),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-ttl-events", "99999999999999d"], "at most 3650d"),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-lease", "99999999999d"], "at most 3650d"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message):
    result = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_a_store_that_cannot_be_reached_is_not_announced_as_running():
    """Hypercorn binds (and logs "Running on ...") even when the app's startup failed: that line
    came just before the one saying the server did not start."""
    args = ["--bind", "127.0.0.1:0", "--redis-url", "redis://127.0.0.1:1"]
    result = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "trio-streams serve: error: startup failed: cannot use redis at redis://127.0.0.1:1"
    )
    assert "Running on" not in result.stderr
    assert "Traceback" not in result.stderr


def test_an_app_factory_that_returns_no_app_is_a_usage_error():
    # Black-box pass: a traceback (AttributeError: 'str' object has no attribute 'config').
    result = subprocess.run([*SERVE, "--app", "os:getcwd"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # (After the warning that getcwd takes no options.)
    assert result.stderr.strip().splitlines()[-1] == (
        "trio-streams serve: error: --app: getcwd returned str, not a QuartTrio app"
    )


def test_an_app_factory_that_raises_ends_with_one_line_naming_it():
    """The app's own traceback is logged (it is the app's bug), then one line, exit 1:
    it was a bare traceback out of the command, through our frames."""
    result = subprocess.run(
        [*SERVE, "--bind=127.0.0.1:0", "--app", "json:loads"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "ERROR trio_streams.serve: --app: loads raised" in lines[0]
    assert "TypeError: loads() missing 1 required positional argument: 's'" in result.stderr
    assert lines[-1] == (
        "trio-streams serve: error: --app: loads raised TypeError: loads() missing 1 required "
        "positional argument: 's' (its traceback is logged above)"
    )
    assert "_main.py" not in result.stderr  # not a traceback out of the command itself


def test_an_app_module_that_raises_at_import_ends_with_one_line_naming_it(tmp_path):
    (tmp_path / "broken_app_module.py").write_text("def create_app(:\n")
    result = subprocess.run(
        [*SERVE, "--bind=127.0.0.1:0", "--app", "broken_app_module:create_app"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("trio-streams serve: error: --app: importing 'broken_app_module' raised SyntaxError: ")
    )
    assert "_main.py" not in result.stderr


def test_a_bad_redis_url_in_the_environment_is_a_one_line_error():
    env = {**os.environ, "TRIO_STREAMS_REDIS_URL": "redis://[bad"}
    result = subprocess.run(SERVE, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trio-streams serve: error: TRIO_STREAMS_REDIS_URL: not a valid redis:// URL: Invalid IPv6 URL"
    ]


class ServeProcess:
    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url


async def _serve(*args: str, nursery: trio.Nursery) -> ServeProcess:
    process = await trio.lowlevel.open_process(
        [*SERVE, "--bind", "127.0.0.1:0", *args], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    buffer = b""
    while b"serving on " not in buffer or not buffer.endswith(b"\n"):
        chunk = await process.stdout.receive_some()
        assert chunk, "the server exited before it served"
        buffer += chunk
    url = buffer.decode().split("serving on ", 1)[1].split()[0]
    return ServeProcess(process, url)


@pytest.fixture
async def serve_process(nursery) -> AsyncIterator[Any]:
    started: list[ServeProcess] = []

    async def start(*args: str) -> ServeProcess:
        server = await _serve(*args, nursery=nursery)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def until_followed(base_url: str, *run_ids: str) -> None:
    """Return once every run has a subscriber (the server counts them), or has ended."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        for run_id in run_ids:
            while True:
                doc = (await client.get(f"/v1/runs/{run_id}")).json()
                if doc["subscribers"] >= 1 or doc["ended_at"] is not None:
                    break


async def until_draining(base_url: str) -> None:
    """Return once the server refuses new runs: it is draining."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        while (await client.post("/v1/runs", json={"producer": "demo"})).status_code != 503:
            pass


async def test_sigterm_finishes_or_cancels_live_runs_and_ends_streams(serve_process):
    with trio.fail_after(30):
        server = await serve_process("--shutdown-grace", "1s")
        async with httpx.AsyncClient(base_url=server.url) as client:
            short = (
                await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 20, "rate": 40}})
            ).json()
            long = (
                await client.post(
                    "/v1/runs", json={"producer": "demo", "input": {"tokens": 100_000, "rate": 50}}
                )
            ).json()
        streams: dict[str, list[Any]] = {}

        async def follow(run_id: str) -> None:
            streams[run_id] = await read_events(server.url, f"/v1/runs/{run_id}/events")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, short["run_id"])
            nursery.start_soon(follow, long["run_id"])
            await until_followed(server.url, short["run_id"], long["run_id"])
            server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        short_events = streams[short["run_id"]]
        assert short_events[-1][1] == "done", "finished within the grace"
        assert [e[0] for e in short_events] == list(range(1, 22))
        long_events = streams[long["run_id"]]
        assert long_events[-1][1] == "cancelled", "cancelled after the grace, its stream ended properly"
        assert long_events[-1][2]["reason"] == "shutdown"
        assert long_events[-1][2]["partial"] is True
        tokens = long_events[-1][2]["result"]["tokens"]
        assert tokens == len(long_events) - 1
        assert [e[0] for e in long_events] == list(range(1, len(long_events) + 1))


async def test_a_second_signal_exits_at_once(serve_process):
    with trio.fail_after(30):
        server = await serve_process("--shutdown-grace", "60s")
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 100_000, "rate": 10}}
            )
            assert response.status_code == 201
        server.process.send_signal(signal.SIGTERM)
        await until_draining(server.url)  # the first signal is being handled
        assert server.process.returncode is None, "still draining (60 s grace)"
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 128 + signal.SIGTERM


async def test_serves_an_app_factory(serve_process, tmp_path, monkeypatch):
    (tmp_path / "my_streams_app.py").write_text(
        "from quart_trio import QuartTrio\n"
        "from trio_streams.web import TrioStreams\n"
        "def create_app(**options):\n"
        "    app = QuartTrio(__name__)\n"
        "    streams = TrioStreams(app, **options)\n"
        "    @streams.producer('shout')\n"
        "    async def shout(ctx):\n"
        "        await ctx.emit('word', ctx.input.upper())\n"
        "        return ctx.input.upper()\n"
        "    return app\n"
    )
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(30):
        server = await serve_process("--app", "my_streams_app:create_app", "--token", "amy:pw")
        headers = {"Authorization": "Bearer pw"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            doc = (await client.post("/v1/runs", json={"producer": "shout", "input": "hey"})).json()
            events = await read_events(server.url, doc["events_url"], headers=headers)
            assert [e[1:] for e in events] == [("word", "HEY"), ("done", {"result": "HEY"})]
            assert (await client.get("/v1/runs")).json()["runs"][0]["owner"] == "amy"
        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
