"""The webhook signing key: kid from the key, the JWK Set, signatures an independent verifier accepts."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trio_streams.durable._webhook_signing import WebhookSigner

if TYPE_CHECKING:
    from pathlib import Path


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_signature_verifies_with_the_published_key_only_over_the_exact_body() -> None:
    signer = WebhookSigner(wall_clock=lambda: 1_700_000_123.9)
    body = b'{"subscription_id":"s"}'
    header = signer.signature_header(body)
    t, kid, sig = (part.split("=", 1)[1] for part in header.split(","))
    assert (t, kid, "=" in sig) == ("1700000123", signer.kid, False)
    [jwk] = signer.jwks()["keys"]
    assert {k: jwk[k] for k in ("kty", "crv", "use", "alg", "kid")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "use": "sig",
        "alg": "EdDSA",
        "kid": signer.kid,
    }
    assert "d" not in jwk  # never the private part
    key = Ed25519PublicKey.from_public_bytes(unb64(jwk["x"]))
    key.verify(unb64(sig), f"{t}.".encode() + body)
    with pytest.raises(InvalidSignature):
        key.verify(unb64(sig), f"{t}.".encode() + body + b" ")
    with pytest.raises(InvalidSignature):
        key.verify(unb64(sig), f"{int(t) + 1}.".encode() + body)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    signer = WebhookSigner()
    [jwk] = signer.jwks()["keys"]
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}, separators=(",", ":"))
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert signer.kid == "ds_" + expected
    assert WebhookSigner().kid != signer.kid


def test_the_key_file_is_made_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "webhook.pem"
    first = WebhookSigner.from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert WebhookSigner.from_file(path).kid == first.kid


def test_rotation_publishes_the_previous_keys() -> None:
    old = Ed25519PrivateKey.generate()
    signer = WebhookSigner(previous=[old.public_key()])
    kids = [key["kid"] for key in signer.jwks()["keys"]]
    assert kids == [signer.kid, WebhookSigner(old).kid]
