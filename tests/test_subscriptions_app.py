"""Subscriptions through the app (Quart routes, the extension's lifecycle) to a real webhook receiver.

Real I/O on the real clock: the receiver is a trio listener on loopback
(allowed by the development option), ordered by events, with a generous
hang guard only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import h11
import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .redis_support import eventually
from .web_support import serving


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


@pytest.mark.redis
async def test_two_servers_on_one_redis_share_subscriptions_and_claim_a_wake_once(
    redis_url: str, prefix: str
) -> None:
    """Two servers (their own hubs, stores and connections) on one Redis: a
    subscription PUT on A is woken by data appended on B, its wake is claimed
    once across both, and a token A gave out acks on B."""
    from trio_streams.log.redis import RedisStore

    from .server_support import running_server

    def server() -> Any:
        store = RedisStore(redis_url, prefix=prefix)
        return running_server(store=store, durable_subscriptions=True)  # type: ignore[arg-type]

    pull = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 30000}
    json_type = {"Content-Type": "application/json"}
    with trio.fail_after(60):
        async with server() as a, server() as b, httpx.AsyncClient() as http:
            base_a, base_b = f"{a.url}/v1/stream", f"{b.url}/v1/stream"
            assert (await http.put(f"{base_a}/wake/pool", headers=json_type)).status_code == 201
            put = await http.put(f"{base_a}/__ds/subscriptions/s1", json=pull)
            assert put.status_code == 201
            assert (await http.get(f"{base_b}/__ds/subscriptions/s1")).json()["type"] == "pull-wake"
            registry_b = b.streams._durable_service.subscriptions  # type: ignore[union-attr]

            async def b_knows() -> bool:
                return (None, "s1") in registry_b._indexed

            await eventually(b_knows)
            created = await http.put(f"{base_b}/events/x", headers=json_type, content=b'{"n": 1}')
            assert created.status_code == 201

            async def woken() -> bool:
                events = (await http.get(f"{base_a}/wake/pool", params={"offset": "-1"})).json()
                return [event["generation"] for event in events] == [1]

            await eventually(woken)
            answers: list[httpx.Response] = []
            async with trio.open_nursery() as nursery:
                for base, worker in ((base_a, "wa"), (base_b, "wb")):

                    async def claim(base: str = base, worker: str = worker) -> None:
                        url = f"{base}/__ds/subscriptions/s1/claim"
                        answers.append(await http.post(url, json={"worker": worker}))

                    nursery.start_soon(claim)
            assert sorted(answer.status_code for answer in answers) == [200, 409]
            won = next(answer for answer in answers if answer.status_code == 200).json()
            lost = next(answer for answer in answers if answer.status_code == 409).json()
            assert lost["error"]["code"] == "ALREADY_CLAIMED"
            # The token works on either server (the state is Redis's): ack it where it was not given.
            ack = {"wake_id": won["wake_id"], "generation": won["generation"], "done": True}
            for base, status in ((base_b, 200), (base_a, 409)):
                answer = await http.post(
                    f"{base}/__ds/subscriptions/s1/ack",
                    json=ack,
                    headers={"Authorization": f"Bearer {won['token']}"},
                )
                assert answer.status_code == status, answer.text
