"""The webhook signing key shared through Redis: one key for every instance and restart.

Real redis-server, real HTTP servers (Hypercorn), real clock, a trio
deadline. The key is made once (``SET NX``) by the first instance; a key
given explicitly (a key file) wins and is never written to Redis.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trio_streams.cli._plan import ServeConfigError, _subscription_options
from trio_streams.durable import DurableStreamStore
from trio_streams.durable._webhook_key import share_signing_key
from trio_streams.durable._webhook_signing import WebhookSigner, public_jwk
from trio_streams.log.redis import RedisStore

from .server_support import running_server

if TYPE_CHECKING:
    from pathlib import Path

DEADLINE = 30


async def published_kids(url: str, prefix: str, **subscriptions: Any) -> list[str]:
    """The kids in the JWK Set of a server started on ``url``/``prefix`` (and stopped)."""
    options: Any = subscriptions or True
    async with (
        running_server(store=RedisStore(url, prefix=prefix), durable_subscriptions=options) as server,  # type: ignore[arg-type]
        httpx.AsyncClient() as client,
    ):
        jwks = await client.get(f"{server.url}/v1/stream/__ds/jwks.json")
        assert jwks.status_code == 200
        return [key["kid"] for key in jwks.json()["keys"]]


@pytest.mark.redis
async def test_instances_and_restarts_share_the_key_in_redis(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix), durable_subscriptions=True) as one,  # type: ignore[arg-type]
            running_server(store=RedisStore(redis_url, prefix=prefix), durable_subscriptions=True) as two,  # type: ignore[arg-type]
            httpx.AsyncClient() as client,
        ):
            kids = [
                (await client.get(f"{server.url}/v1/stream/__ds/jwks.json")).json()["keys"][0]["kid"]
                for server in (one, two)
            ]
            assert kids[0] == kids[1], "two instances on one Redis sign with one key"
        assert await published_kids(redis_url, prefix) == kids[:1], "a restarted instance too"
        other = await published_kids(redis_url, prefix + "other:")
        assert other != kids[:1], "another prefix, another key"


@pytest.mark.redis
async def test_a_key_file_wins_over_the_key_in_redis(redis_url: str, prefix: str, tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        shared = await published_kids(redis_url, prefix)
        from_file = WebhookSigner.from_file(tmp_path / "key.pem")
        assert await published_kids(redis_url, prefix, signer=from_file) == [from_file.kid] != shared
        assert await published_kids(redis_url, prefix) == shared, "the file's key was not written to Redis"


async def test_a_store_without_shared_values_keeps_the_generated_key() -> None:
    signer = WebhookSigner()
    kid = signer.kid
    await share_signing_key(signer, DurableStreamStore())
    assert (signer.kid, signer.generated) == (kid, True)


def test_previous_key_files_are_published(tmp_path: Path) -> None:
    old = WebhookSigner()
    (tmp_path / "old.pem").write_bytes(old.private_pem())
    public = Ed25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "older.pub").write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    args = argparse.Namespace(
        webhook_allow_loopback=False,
        webhook_key_file=None,
        webhook_previous_key_file=[str(tmp_path / "old.pem"), str(tmp_path / "older.pub")],
    )
    signer = _subscription_options(args)["signer"]
    assert signer.generated, "no key file: still replaced by the key in Redis"
    kids = [key["kid"] for key in signer.jwks()["keys"]]
    assert kids == [signer.kid, old.kid, public_jwk(public)["kid"]]
    args.webhook_key_file = str(tmp_path / "new.pem")
    with_file = _subscription_options(args)["signer"]
    assert not with_file.generated
    assert [key["kid"] for key in with_file.jwks()["keys"]][1:] == kids[1:]
    (tmp_path / "bad.pem").write_bytes(b"not a key")
    args.webhook_previous_key_file = [str(tmp_path / "bad.pem")]
    with pytest.raises(ServeConfigError, match="previous-key-file"):
        _subscription_options(args)
