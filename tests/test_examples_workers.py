"""examples/http_pull_wake_worker.py and examples/webhook_receiver.py against a real
``trio-streams serve --subscriptions`` (a subprocess), each example a subprocess too.

Real sockets and the real clock, every test under a trio deadline; waits are
for conditions (a process's output, its exit), never for a time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from trio_streams.durable._webhook_signing import WebhookSigner

from .test_serve_cli import serve_process as serve_process

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60
JSON = {"Content-Type": "application/json"}
RECEIVER_ARGS = ("--port", "0", "--messages", "3")


async def run_example(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def put_orders(client: httpx.AsyncClient) -> None:
    await client.put("/v1/stream/orders/a", json=[{"order": 1}], headers=JSON)
    await client.put("/v1/stream/orders/b", json=[{"order": 2}], headers=JSON)
    await client.post("/v1/stream/orders/a", json=[{"order": 3}], headers=JSON)


async def all_acked(client: httpx.AsyncClient, subscription: str) -> dict[str, Any]:
    """Each member's acked offset, which must be its stream's tail."""
    described = (await client.get(f"/v1/stream/__ds/subscriptions/{subscription}")).json()
    acked = {link["path"]: link["acked_offset"] for link in described["streams"]}
    for path, offset in acked.items():
        tail = (await client.head(f"/v1/stream/{path}")).headers["Stream-Next-Offset"]
        assert offset == tail, f"{path}: acked {offset}, tail {tail}"
    return acked


async def test_the_http_pull_wake_worker_releases_on_error_then_heartbeats_and_acks(serve_process) -> None:
    with trio.fail_after(DEADLINE):
        server = await serve_process("--subscriptions")
        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.put("/v1/stream/wake/pool", headers=JSON)
            sub = {
                "type": "pull-wake",
                "pattern": "orders/*",
                "wake_stream": "wake/pool",
                "lease_ttl_ms": 3000,
            }
            assert (await client.put("/v1/stream/__ds/subscriptions/orders", json=sub)).status_code == 201
            await put_orders(client)
            args = (server.url, "orders", "wake/pool")
            # A worker that cannot handle the first message gives the wake back, then fails.
            failed = await run_example("http_pull_wake_worker.py", *args, "--fail-on", '{"order": 1}')
            assert failed.returncode != 0
            assert failed.stdout == b""
            assert b"released " in failed.stderr, failed.stderr.decode()
            assert b": 204" in failed.stderr, failed.stderr.decode()
            # The next one takes longer than the lease (3 x 1.2 s > 3 s): only its
            # heartbeats keep the claim until its ack.
            worked = await run_example(
                "http_pull_wake_worker.py", *args, "--messages", "3", "--work-seconds", "1.2"
            )
            assert worked.returncode == 0, worked.stderr.decode()[-3000:]
            assert sorted(worked.stdout.decode().splitlines()) == [
                'orders/a {"order": 1}',
                'orders/a {"order": 3}',
                'orders/b {"order": 2}',
            ]
            assert set(await all_acked(client, "orders")) == {"orders/a", "orders/b"}


async def test_the_webhook_receiver_verifies_signatures_and_acks_by_callback(serve_process) -> None:
    with trio.fail_after(DEADLINE):
        server = await serve_process("--subscriptions", "--webhook-allow-loopback")
        receiver = await trio.lowlevel.open_process(
            [sys.executable, str(ROOT / "examples" / "webhook_receiver.py"), server.url, *RECEIVER_ARGS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert receiver.stdout is not None
            assert receiver.stderr is not None
            buffer = b""
            while b"listening on " not in buffer or not buffer.endswith(b"\n"):
                chunk = await receiver.stdout.receive_some()
                assert chunk, "the receiver exited before it listened"
                buffer += chunk
            hook = buffer.decode().split("listening on ", 1)[1].split()[0] + "/hook"
            async with httpx.AsyncClient(base_url=server.url) as client:
                # Forged, replayed and unsigned deliveries are refused, never handled.
                kid = (await client.get("/v1/stream/__ds/jwks.json")).json()["keys"][0]["kid"]
                body = b'{"streams": []}'
                forged = WebhookSigner().signature_header(body)
                stamp, their_kid, _ = forged.split(",")
                bad_signature = forged.replace(their_kid, f"kid={kid}")
                replayed = bad_signature.replace(stamp, f"t={int(time.time()) - 301}")
                refused = [
                    await client.post(hook, content=body, headers={"Webhook-Signature": forged}),
                    await client.post(hook, content=body, headers={"Webhook-Signature": bad_signature}),
                    await client.post(hook, content=body, headers={"Webhook-Signature": replayed}),
                    await client.post(hook, content=body),
                ]
                assert [answer.status_code for answer in refused] == [401] * 4
                sub = {
                    "type": "webhook",
                    "pattern": "orders/*",
                    "webhook": {"url": hook},
                    "lease_ttl_ms": 10000,
                }
                created = await client.put("/v1/stream/__ds/subscriptions/hooks", json=sub)
                assert created.status_code == 201, created.text
                assert created.json()["webhook"]["signing"]["kid"] == kid
                await put_orders(client)
                stdout = buffer.split(b"\n", 1)[1]
                async with receiver.stdout:
                    async for chunk in receiver.stdout:
                        stdout += chunk
                assert await receiver.wait() == 0
                stderr = b""
                async with receiver.stderr:
                    async for chunk in receiver.stderr:
                        stderr += chunk
                lines = sorted(stdout.decode().splitlines())
                assert lines == ['orders/a {"order": 1}', 'orders/a {"order": 3}', 'orders/b {"order": 2}']
                assert f"signed by {kid}".encode() in stderr
                assert stderr.count(b"refused: ") == 4, stderr.decode()
                assert b"does not verify" in stderr
                assert b"away from now" in stderr
                assert set(await all_acked(client, "hooks")) == {"orders/a", "orders/b"}
        finally:
            if receiver.returncode is None:
                receiver.kill()
                await receiver.wait()
