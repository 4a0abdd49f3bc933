"""serve's request tasks: an AppQueue to the app, Hypercorn's error handling (trio_streams/cli/_app_task.py).

The queue's own promises on trio's MockClock; the request task under a real
Hypercorn (``serve_hypercorn``) on a real socket, which is also the pin on
the Hypercorn internal it relies on (``TCPServer.run`` building its
``TaskGroup`` from its module's global name: if it stops, the app's
``receive`` is a memory channel's again and the first test fails).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hypercorn.config
import pytest
import trio
import trio.testing

from trio_streams.cli._hypercorn import listen, serve_hypercorn
from trio_streams.web._app_queue import AppQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# -- the queue ---------------------------------------------------------------------


def test_queue_needs_room() -> None:
    with pytest.raises(ValueError, match="room for one message"):
        AppQueue[int](0)


async def test_an_exchange_takes_a_body_queued_in_an_app_queue_without_a_checkpoint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_streams.web._asgi import Exchange

    queue: AppQueue[Any] = AppQueue(4)
    queue.send_nowait({"type": "http.request", "body": b"ab", "more_body": True})
    queue.send_nowait({"type": "http.request", "body": b"c", "more_body": False})

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    exchange = Exchange(
        queue.receive, send, max_content_length=None, body_timeout=None, response_timeout=None
    )
    with trio.fail_after(10), trio.testing.assert_no_checkpoints():
        assert await exchange.read_body() == b"abc"


async def test_queue_is_fifo_and_nowait_says_wouldblock(autojump_clock: trio.testing.MockClock) -> None:
    queue: AppQueue[int] = AppQueue(3)
    with pytest.raises(trio.WouldBlock):
        queue.receive_nowait()
    for item in (1, 2, 3):
        queue.send_nowait(item)
    with pytest.raises(trio.WouldBlock):
        queue.send_nowait(4)
    assert [await queue.receive(), queue.receive_nowait(), await queue.receive()] == [1, 2, 3]


async def test_queue_send_waits_while_full(autojump_clock: trio.testing.MockClock) -> None:
    queue: AppQueue[int] = AppQueue(2)
    sent: list[float] = []

    async def producer() -> None:
        for item in range(4):
            await queue.send(item)
            sent.append(trio.current_time())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(producer)
            await trio.sleep(1)
            assert len(sent) == 2  # bounded: the third send waits
            assert await queue.receive() == 0
            await trio.sleep(1)
            assert len(sent) == 3
            assert [await queue.receive() for _ in range(3)] == [1, 2, 3]
    assert sent[2] - start == 1  # (the clock jumps: exact)
    assert sent[3] - start == 2


async def test_queue_receive_waits_and_cancelled_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue: AppQueue[str] = AppQueue(2)
    got: list[str] = []
    with trio.fail_after(5):
        with trio.move_on_after(1):  # (cancels a parked receive: nothing taken)
            await queue.receive()
        assert trio.current_time() == 1
        async with trio.open_nursery() as nursery:

            async def consumer() -> None:
                got.append(await queue.receive())

            nursery.start_soon(consumer)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await queue.send("a")
        assert got == ["a"]
        with pytest.raises(trio.WouldBlock):
            queue.receive_nowait()


async def test_queue_cancelled_send_adds_nothing(autojump_clock: trio.testing.MockClock) -> None:
    queue: AppQueue[int] = AppQueue(1)
    queue.send_nowait(1)
    with trio.fail_after(5):
        with trio.move_on_after(1):
            await queue.send(2)
        assert trio.current_time() == 1
    assert queue.receive_nowait() == 1
    with pytest.raises(trio.WouldBlock):
        queue.receive_nowait()


# -- under Hypercorn ----------------------------------------------------------------

#: What each request's app saw: (path, the type of its receive's owner, the body received).
seen: list[tuple[str, str, bytes]] = []
#: Set once /wait has received what followed its client's leaving.
LEFT = trio.Event()


async def app(scope: Any, receive: Any, send: Any) -> None:
    """/body: echoes the body's length, reading it slowly; /fail: raises; /wait: until disconnected."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    owner = type(getattr(receive, "__self__", None)).__name__
    path = scope["path"]
    if path == "/fail":
        raise RuntimeError("the app failed")
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        await trio.lowlevel.checkpoint()  # (slower than the socket: the queue fills)
        if not message.get("more_body", False):
            break
    seen.append((path, owner, body))
    if path == "/wait":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        seen.append((path, owner, (await receive())["type"].encode()))
        LEFT.set()
        return
    answer = str(len(body)).encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer, "more_body": False})


@pytest.fixture
async def address(nursery: trio.Nursery) -> AsyncIterator[tuple[str, int]]:
    global LEFT
    seen.clear()
    LEFT = trio.Event()
    config = hypercorn.config.Config()
    config.accesslog = None
    config.errorlog = None
    config.max_app_queue_size = 2
    sockets = listen("127.0.0.1", 0, backlog=10)
    stop = trio.Event()
    (url,) = await nursery.start(
        lambda task_status: serve_hypercorn(
            app, config, sockets, shutdown_trigger=stop.wait, task_status=task_status
        )
    )
    host, port = url.removeprefix("http://").rsplit(":", 1)
    yield host, int(port)
    stop.set()


async def _exchange(address: tuple[str, int], head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` and ``body`` in many small writes; the whole response (the server closes)."""
    sock = trio.socket.socket()
    with sock:
        await sock.connect(address)
        await sock.send(head)
        for start in range(0, len(body), 1000):
            await sock.send(body[start : start + 1000])
        received = b""
        while chunk := await sock.recv(65536):
            received += chunk
    return received


async def test_a_long_body_through_a_small_queue(address: tuple[str, int]) -> None:
    body = b"y" * 300_000
    head = f"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with trio.fail_after(10):
        response = await _exchange(address, head.encode(), body)
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n300000")
    assert seen == [("/body", "AppQueue", body)]


async def test_an_app_error_is_a_500(address: tuple[str, int]) -> None:
    with trio.fail_after(10):
        response = await _exchange(address, b"GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 500")
        # The server still serves.
        response = await _exchange(address, b"GET /body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.endswith(b"\r\n\r\n0")


async def test_a_client_leaving_is_a_disconnect(address: tuple[str, int]) -> None:
    with trio.fail_after(10):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(address)
            await sock.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"waiting" not in received:
                received += await sock.recv(65536)
        await LEFT.wait()
    assert seen == [("/wait", "AppQueue", b""), ("/wait", "AppQueue", b"http.disconnect")]
