"""A webhook receiver for Durable Streams subscriptions: verify, answer, work, call back.

Every delivery is a signed POST (``Webhook-Signature: t=<unix>,kid=<kid>,ed25519=<sig>``,
Ed25519 over ``<t>.<raw body>``). This receiver:

1. verifies the signature with ``cryptography`` against the server's JWK Set
   (``GET __ds/jwks.json``, cached by ``kid``, fetched again for a ``kid`` it
   does not know -- a rotated key), and refuses a timestamp more than 5 minutes
   off (a replay): 401, never handled;
2. answers 200 at once (``{}``: not done), and in a task of its own reads
   each pending stream from its ``acked_offset`` up to the wake's
   ``tail_offset``, printing ``<stream> <message>``;
3. acks with ``POST callback_url`` (``Authorization: Bearer <callback_token>``,
   ``{wake_id, generation, acks, done: true}``) within the lease.

Run it where the server can reach it (webhook URLs must be public ``https``;
``serve --webhook-allow-loopback`` allows ``http://127.0.0.1`` for trying)::

    trio-streams serve --subscriptions --webhook-allow-loopback &
    python examples/webhook_receiver.py http://localhost:8000 --port 9000 &
    curl -X PUT localhost:8000/v1/stream/__ds/subscriptions/hooks -H 'Content-Type: application/json' \\
      -d '{"type": "webhook", "pattern": "orders/*", "webhook": {"url": "http://127.0.0.1:9000/hook"}}'

Needs ``httpx`` (``pip install httpx``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import hypercorn.config
import hypercorn.trio
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from quart import request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import Callable

#: How far a signature's timestamp may be from now (the protocol's replay window).
REPLAY_WINDOW = 300


class SignatureRefused(Exception):
    """The delivery is not signed by the server's key (or is too old): answer 401."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Verifier:
    """Checks ``Webhook-Signature`` against the keys published at ``jwks_url``."""

    def __init__(
        self, client: httpx.AsyncClient, jwks_url: str, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.jwks_url = jwks_url
        self.wall_clock = wall_clock
        self.keys: dict[str, Ed25519PublicKey] = {}

    async def _fetch(self) -> None:
        answer = await self.client.get(self.jwks_url)
        answer.raise_for_status()
        self.keys = {
            jwk["kid"]: Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))
            for jwk in answer.json()["keys"]
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
        }

    async def verify(self, header: str | None, body: bytes) -> str:
        """The ``kid`` that signed ``body``.

        Raises:
            SignatureRefused: no header, a malformed one, an unknown key, a bad
                signature, or a timestamp outside the replay window.
        """
        if not header:
            raise SignatureRefused("no Webhook-Signature")
        try:
            parts = dict(item.split("=", 1) for item in header.split(","))
            timestamp, kid, signature = parts["t"], parts["kid"], _b64url(parts["ed25519"])
            age = abs(self.wall_clock() - int(timestamp))
        except (KeyError, ValueError) as exc:
            raise SignatureRefused(f"a malformed Webhook-Signature: {exc}") from None
        if age > REPLAY_WINDOW:
            raise SignatureRefused(f"signed {age:.0f} s away from now")
        if kid not in self.keys:
            await self._fetch()  # a key we have not seen: the server may have rotated
        key = self.keys.get(kid)
        if key is None:
            raise SignatureRefused(f"unknown kid {kid!r}")
        try:
            key.verify(signature, timestamp.encode() + b"." + body)
        except InvalidSignature:
            raise SignatureRefused("the signature does not verify") from None
        return kid


async def work(client: httpx.AsyncClient, wake: dict[str, Any], on_acked: Callable[[int], None]) -> None:
    """Read the wake's pending streams, ack them all through its callback, then
    tell ``on_acked`` how many messages that was."""
    acks = []
    handled = 0
    for link in wake["streams"]:
        if not link["has_pending"]:
            continue
        offset = link["acked_offset"]
        while offset < link["tail_offset"]:  # offsets sort as strings
            read = await client.get(f"/v1/stream/{link['path']}", params={"offset": offset})
            read.raise_for_status()
            for message in read.json():
                print(f"{link['path']} {json.dumps(message, sort_keys=True)}", flush=True)
                handled += 1
            offset = read.headers["Stream-Next-Offset"]
        acks.append({"stream": link["path"], "offset": offset})
    document = {"wake_id": wake["wake_id"], "generation": wake["generation"], "acks": acks, "done": True}
    bearer = {"Authorization": f"Bearer {wake['callback_token']}"}
    acked = await client.post(wake["callback_url"], json=document, headers=bearer)
    acked.raise_for_status()
    on_acked(handled)


def create_app(client: httpx.AsyncClient, verifier: Verifier, on_acked: Callable[[int], None]) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.post("/hook")
    async def hook() -> tuple[dict[str, Any], int]:
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        try:
            kid = await verifier.verify(request.headers.get("Webhook-Signature"), body)
        except SignatureRefused as exc:
            print(f"refused: {exc}", file=sys.stderr, flush=True)
            return {"error": str(exc)}, 401
        wake = json.loads(body)
        print(f"wake {wake['generation']} signed by {kid}", file=sys.stderr, flush=True)
        # Answer now (not done), work in the app's nursery, call back within the lease.
        app.nursery.start_soon(work, client, wake, on_acked)
        return {}, 200

    return app


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="the Durable Streams server, e.g. http://localhost:8000")
    parser.add_argument("--port", type=int, default=9000, help="the port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--messages", type=int, default=None, help="stop once this many messages are handled and acked"
    )
    args = parser.parse_args(argv)
    stop = trio.Event()
    handled = 0

    def on_acked(count: int) -> None:
        nonlocal handled
        handled += count
        if args.messages is not None and handled >= args.messages:
            stop.set()

    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    async with httpx.AsyncClient(base_url=args.server, timeout=30) as client:
        verifier = Verifier(client, f"{args.server}/v1/stream/__ds/jwks.json")
        app = create_app(client, verifier, on_acked)
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: hypercorn.trio.serve(
                    app, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            print(f"listening on {urls[0]}", flush=True)


if __name__ == "__main__":
    trio.run(main)
