"""Redis URLs: credentials and TLS pass through; a refusal is a clear startup error, never a hang.

Real redis-server processes (one with a password and an ACL user) and a real
TLS terminator (``openssl``-made certificate, trio SSL in front of Redis).
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import trio

from trio_streams import RunStatus, open_hub
from trio_streams.log.redis import RedisStore, RedisUnavailable

from .redis_support import SyncRedis, unique_prefix

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.redis  # real redis-server processes


PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[SyncRedis]:
    server = SyncRedis("--requirepass", PASSWORD, "--user", "alice", "on", ">alicepw", "~*", "&*", "+@all")
    try:
        yield server
    finally:
        server.close()


async def one_run(store: RedisStore) -> None:
    async def producer(ctx):
        await ctx.emit("token", "hi")
        return "ok"

    async with open_hub(store) as hub:
        run = await hub.start(producer)
        info = await hub.wait(run.id)
        assert info.status is RunStatus.DONE
        assert [e.data for e in await store.read_events(run.id, 0, 10)] == ["hi", {"result": "ok"}]


@pytest.mark.parametrize(
    "credentials",
    [f":{PASSWORD}@", f"default:{PASSWORD}@", "alice:alicepw@"],
    ids=["password", "default", "acl"],
)
async def test_credentials_in_the_url_pass_through(auth_redis, credentials):
    with trio.fail_after(10):
        await one_run(
            RedisStore(f"redis://{credentials}127.0.0.1:{auth_redis.port}/0", prefix=unique_prefix())
        )


@pytest.mark.parametrize("credentials", ["", ":wrong@", "alice:wrong@", "bob:x@"])
async def test_refused_credentials_are_a_clear_startup_error(auth_redis, credentials):
    url = f"redis://{credentials}127.0.0.1:{auth_redis.port}/0"
    with trio.fail_after(5):
        with pytest.raises(RedisUnavailable) as raised:
            async with open_hub(RedisStore(url, prefix=unique_prefix())):
                pytest.fail("the hub must not open")
    message = str(raised.value)
    assert f"127.0.0.1:{auth_redis.port}" in message
    assert "wrong" not in message  # credentials never appear in errors
    assert "credentials" in message or "NOAUTH" in message or "Authentication" in message


async def test_unreachable_redis_is_a_clear_startup_error():
    with trio.fail_after(5):
        with pytest.raises(RedisUnavailable, match=r"cannot use redis at redis://127\.0\.0\.1:1/0"):
            async with open_hub(RedisStore("redis://127.0.0.1:1/0", connect_timeout=1)):
                pytest.fail("the hub must not open")


def test_serve_with_a_wrong_password_exits_with_one_clear_line(auth_redis):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_streams",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--redis-url",
            f"redis://:wrong@127.0.0.1:{auth_redis.port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trio-streams serve: error: startup failed: redis at redis://***@127.0.0.1")
    assert "refused the credentials" in last
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stdout


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


async def tls_terminator(nursery: trio.Nursery, cert: Path, key: Path, upstream_port: int) -> int:
    """A TLS server on a free port that forwards plaintext to Redis (like stunnel)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def handle(client: trio.SocketStream) -> None:
        tls = trio.SSLStream(client, context, server_side=True)
        try:
            async with (
                tls,
                await trio.open_tcp_stream("127.0.0.1", upstream_port) as redis,
                trio.open_nursery() as pumps,
            ):
                pumps.start_soon(pump, tls, redis)
                await pump(redis, tls)
                pumps.cancel_scope.cancel()
        except (trio.BrokenResourceError, ssl.SSLError):
            pass

    listeners = await nursery.start(trio.serve_tcp, handle, 0)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def test_rediss_url_with_tls_options_passes_through(auth_redis, tmp_path):
    cert, key = make_certificate(tmp_path)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await tls_terminator(nursery, cert, key, auth_redis.port)
            url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
            await one_run(RedisStore(url, prefix=unique_prefix()))
            # Plain redis:// against the TLS port is refused clearly, not hung.
            with pytest.raises(RedisUnavailable):
                async with open_hub(RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", connect_timeout=2)):
                    pytest.fail("the hub must not open")
            nursery.cancel_scope.cancel()
