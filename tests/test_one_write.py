"""A complete HTTP/1.1 response is one socket write (trio_streams/cli/_one_write.py).

A real Hypercorn (``serve_hypercorn``) on a real socket, the real clock with a
deadline; the server's writes are counted at ``trio.SocketStream.send_all``
(the client talks through a bare ``trio.socket``, so every counted write is
the server's). These tests are also the pin on the Hypercorn internals the
module relies on: if the installed Hypercorn stops building connections from
``hypercorn.trio.run.TCPServer``, or writes a response in other steps, the
write counts change and they fail.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import h11
import hypercorn.config
import hypercorn.trio.run
import pytest
import trio
import trio.testing

from trio_streams.cli._hypercorn import listen, serve_hypercorn
from trio_streams.cli._one_write import CorkingTCPServer, OneWriteResponses
from trio_streams.web._asgi import CONNECTION_OVER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from trio_streams.protocol import Response

BODY = b"x" * 100


class Writes:
    """Every non-empty ``send_all`` of a server's stream, in order."""

    def __init__(self) -> None:
        self.data: list[bytes] = []


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    seen = Writes()
    original = trio.SocketStream.send_all

    async def counting(self: trio.SocketStream, data: Any) -> None:
        if data:
            seen.data.append(bytes(data))
        await original(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", counting)
    return seen


async def app(scope: Any, receive: Any, send: Any) -> None:
    """/complete: 200 with a body; /empty: 204; /stream: headers, then a part once /go was asked."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/complete":
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY, "more_body": False})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/stream":  # unknown length: its headers must not wait for the part
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await GO.wait()
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/over":  # waits until the server says the connection is over
        over = trio.Event()
        OFFERED.update(scope["extensions"][CONNECTION_OVER])
        scope["extensions"][CONNECTION_OVER]["when_over"](over.set)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        await over.wait()
        OVER.set()
    elif path == "/held":  # a waiting stream: what its connection's task holds meanwhile
        CONNECTION_TASK.append(trio.lowlevel.current_task().parent_nursery.parent_task)  # type: ignore[union-attr]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        await trio.sleep_forever()
    elif path == "/start-only":  # a start of known length and no body message: sent once the app returns
        await send({"type": "http.response.start", "status": 204, "headers": []})
    elif path == "/go":
        GO.set()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})


GO = trio.Event()
OVER = trio.Event()
#: The connection task of /held's request.
CONNECTION_TASK: list[trio.lowlevel.Task] = []
#: What /over was offered in its scope's CONNECTION_OVER extension.
OFFERED: dict[str, Any] = {}


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, int]]:
    global GO, OVER
    GO, OVER = trio.Event(), trio.Event()
    OFFERED.clear()
    CONNECTION_TASK.clear()
    config = hypercorn.config.Config()
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 1000  # (no test here waits for it)
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


class Client:
    """One HTTP/1.1 connection over a bare trio socket, parsed by h11."""

    def __init__(self, sock: trio.socket.SocketType, host: str) -> None:
        self.sock = sock
        self.host = host.encode()
        self.h11 = h11.Connection(h11.CLIENT)

    async def request(self, method: str, path: str) -> None:
        request = h11.Request(method=method, target=path, headers=[(b"host", self.host)])
        await self.sock.send(self.h11.send(request) + self.h11.send(h11.EndOfMessage()))

    async def next_event(self) -> Any:
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            self.h11.receive_data(await self.sock.recv(65536))
        return event

    async def response(self) -> tuple[int, bytes]:
        """The next whole response (status, body); ready for the next request after it."""
        head = await self.next_event()
        assert isinstance(head, h11.Response)
        body = b""
        while not isinstance(event := await self.next_event(), h11.EndOfMessage):
            body += event.data
        self.h11.start_next_cycle()
        return head.status_code, body


@pytest.fixture
async def client(server: tuple[str, int]) -> AsyncIterator[Client]:
    sock = trio.socket.socket()
    with sock:
        await sock.connect(server)
        yield Client(sock, server[0])


async def test_a_complete_response_is_one_write_and_the_connection_is_kept(client: Client, writes: Writes):
    with trio.fail_after(20):
        for _ in range(2):  # kept alive: the second request is on the same connection
            await client.request("GET", "/complete")
            assert await client.response() == (200, BODY)
        await client.request("GET", "/empty")
        assert await client.response() == (204, b"")
        await client.request("HEAD", "/complete")
        assert await client.response() == (200, b"")
    assert len(writes.data) == 4, writes.data
    assert writes.data[0].startswith(b"HTTP/1.1 200")
    assert writes.data[0].endswith(b"\r\n\r\n" + BODY)
    assert writes.data[2].startswith(b"HTTP/1.1 204")
    assert writes.data[3].endswith(b"\r\n\r\n")  # HEAD: the headers only


async def test_a_start_with_no_body_message_goes_when_the_app_returns(client: Client, writes: Writes):
    with trio.fail_after(20):
        await client.request("GET", "/start-only")
        head = await client.next_event()  # (then Hypercorn closes: the response never ended)
        assert isinstance(head, h11.Response)
        assert head.status_code == 204
    assert writes.data[0].startswith(b"HTTP/1.1 204")


async def test_a_response_of_unknown_length_sends_its_headers_at_once(
    server: tuple[str, int], client: Client, writes: Writes
):
    with trio.fail_after(20):
        await client.request("GET", "/stream")
        head = await client.next_event()  # before its part exists (the app waits for /go)
        assert isinstance(head, h11.Response)
        assert head.status_code == 200
        other = trio.socket.socket()
        with other:
            await other.connect(server)
            second = Client(other, server[0])
            await second.request("GET", "/go")
            assert await second.response() == (200, b"ok")
        part = await client.next_event()
        assert isinstance(part, h11.Data)
        assert part.data == b"part"
        assert isinstance(await client.next_event(), h11.EndOfMessage)
    assert writes.data[0].startswith(b"HTTP/1.1 200")
    assert writes.data[0].endswith(b"\r\n\r\n")


def connection_tasks() -> int:
    """The server's connection tasks alive now (trio's ``serve_listeners`` handlers)."""

    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return sum(task.name.endswith("_run_handler") for task in walk(root))


async def test_a_connection_the_client_closed_ends_without_waiting_for_its_idle_timeout(
    server: tuple[str, int],
):
    with trio.fail_after(20):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            await client.request("GET", "/complete")
            assert await client.response() == (200, BODY)
            assert connection_tasks() == 1
        while connection_tasks():  # noqa: ASYNC110  (no event marks a task ending; Hypercorn's own timer kept it 1000 s)
            await trio.sleep(0.01)


async def test_the_server_says_when_a_connection_is_over(server: tuple[str, int]):
    with trio.fail_after(20):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            await client.request("GET", "/over")
            assert isinstance(await client.next_event(), h11.Response)
            assert isinstance(await client.next_event(), h11.Data)
        await OVER.wait()  # the client closed: the app's callback was called
    # The promise that lets an Exchange send a complete response without a RESPONSE_TIMEOUT scope.
    assert OFFERED["bounded_sends"] is True


def _awaited(task: trio.lowlevel.Task) -> list[str]:
    """What ``task``'s coroutines await, outermost first: each coroutine's name, then the
    type of what the innermost awaits (through the wrapper an object's ``__await__`` returns)."""
    import gc

    names: list[str] = []
    awaited: Any = task.coro
    while awaited is not None:
        if type(awaited).__name__ == "coroutine_wrapper":
            (awaited,) = (c for c in gc.get_referents(awaited) if hasattr(c, "cr_code"))
        if not hasattr(awaited, "cr_code"):
            names.append(type(awaited).__name__)
            break
        names.append(awaited.cr_code.co_name)
        awaited = awaited.cr_await
    return names


async def test_an_idle_connection_is_read_in_one_frame_of_its_own(server: tuple[str, int]):
    """A plain socket's connection task holds trio's handler, one frame of ours (Hypercorn's
    ``run`` and ``_read_data`` in one) and the wait itself, none of trio's wait_readable frames."""
    with trio.fail_after(20):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            await client.request("GET", "/held")
            assert isinstance(await client.next_event(), h11.Response)
            assert isinstance(await client.next_event(), h11.Data)
            await trio.testing.wait_all_tasks_blocked()
            (task,) = CONNECTION_TASK
            assert _awaited(task) == ["_run_handler", "_serve_plain", "ReadableWait"]


def test_hypercorn_builds_its_connections_from_the_corking_server_once_installed():
    # serve_hypercorn installs it; worker_serve looks the name up in its module.
    assert "TCPServer" in hypercorn.trio.run.worker_serve.__code__.co_names
    from trio_streams.cli._one_write import install

    install()
    assert vars(hypercorn.trio.run)["TCPServer"] is CorkingTCPServer


async def test_without_a_corking_connection_messages_pass_through_in_order():
    sent: list[Any] = []

    async def send(message: Any) -> None:
        await trio.lowlevel.checkpoint()
        sent.append(message)

    async def receive() -> Any:
        raise AssertionError("not called")

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        assert len(sent) == 1, "sent at once: nothing to cork"
        await send({"type": "http.response.body", "body": b"x", "more_body": False})

    scope: Any = {"type": "http", "http_version": "1.1"}
    await OneWriteResponses(inner, 1.0)(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]


async def test_an_exchange_offered_the_connection_s_end_is_cancelled_by_it_without_a_watcher():
    from trio_streams.web._asgi import Exchange

    callbacks: list[Any] = []
    forgotten: list[Any] = []

    def when_over(callback: Any) -> Any:
        callbacks.append(callback)
        return lambda: forgotten.append(callback)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        raise AssertionError("no response: the client went away")

    waiting = trio.Event()

    async def respond(exchange: Exchange) -> Response:
        waiting.set()
        await trio.sleep_forever()  # a long-poll
        raise AssertionError("not reached")

    exchange = Exchange(
        receive, send, max_content_length=None, body_timeout=None, response_timeout=None, when_over=when_over
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(exchange.run, respond, watch=True))
            await waiting.wait()
            # No watcher task: the exchange's own task is the only one.
            assert len(nursery.child_tasks) == 1
            assert not next(iter(nursery.child_tasks)).child_nurseries
            (callback,) = callbacks
            callback()  # the connection is over
    assert forgotten == [callback]


@pytest.mark.parametrize("bounded", [False, True])
async def test_an_exchange_s_response_timeout_bounds_its_sends_unless_the_server_does(
    autojump_clock: trio.testing.MockClock, bounded: bool
):
    """RESPONSE_TIMEOUT ends a stalled send; with ``None`` (the server bounds its sends,
    CONNECTION_OVER's ``bounded_sends``) the exchange adds no deadline of its own."""
    from trio_streams.protocol import Response
    from trio_streams.web._asgi import Exchange

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])
        await trio.sleep(100)  # a client that does not read

    async def respond(exchange: Exchange) -> Response:
        return Response(204, {}, b"")

    exchange = Exchange(
        receive, send, max_content_length=None, body_timeout=None, response_timeout=None if bounded else 5.0
    )
    await exchange.run(respond, watch=False)
    # 5 s: the timeout cut the first send short; 200 s: both sends ran to their end.
    assert trio.current_time() == (200.0 if bounded else 5.0)
    assert sent == (["http.response.start", "http.response.body"] if bounded else ["http.response.start"])


