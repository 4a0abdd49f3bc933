"""The ``__ds/`` control API through the protocol handlers (no framework); the webhook client on a socket."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import h11
import pytest
import trio
import trio.testing

from trio_streams.durable import DurableStreamError, DurableStreamStore
from trio_streams.durable._webhook_client import WebhookDeliveryError, post_webhook
from trio_streams.durable._webhook_url import WebhookTarget
from trio_streams.protocol import Response, handle_stream_request
from trio_streams.web._durable_routes import durable_service

from .test_protocol import MOUNT, request

if TYPE_CHECKING:
    from trio_streams.protocol import DurableService

PULL = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 1000}


async def call(
    svc: DurableService, method: str, name: str, document: object = None, **headers: str
) -> Response:
    body = b"" if document is None else json.dumps(document).encode()
    response = await handle_stream_request(request(method, MOUNT + name, body=body, headers=headers), svc)
    assert isinstance(response, Response)
    return response


def doc(response: Response) -> Any:
    return json.loads(response.body)


async def test_control_api_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    svc = durable_service(DurableStreamStore(), subscriptions={})
    assert svc.subscriptions is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.subscriptions.serve)
        jwks = await call(svc, "GET", "__ds/jwks.json")
        assert (jwks.status, jwks.headers["Content-Type"]) == (200, "application/jwk-set+json")
        [key] = doc(jwks)["keys"]
        await call(svc, "PUT", "wake/pool", **{"Content-Type": "application/json"})
        created = await call(svc, "PUT", "__ds/subscriptions/p1", PULL)
        assert created.status == 201
        assert (doc(created)["id"], doc(created)["lease_ttl_ms"]) == ("p1", 1000)
        assert (await call(svc, "PUT", "__ds/subscriptions/p1", PULL)).status == 200
        with pytest.raises(DurableStreamError) as other:
            await call(svc, "PUT", "__ds/subscriptions/p1", {**PULL, "lease_ttl_ms": 2000})
        assert (other.value.status, other.value.code) == (409, "SUBSCRIPTION_ALREADY_EXISTS")
        with pytest.raises(DurableStreamError) as bad:
            await call(svc, "PUT", "__ds/subscriptions/p2", {**PULL, "lease_ttl_ms": 999})
        assert (bad.value.status, bad.value.code) == (400, "INVALID_REQUEST")
        with pytest.raises(DurableStreamError) as unsafe:
            hook = {"type": "webhook", "pattern": "a/*", "webhook": {"url": "http://10.0.0.1/hook"}}
            await call(svc, "PUT", "__ds/subscriptions/h1", hook)
        assert (unsafe.value.status, unsafe.value.code) == (400, "WEBHOOK_URL_REJECTED")
        hook = {"type": "webhook", "pattern": "a/*", "webhook": {"url": "https://93.184.216.34/hook"}}
        webhook = doc(await call(svc, "PUT", "__ds/subscriptions/h2", hook))["webhook"]
        assert webhook == {
            "url": "https://93.184.216.34/hook",
            "signing": {
                "alg": "ed25519",
                "kid": key["kid"],
                "jwks_url": "http://example.test/v1/stream/__ds/jwks.json",
            },
        }
        # Data, a claim, a second worker refused with the holder, an ack with the Bearer token.
        put = await call(svc, "PUT", "events/e1", {"x": 1}, **{"Content-Type": "application/json"})
        tail = put.headers["Stream-Next-Offset"]
        claim = doc(await call(svc, "POST", "__ds/subscriptions/p1/claim", {"worker": "w1"}))
        assert [(s["path"], s["tail_offset"], s["has_pending"]) for s in claim["streams"]] == [
            ("events/e1", tail, True)
        ]
        busy = await call(svc, "POST", "__ds/subscriptions/p1/claim", {"worker": "w2"})
        assert busy.status == 409
        assert doc(busy)["error"] == {
            "code": "ALREADY_CLAIMED",
            "message": "another worker holds the subscription's lease",
            "current_holder": "w1",
            "generation": claim["generation"],
        }
        ack = {
            "wake_id": claim["wake_id"],
            "generation": claim["generation"],
            "done": True,
            "acks": [{"stream": "events/e1", "offset": tail}],
        }
        with pytest.raises(DurableStreamError) as no_token:
            await call(svc, "POST", "__ds/subscriptions/p1/ack", ack)
        assert no_token.value.code == "FENCED"
        acked = await call(
            svc, "POST", "__ds/subscriptions/p1/ack", ack, Authorization=f"Bearer {claim['token']}"
        )
        assert (acked.status, doc(acked)) == (200, {"ok": True, "next_wake": False})
        # Membership.
        assert (
            await call(svc, "POST", "__ds/subscriptions/p1/streams", {"streams": ["manual/a"]})
        ).status == 204
        listed = doc(await call(svc, "GET", "__ds/subscriptions/p1"))["streams"]
        assert [(s["path"], s["link_type"], s["acked_offset"]) for s in listed] == [
            ("events/e1", "glob", tail),
            ("manual/a", "explicit", "0000000000000000_0000000000000000"),
        ]
        assert (await call(svc, "DELETE", "__ds/subscriptions/p1/streams/manual/a")).status == 204
        assert [s["path"] for s in doc(await call(svc, "GET", "__ds/subscriptions/p1"))["streams"]] == [
            "events/e1"
        ]
        assert (await call(svc, "DELETE", "__ds/subscriptions/p1")).status == 204
        with pytest.raises(DurableStreamError) as gone:
            await call(svc, "GET", "__ds/subscriptions/p1")
        assert (gone.value.status, gone.value.code) == (404, "SUBSCRIPTION_NOT_FOUND")
        nursery.cancel_scope.cancel()


async def test_without_a_registry_reserved_names_stay_501() -> None:
    svc = durable_service(DurableStreamStore())
    with pytest.raises(DurableStreamError) as refused:
        await call(svc, "GET", "__ds/jwks.json")
    assert refused.value.status == 501


async def serve_one(listener: trio.SocketListener, answer: bytes, seen: list[bytes]) -> None:
    stream = await listener.accept()
    connection = h11.Connection(h11.SERVER)
    body = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            seen.append(dict(event.headers)[b"webhook-signature"])
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    seen.append(body)
    await stream.send_all(answer)
    await stream.aclose()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"done": true}', (200, b'{"done": true}')),
        # A redirect is a status like any other: never followed.
        (
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://10.0.0.1/\r\nContent-Length: 0\r\n\r\n",
            (307, b""),
        ),
    ],
)
async def test_the_client_posts_to_the_checked_address(answer: bytes, expected: tuple[int, bytes]) -> None:
    with trio.fail_after(20):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        seen: list[bytes] = []
        # The URL's host name is not resolved: the client connects to the checked address.
        target = WebhookTarget("http", "hooks.invalid", port, "/h", "127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one, listener, answer, seen)
            got = await post_webhook(target, b'{"a":1}', {"Webhook-Signature": "t=1,kid=k,ed25519=s"})
        await listener.aclose()
        assert got == expected
        assert seen == [b"t=1,kid=k,ed25519=s", b'{"a":1}']


async def test_a_refused_connection_is_a_delivery_error() -> None:
    with trio.fail_after(20):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        await listener.aclose()
        with pytest.raises(WebhookDeliveryError):
            await post_webhook(WebhookTarget("http", "x", port, "/", "127.0.0.1"), b"{}", {})


async def test_with_owners_a_subscription_is_its_creators_and_sees_only_their_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    users = {"Bearer a": "alice", "Bearer b": "bob"}

    def authorize(header: str | None) -> str:
        if header not in users:
            raise DurableStreamError(401, "unauthorized", "who are you?")
        return users[header]

    svc = durable_service(DurableStreamStore(), authorize=authorize, access="owner", subscriptions={})
    assert svc.subscriptions is not None
    alice, bob = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
    json_type = {"Content-Type": "application/json"}
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.subscriptions.serve)
        with pytest.raises(DurableStreamError) as anonymous:
            await call(svc, "PUT", "__ds/subscriptions/p1", PULL)
        assert anonymous.value.status == 401
        assert (await call(svc, "GET", "__ds/jwks.json")).status == 200  # public keys: no token
        await call(svc, "PUT", "wake/pool", **alice, **json_type)
        assert (await call(svc, "PUT", "__ds/subscriptions/p1", PULL, **alice)).status == 201
        with pytest.raises(DurableStreamError) as other:
            await call(svc, "GET", "__ds/subscriptions/p1", **bob)
        assert other.value.status == 404
        # Bob's stream of the same name does not wake Alice's subscription; hers does.
        await call(svc, "PUT", "events/e", {"x": 1}, **bob, **json_type)
        with pytest.raises(DurableStreamError) as idle:
            await call(svc, "POST", "__ds/subscriptions/p1/claim", {"worker": "w"}, **alice)
        assert idle.value.code == "NO_PENDING_WORK"
        await call(svc, "PUT", "events/e", {"x": 1}, **alice, **json_type)
        claim = doc(await call(svc, "POST", "__ds/subscriptions/p1/claim", {"worker": "w"}, **alice))
        assert [s["path"] for s in claim["streams"]] == ["events/e"]
        # The ack carries the claim's token, not a user's: it finds Alice's subscription by it.
        ack = {"wake_id": claim["wake_id"], "generation": claim["generation"], "done": True}
        answer = await call(
            svc, "POST", "__ds/subscriptions/p1/ack", ack, Authorization=f"Bearer {claim['token']}"
        )
        assert doc(answer) == {"ok": True, "next_wake": True}  # (nothing acked: still pending)
        # The same ack again: the wake has ended, and its token still names Alice's
        # subscription, so it is fenced there -- not a 404 from the shared namespace.
        with pytest.raises(DurableStreamError) as repeated:
            await call(
                svc, "POST", "__ds/subscriptions/p1/ack", ack, Authorization=f"Bearer {claim['token']}"
            )
        assert (repeated.value.status, repeated.value.code) == (409, "FENCED")
        with pytest.raises(DurableStreamError) as forged:  # a token nobody was given
            await call(svc, "POST", "__ds/subscriptions/p1/ack", ack, Authorization="Bearer forged")
        assert forged.value.status == 404  # it reveals nothing about Alice's subscription
        nursery.cancel_scope.cancel()


async def refusal(
    svc: DurableService, method: str, name: str, body: bytes, **headers: str
) -> DurableStreamError:
    with pytest.raises(DurableStreamError) as error:
        await handle_stream_request(request(method, MOUNT + name, body=body, headers=headers), svc)
    return error.value


async def test_bad_control_documents_are_4xx_never_500(autojump_clock: trio.testing.MockClock) -> None:
    svc = durable_service(DurableStreamStore(), subscriptions={})
    assert svc.subscriptions is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.subscriptions.serve)
        deep = await refusal(svc, "PUT", "__ds/subscriptions/d", b"[" * 100_000 + b"]" * 100_000)
        assert (deep.status, deep.code) == (400, "INVALID_REQUEST")
        # A control document is small: bounded well below a stream append's limit.
        big = json.dumps({**PULL, "description": "x" * (3 * 1024 * 1024)}).encode()
        assert (await refusal(svc, "PUT", "__ds/subscriptions/b", big)).status == 413
        # The name `__ds` itself is reserved (its first segment is `__ds`): never a stream.
        assert (await refusal(svc, "PUT", "__ds", b"", **{"Content-Type": "application/json"})).status == 404
        # `done` is a boolean: a string is refused, not read as a heartbeat.
        await call(svc, "PUT", "wake/pool", **{"Content-Type": "application/json"})
        await call(svc, "PUT", "__ds/subscriptions/p1", PULL)
        await call(svc, "PUT", "events/e1", {"x": 1}, **{"Content-Type": "application/json"})
        claim = doc(await call(svc, "POST", "__ds/subscriptions/p1/claim", {"worker": "w1"}))
        ack = json.dumps({"wake_id": claim["wake_id"], "generation": claim["generation"], "done": "true"})
        bearer = {"Authorization": f"Bearer {claim['token']}"}
        not_bool = await refusal(svc, "POST", "__ds/subscriptions/p1/ack", ack.encode(), **bearer)
        assert (not_bool.status, not_bool.code) == (400, "INVALID_REQUEST")
        ack_one = json.dumps({"wake_id": claim["wake_id"], "generation": claim["generation"], "done": 1})
        one = await refusal(svc, "POST", "__ds/subscriptions/p1/ack", ack_one.encode(), **bearer)
        assert (one.status, one.code) == (400, "INVALID_REQUEST")  # (1 is not a boolean either)
        # A token that is not the wake's is fenced before anything about the subscription is told.
        forged = await refusal(
            svc, "POST", "__ds/subscriptions/p1/callback", b"{}", Authorization="Bearer nope"
        )
        assert (forged.status, forged.code) == (409, "FENCED")
        nursery.cancel_scope.cancel()
