"""A pull-wake worker over HTTP: sleep until a subscription has work, claim it,
read each stream from its acked offset, heartbeat within the lease, ack.

Against a running server (``trio-streams serve --subscriptions``) that has a
pull-wake subscription, e.g.::

    curl -X PUT localhost:8000/v1/stream/wake/pool -H 'Content-Type: application/json'
    curl -X PUT localhost:8000/v1/stream/__ds/subscriptions/orders -H 'Content-Type: application/json' \\
      -d '{"type": "pull-wake", "pattern": "orders/*", "wake_stream": "wake/pool"}'
    python examples/http_pull_wake_worker.py http://localhost:8000 orders wake/pool

It prints ``<stream> <message>`` for every JSON message it handles. The
steps (docs/durable.md, "Running a worker"):

1. ``POST __ds/subscriptions/<id>/claim {"worker"}``: 200 is a wake (a
   token, each stream's ``acked_offset`` and ``tail_offset``); 409
   ``NO_PENDING_WORK`` or ``ALREADY_CLAIMED``: wait for the next wake event
   on the wake stream (a long-poll from its tail), then claim again.
2. Read each pending stream from its ``acked_offset`` up to the wake's
   ``tail_offset`` (catch-up reads), handling each message.
3. Meanwhile a heartbeat (an ``ack`` without ``done``) every third of the
   lease keeps the claim; each one carries the offsets handled so far.
4. ``ack`` with ``done: true`` and every stream's offset ends the wake
   (``next_wake``: more data came meanwhile -- claim again at once). If
   handling fails, ``release`` gives the wake back (another worker, or
   this one, claims it again) and the error propagates.

Needs ``httpx`` (``pip install httpx``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import httpx
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: How long a long-poll of the wake stream may wait before the server answers 204.
POLL_SECONDS = 30.0
#: The grace given to a release on the way out (it runs shielded).
RELEASE_GRACE = 5.0


class Worker:
    """One worker of one pull-wake subscription on the server at ``base_url``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        subscription: str,
        wake_stream: str,
        name: str,
        handle: Callable[[str, Any], Awaitable[None]],
    ) -> None:
        self.client = client
        self.control = f"/v1/stream/__ds/subscriptions/{subscription}"
        self.wake_stream = f"/v1/stream/{wake_stream}"
        self.name = name
        self.handle = handle
        #: Where the next long-poll of the wake stream starts.
        self._wake_offset = "now"
        #: Messages handled in wakes that were acked.
        self.handled = 0

    async def run(self, *, messages: int | None = None) -> None:
        """Claim and work wakes forever (or until ``messages`` are handled and acked).

        Cancellation: a claimed wake is released (shielded, within
        ``RELEASE_GRACE``) and the cancellation propagates.
        """
        # The wake stream's tail *before* the first claim: a wake event appended
        # between a refused claim and the long-poll that follows it still wakes it.
        head = await self.client.head(self.wake_stream)
        head.raise_for_status()
        self._wake_offset = head.headers["Stream-Next-Offset"]
        while messages is None or self.handled < messages:
            claimed = await self.client.post(f"{self.control}/claim", json={"worker": self.name})
            if claimed.status_code == 409:
                # NO_PENDING_WORK or ALREADY_CLAIMED: sleep until the next wake event.
                await self._next_wake_event()
                continue
            claimed.raise_for_status()
            await self._work(claimed.json())

    async def _next_wake_event(self) -> None:
        """Return when the wake stream gets an event (or the long-poll ends: claim again)."""
        polled = await self.client.get(
            self.wake_stream,
            params={"offset": self._wake_offset, "live": "long-poll"},
            timeout=POLL_SECONDS + 10,
        )
        if polled.status_code in (200, 204):
            self._wake_offset = polled.headers.get("Stream-Next-Offset", self._wake_offset)
        else:
            polled.raise_for_status()

    async def _work(self, wake: dict[str, Any]) -> None:
        fence = {"wake_id": wake["wake_id"], "generation": wake["generation"]}
        bearer = {"Authorization": f"Bearer {wake['token']}"}
        #: stream -> the offset handled up to (what every heartbeat and the last ack carry).
        offsets: dict[str, str] = {}
        handled: list[None] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, fence, bearer, offsets, wake["lease_ttl_ms"] / 1000)
                for link in wake["streams"]:
                    if link["has_pending"]:
                        await self._read(link, offsets, handled)
                nursery.cancel_scope.cancel(reason="wake handled")
        except BaseException:
            # (Cancelled included: give the wake back before propagating. Nothing is swallowed.)
            with trio.move_on_after(RELEASE_GRACE, shield=True):
                released = await self.client.post(f"{self.control}/release", json=fence, headers=bearer)
                print(f"released {wake['wake_id']}: {released.status_code}", file=sys.stderr)
            raise
        acks = [{"stream": path, "offset": offset} for path, offset in offsets.items()]
        acked = await self.client.post(
            f"{self.control}/ack", json={**fence, "acks": acks, "done": True}, headers=bearer
        )
        acked.raise_for_status()  # 409 FENCED: the lease ran out; another claim redoes the work
        self.handled += len(handled)

    async def _read(self, link: dict[str, Any], offsets: dict[str, str], handled: list[None]) -> None:
        """Handle the linked stream's messages from its acked offset up to the wake's tail."""
        path, offset = link["path"], link["acked_offset"]
        while offset < link["tail_offset"]:  # offsets sort as strings (the protocol's rule)
            read = await self.client.get(f"/v1/stream/{path}", params={"offset": offset})
            read.raise_for_status()
            for message in read.json():
                await self.handle(path, message)
                handled.append(None)
            offset = read.headers["Stream-Next-Offset"]
            offsets[path] = offset

    async def _heartbeat(
        self, fence: dict[str, Any], bearer: dict[str, str], offsets: dict[str, str], lease: float
    ) -> None:
        while True:
            await trio.sleep(lease / 3)
            acks = [{"stream": path, "offset": offset} for path, offset in offsets.items()]
            beat = await self.client.post(f"{self.control}/ack", json={**fence, "acks": acks}, headers=bearer)
            beat.raise_for_status()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="the server's URL, e.g. http://localhost:8000")
    parser.add_argument("subscription", help="the pull-wake subscription's id")
    parser.add_argument("wake_stream", help="its wake_stream")
    parser.add_argument("--worker", default="http-worker", help="this worker's name")
    parser.add_argument("--messages", type=int, default=None, help="stop once so many are acked")
    parser.add_argument("--token", default=None, help="a user token (serve --token)")
    parser.add_argument("--work-seconds", type=float, default=0.0, help="pretend each message takes so long")
    parser.add_argument("--fail-on", default=None, help="fail on a message equal to this JSON (a demo)")
    args = parser.parse_args(argv)
    failing = None if args.fail_on is None else json.loads(args.fail_on)

    async def handle(path: str, message: Any) -> None:
        await trio.sleep(args.work_seconds)
        if failing is not None and message == failing:
            raise RuntimeError(f"cannot handle {message!r}")
        print(f"{path} {json.dumps(message, sort_keys=True)}", flush=True)

    headers = {} if args.token is None else {"Authorization": f"Bearer {args.token}"}
    async with httpx.AsyncClient(base_url=args.server, headers=headers, timeout=30) as client:
        worker = Worker(client, args.subscription, args.wake_stream, args.worker, handle)
        await worker.run(messages=args.messages)


if __name__ == "__main__":
    trio.run(main)
