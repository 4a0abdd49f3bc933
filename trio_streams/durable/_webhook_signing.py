"""The webhook signing key: Ed25519, its ``kid``, the JWK Set, and ``Webhook-Signature``.

A :class:`WebhookSigner` holds one private key (generated, or loaded from a
PEM file so that every instance of a server signs with the same key) and
the public keys it publishes: its own, plus any previous ones still inside
the receivers' replay window (key rotation: start with the new key and pass
the old public keys as ``previous``, for at least 5 minutes).

``kid`` is ``ds_`` + the key's RFC 7638 JWK thumbprint (sha256 over the
canonical ``{crv, kty, x}``), so it is stable for the key and derived from it.
The signature header is ``t=<unix seconds>,kid=<kid>,ed25519=<sig>`` where
``sig`` is the unpadded base64url Ed25519 signature of ``<t>.<raw body>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The OKP/Ed25519 JWK of ``key``, with its ``kid``."""
    x = b64url(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    kid = "ds_" + b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA", "x": x}


class WebhookSigner:
    """Signs webhook bodies with one Ed25519 key and publishes the JWK Set.

    Args:
        key: the private key (a fresh one if omitted).
        previous: public keys of earlier signing keys, still published.
        wall_clock: POSIX seconds, for the ``t`` parameter.
    """

    def __init__(
        self,
        key: Ed25519PrivateKey | None = None,
        *,
        previous: Iterable[Ed25519PublicKey] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = Ed25519PrivateKey.generate() if key is None else key
        self._jwk = public_jwk(self._key.public_key())
        self._previous = [public_jwk(old) for old in previous]
        self._wall_clock = wall_clock

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> WebhookSigner:
        """The key in ``path`` (PKCS#8 PEM, unencrypted); generated and written
        there (mode 0600) first if the file does not exist."""
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # O_EXCL: two instances starting together keep the first one's key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pem = path.read_bytes()
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(pem)
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(loaded, **options)

    @property
    def kid(self) -> str:
        return self._jwk["kid"]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set: the active key first, then the previous ones."""
        return {"keys": [dict(self._jwk), *(dict(old) for old in self._previous)]}

    def signing_metadata(self, jwks_url: str) -> dict[str, str]:
        """What subscription responses carry under ``webhook.signing`` (never a secret)."""
        return {"alg": "ed25519", "kid": self.kid, "jwks_url": jwks_url}

    def signature_header(self, body: bytes) -> str:
        """``Webhook-Signature`` for ``body``, signed now."""
        timestamp = str(int(self._wall_clock()))
        signature = self._key.sign(timestamp.encode() + b"." + body)
        return f"t={timestamp},kid={self.kid},ed25519={b64url(signature)}"
