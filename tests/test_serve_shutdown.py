"""SIGTERM with clients holding connections: ``serve`` exits within
``--shutdown-grace`` + finalize + flush + 1 s, whatever the clients do.

Real processes and sockets, the real clock. The bound is computed from the
configured grace and finalize timeout (the memory store has nothing to
flush); it is far below what kept-alive clients used to cost (Hypercorn's
5 s graceful timeout after the drain) and a client that stops reading
(forever).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import hypercorn.config
import pytest
import trio

from trio_streams.bench._httpclient import HTTPConnection, SSEParser
from trio_streams.cli._hypercorn import EXIT_BUDGET, listen, serve_hypercorn
from trio_streams.cli._one_write import OneWriteResponses
from trio_streams.web import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

SERVE = [sys.executable, "-m", "trio_streams", "serve"]
GRACE = 0.5
FINALIZE = 1.5
BOUND = GRACE + FINALIZE + 1.0
STUCK_WARNING = "clients not reading?"


@dataclass
class Served:
    process: trio.Process
    url: str
    stderr: list[bytes] = field(default_factory=list)
    stderr_ended: trio.Event = field(default_factory=trio.Event)

    @property
    def log(self) -> str:
        return b"".join(self.stderr).decode()

    async def exit_after_sigterm(self) -> int:
        """SIGTERM; the exit status, asserting the process is gone within :data:`BOUND`
        and its stderr read to the end.

        Returns once its whole stderr has been read too: the process can exit
        before the task collecting it has read the last lines (what it logged
        on the way out), and :attr:`log` is then read by the caller.
        """
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(BOUND) as waited:
            status = await self.process.wait()
        assert not waited.cancelled_caught, f"still running {BOUND}s after SIGTERM\n{self.log}"
        with trio.fail_after(5):  # the pipe's end follows the exit at once
            await self.stderr_ended.wait()
        return status


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start ``serve`` (the shutdown flags, plus any given) and wait until it serves."""
    started: list[Served] = []

    async def start(*args: str) -> Served:
        process = await trio.lowlevel.open_process(
            [
                *SERVE,
                "--bind=127.0.0.1:0",
                f"--shutdown-grace={GRACE}s",
                f"--finalize-timeout={FINALIZE}s",
                "--log-level=warning",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        buffer = b""
        with trio.fail_after(60):
            while b"serving on " not in buffer or not buffer.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the server exited before it served"
                buffer += chunk
        server = Served(process, buffer.decode().split("serving on ", 1)[1].split()[0])
        started.append(server)
        nursery.start_soon(_collect, process.stderr, server)
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


@pytest.fixture
async def served(start_server: Callable[..., Awaitable[Served]]) -> Served:
    return await start_server()


async def _collect(stream: trio.abc.ReceiveStream, server: Served) -> None:
    while chunk := await stream.receive_some():
        server.stderr.append(bytes(chunk))
    server.stderr_ended.set()


async def start_demo(url: str, **demo_input: Any) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/v1/runs", json={"producer": "demo", "input": demo_input})
        assert response.status_code == 201
        run_id: str = response.json()["run_id"]
        return run_id


async def test_kept_alive_clients_do_not_delay_the_exit(served):
    with trio.fail_after(60):
        idle = [HTTPConnection(served.url) for _ in range(10)]
        for connection in idle:
            assert (await connection.request("GET", "/healthz")).status == 200
        run_id = await start_demo(served.url, tokens=100_000, rate=20)
        events: list[tuple[str, Any]] = []
        streaming = trio.Event()

        async def follow() -> None:
            sse = HTTPConnection(served.url)
            parser = SSEParser()
            async with sse.stream("GET", f"/v1/runs/{run_id}/events") as (status, _headers, body):
                assert status == 200
                async for chunk in body:
                    events.extend((m.event, m.data) for m in parser.feed(chunk) if m.comment is None)
                    if events:
                        streaming.set()
            await sse.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await streaming.wait()  # mid-stream: at least one event received
            assert await served.exit_after_sigterm() == 0
        for connection in idle:
            await connection.aclose()
    assert events[-1][0] == "cancelled", "the stream ended with its terminal event"
    # Closed by the server itself (Hypercorn's idle timers), not by the
    # last-resort exit that leaves connections behind.
    assert STUCK_WARNING not in served.log, served.log


async def test_a_client_that_stops_reading_does_not_hold_the_exit(served):
    with trio.fail_after(60):
        # 16 KiB events at 300/s; the reader below never reads past the head.
        # (4,000 of them: 64 MiB, the most one demo run may have at the default
        # memory budget; the run outlives the test.)
        run_id = await start_demo(served.url, tokens=4_000, rate=300, size=16384)
        host, port = served.url.removeprefix("http://").rsplit(":", 1)
        stuck = trio.socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        await stuck.connect((host, int(port)))
        with stuck:
            await stuck.send(f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert (await stuck.recv(64)).startswith(b"HTTP/1.1 200")
            # Wait until the run has published more than any socket buffers
            # hold (4.9 MB > this machine's tcp_wmem maximum of 4 MB): the
            # server's write to this client is blocked.
            async with httpx.AsyncClient(base_url=served.url) as client:
                while True:
                    last_seq = (await client.get(f"/v1/runs/{run_id}")).json()["last_seq"]
                    if last_seq >= 300:
                        break
                    await trio.sleep(0.05)  # a poll interval (the server has no event for this)
            assert await served.exit_after_sigterm() == 0
    assert STUCK_WARNING in served.log, served.log


async def test_a_client_that_sends_half_a_request_does_not_hold_the_exit(served):
    with trio.fail_after(60):
        host, port = served.url.removeprefix("http://").rsplit(":", 1)
        silent = await trio.open_tcp_stream(host, int(port))  # connects, never sends a byte
        half = await trio.open_tcp_stream(host, int(port))
        async with silent, half:
            await half.send_all(
                f"POST /v1/runs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            # The server has read the head and started the app, which now
            # waits for a body that never comes.
            assert (await half.receive_some()).startswith(b"HTTP/1.1 100 ")
            assert await served.exit_after_sigterm() == 0
    # Hypercorn cancelled the request after its short graceful period: a
    # clean exit, not the last resort.
    assert STUCK_WARNING not in served.log, served.log


async def test_the_apps_own_shutdown_is_not_cut_short(start_server, tmp_path, monkeypatch):
    # Only connections are given up on; an app's after_serving takes what it needs.
    (tmp_path / "slow_shutdown_app.py").write_text(
        "import trio\n"
        "from trio_streams.web import create_app as create\n"
        "def create_app(**options):\n"
        "    app = create(**options)\n"
        "    @app.after_serving\n"
        "    async def flush_something():\n"
        f"        await trio.sleep({EXIT_BUDGET * 1.5})\n"
        "        open('flushed', 'w').close()\n"
        "    return app\n"
    )
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(60):
        server = await start_server("--app=slow_shutdown_app:create_app")
        idle = HTTPConnection(server.url)
        assert (await idle.request("GET", "/healthz")).status == 200
        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        await server.stderr_ended.wait()
        await idle.aclose()
    assert (tmp_path / "flushed").exists(), server.log
    assert STUCK_WARNING not in server.log, server.log


async def test_hypercorn_closes_an_idle_kept_alive_connection_after_its_timeout():
    # In-process: the same Hypercorn worker serve runs, a short keep-alive timeout.
    app = create_app()
    config = hypercorn.config.Config()
    config.keep_alive_timeout = 0.2
    config.accesslog = None
    config.errorlog = None
    sockets = listen("127.0.0.1", 0, backlog=10)
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        await app.extensions["trio_streams"].stop()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(
                lambda task_status: serve_hypercorn(
                    app, config, sockets, shutdown_trigger=shutdown_trigger, task_status=task_status
                )
            )
            host, port = url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                received = b""
                while chunk := await stream.receive_some():  # ends when the server closes it
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200")
            stop.set()


async def test_the_response_shim_shields_the_last_body_message_only():
    delivered: list[bool] = []

    async def send(message: Any) -> None:
        await trio.lowlevel.checkpoint()  # Hypercorn's send has checkpoints
        delivered.append(message["more_body"])

    async def receive() -> Any:
        raise AssertionError("not called")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        with trio.CancelScope() as request:
            request.cancel()  # what Quart-Trio does once Hypercorn says the request is over
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            await send({"type": "http.response.body", "body": b"", "more_body": True})
        assert request.cancelled_caught

    shim: Any = OneWriteResponses(app, 1.0)
    await shim({"type": "http"}, receive, send)
    assert delivered == [False], "the last message went through, the other was cancelled"
    delivered.clear()
    await shim({"type": "websocket"}, receive, send)  # other scopes pass through untouched
    assert delivered == []
