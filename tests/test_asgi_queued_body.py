"""A body already queued by the server is taken without a checkpoint or a body-timeout scope.

Hypercorn's trio worker hands the app a trio memory channel's ``receive``;
:class:`~trio_streams.web._asgi.Exchange` takes what is queued with
``receive_nowait`` (the append path's per-request cost), and waits, under
``BODY_TIMEOUT``, only for what has not arrived.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_streams.web._asgi import BodyTimeout, Exchange


def _exchange(receive: Any, body_timeout: float = 10.0) -> Exchange:
    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent here")

    return Exchange(receive, send, max_content_length=1024, body_timeout=body_timeout, response_timeout=None)


async def test_a_queued_body_is_read_without_a_checkpoint() -> None:
    tx, rx = trio.open_memory_channel[Any](4)
    tx.send_nowait({"type": "http.request", "body": b"ab", "more_body": True})
    tx.send_nowait({"type": "http.request", "body": b"cd", "more_body": False})
    exchange = _exchange(rx.receive)
    with trio.testing.assert_no_checkpoints():
        assert await exchange.read_body() == b"abcd"


async def test_the_rest_of_a_body_is_waited_for(autojump_clock: trio.testing.MockClock) -> None:
    tx, rx = trio.open_memory_channel[Any](4)
    tx.send_nowait({"type": "http.request", "body": b"ab", "more_body": True})
    exchange = _exchange(rx.receive)

    async def later() -> None:
        await trio.sleep(3)
        await tx.send({"type": "http.request", "body": b"cd", "more_body": False})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        assert await exchange.read_body() == b"abcd"
    assert trio.current_time() == 3


async def test_a_body_that_never_ends_still_times_out(autojump_clock: trio.testing.MockClock) -> None:
    tx, rx = trio.open_memory_channel[Any](4)
    tx.send_nowait({"type": "http.request", "body": b"ab", "more_body": True})
    exchange = _exchange(rx.receive, body_timeout=5.0)
    with pytest.raises(BodyTimeout):
        await exchange.read_body()
    assert trio.current_time() == 5


async def test_any_other_receive_is_awaited() -> None:
    messages = [{"type": "http.request", "body": b"xy", "more_body": False}]
    calls = 0

    async def receive() -> Any:
        nonlocal calls
        calls += 1
        return messages.pop(0)

    exchange = _exchange(receive)
    assert await exchange.read_body() == b"xy"
    assert calls == 1
