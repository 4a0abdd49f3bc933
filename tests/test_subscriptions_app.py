"""Subscriptions through the app (Quart routes, the extension's lifecycle) to a real webhook receiver.

Real I/O on the real clock: the receiver is a trio listener on loopback
(allowed by the development option), ordered by events, with a generous
hang guard only.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING

import h11
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .web_support import serving

if TYPE_CHECKING:
    import pytest


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def receive_one(
    listener: trio.SocketListener, got: list[tuple[bytes, bytes]], answered: trio.Event
) -> None:
    stream = await listener.accept()
    connection = h11.Connection(h11.SERVER)
    body, signature = b"", b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            signature = dict(event.headers)[b"webhook-signature"]
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    got.append((signature, body))
    answer = b'{"done": true}'
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
    await stream.aclose()
    answered.set()


async def test_a_webhook_reaches_a_real_receiver_signed_and_done_acks() -> None:
    with trio.fail_after(20):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/hook"
        got: list[tuple[bytes, bytes]] = []
        answered = trio.Event()
        async with (
            serving(durable_subscriptions={"allow_loopback_http": True}) as api,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(receive_one, listener, got, answered)
            hook = {"type": "webhook", "pattern": "events/*", "webhook": {"url": url}, "lease_ttl_ms": 10_000}
            created = await api.client.put("/v1/stream/__ds/subscriptions/h1", json=hook)
            assert created.status_code == 201
            jwks = await (await api.client.get("/v1/stream/__ds/jwks.json")).get_json()
            put = await api.client.put(
                "/v1/stream/events/a", data=b'{"n": 1}', headers={"Content-Type": "application/json"}
            )
            tail = put.headers["Stream-Next-Offset"]
            await answered.wait()
            [(signature, body)] = got
            params = dict(part.split("=", 1) for part in signature.decode().split(","))
            [key] = [k for k in jwks["keys"] if k["kid"] == params["kid"]]
            Ed25519PublicKey.from_public_bytes(unb64(key["x"])).verify(
                unb64(params["ed25519"]), params["t"].encode() + b"." + body
            )
            assert (
                json.loads(body)["callback_url"]
                == "http://localhost/v1/stream/__ds/subscriptions/h1/callback"
            )
            # The done answer acks the snapshot: poll the subscription (ordered by state, not time).
            while True:
                described = await (await api.client.get("/v1/stream/__ds/subscriptions/h1")).get_json()
                if described["streams"][0]["acked_offset"] == tail:
                    break
                await trio.sleep(0.01)
        await listener.aclose()


async def test_subscriptions_are_off_by_default() -> None:
    async with serving() as api:
        assert (await api.client.get("/v1/stream/__ds/jwks.json")).status_code == 501


async def test_subscriptions_beside_redis_streams_warn_that_their_state_is_local(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The streams are shared through Redis, the subscriptions not yet: say so at start."""
    from trio_streams.log.redis import RedisStore

    from .server_support import running_server

    with trio.fail_after(30), caplog.at_level(logging.WARNING, logger="trio_streams.web"):
        async with running_server(store=RedisStore(redis_url, prefix=prefix), durable_subscriptions=True):  # type: ignore[arg-type]
            pass
    warned = [r.getMessage() for r in caplog.records if "subscriptions keep their state" in r.getMessage()]
    assert len(warned) == 1, warned