async def _serve_with_read_timeout(nursery: trio.Nursery, read_timeout: int | None) -> tuple[str, int]:
    config = hypercorn.config.Config()
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 1000
    config.read_timeout = read_timeout
    sockets = listen("127.0.0.1", 0, backlog=10)
    (url,) = await nursery.start(
        lambda task_status: serve_hypercorn(
            app, config, sockets, shutdown_trigger=trio.sleep_forever, task_status=task_status
        )
    )
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


class FailAfters:
    """The ``trio.fail_after`` scopes opened around a connection's reads while counted
    (not the TLS handshake's: ``ssl_handshake_timeout``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        original = trio.fail_after
        handshake = hypercorn.config.Config().ssl_handshake_timeout

        def counting(seconds: float, **kwargs: Any) -> Any:
            self.opened += seconds != handshake
            return original(seconds, **kwargs)

        monkeypatch.setattr(trio, "fail_after", counting)


async def test_a_connection_reads_without_a_timeout_scope_when_there_is_no_read_timeout(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
):
    # (Hypercorn opens fail_after(inf) around every read: a scope held by every idle connection.)
    server = await _serve_with_read_timeout(nursery, None)
    with trio.fail_after(20):
        opened = FailAfters(monkeypatch)
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            for _ in range(2):
                await client.request("GET", "/complete")
                assert await client.response() == (200, BODY)
    assert opened.opened == 0
    nursery.cancel_scope.cancel()


async def test_a_read_timeout_still_closes_a_silent_connection(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
):
    server = await _serve_with_read_timeout(nursery, 1)
    with trio.fail_after(10):
        opened = FailAfters(monkeypatch)
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            assert await sock.recv(100) == b""  # closed by the server: the client sent nothing
    assert opened.opened >= 1
    nursery.cancel_scope.cancel()


async def test_a_client_that_pipelined_a_request_behind_a_stream_is_seen_leaving(server: tuple[str, int]):
    """A request sent behind a stream's (pipelined) paused Hypercorn's HTTP/1.1 protocol in the
    connection's reading: the socket was no longer read, and the client's leaving went unseen
    for as long as the stream lasted (an idle event stream: forever)."""
    with trio.fail_after(20):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            await client.request("GET", "/over")
            assert isinstance(await client.next_event(), h11.Response)
            assert isinstance(await client.next_event(), h11.Data)
            await sock.send(b"GET /complete HTTP/1.1\r\nhost: x\r\n\r\n")
        await OVER.wait()  # the client closed: the app's callback was called


async def test_a_request_pipelined_behind_a_stream_is_answered_once_the_stream_ends(
    server: tuple[str, int],
):
    with trio.fail_after(20):
        sock = trio.socket.socket()
        with sock:
            await sock.connect(server)
            client = Client(sock, server[0])
            await client.request("GET", "/stream")
            assert isinstance(await client.next_event(), h11.Response)
            await sock.send(b"GET /complete HTTP/1.1\r\nhost: x\r\n\r\n")
            await trio.testing.wait_all_tasks_blocked()
            GO.set()
            body = b""
            while not isinstance(event := await client.next_event(), h11.EndOfMessage):
                body += event.data
            assert body == b"part"
            client.h11.start_next_cycle()
            # (Sent already, as raw bytes: the client's parser is told of it.)
            client.h11.send(h11.Request(method="GET", target="/complete", headers=[(b"host", b"x")]))
            client.h11.send(h11.EndOfMessage())
            assert await client.response() == (200, BODY)
