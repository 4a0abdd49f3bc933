"""The webhook signing key: Ed25519, its ``kid``, the JWK Set, and ``Webhook-Signature``.

A :class:`WebhookSigner` holds one private key (generated, loaded from a
PEM file, or shared through Redis -- :mod:`._webhook_key` -- so that every
instance of a server signs with the same key) and the public keys it
publishes: its own, plus any previous ones still inside the receivers'
replay window (key rotation: start with the new key and pass the old
public keys as ``previous``, for at least 5 minutes; docs/durable.md).

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


def load_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem`` (PKCS#8, unencrypted).

    Raises:
        ValueError: it is not one (``where`` names the source in the message).
    """
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{where} does not hold an Ed25519 private key")
    return loaded


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path``: a public key PEM, or a private key PEM
    (its public half) -- a previous signing key to keep publishing.

    Raises:
        ValueError: the file holds no Ed25519 key.
    """
    pem = path.read_bytes()
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem, str(path)).public_key()
    loaded = serialization.load_pem_public_key(pem)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return loaded


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
        #: True while the key is one this signer made itself (not given, not
        #: adopted): :func:`~._webhook_key.share_signing_key` may replace it then.
        self.generated = key is None
        self._key = Ed25519PrivateKey.generate() if key is None else key
        self._jwk = public_jwk(self._key.public_key())
        self._previous = [public_jwk(old) for old in previous]
        self._wall_clock = wall_clock

    def private_pem(self) -> bytes:
        """The private key as PKCS#8 PEM (unencrypted): what a key file or Redis keeps."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def adopt(self, pem: bytes) -> None:
        """Sign with the key in ``pem`` from now on (the one every instance shares).

        Raises:
            ValueError: ``pem`` is not an Ed25519 private key.
        """
        self._key = load_private_key(pem, "the shared signing key")
        self._jwk = public_jwk(self._key.public_key())
        self.generated = False

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> WebhookSigner:
        """The key in ``path`` (PKCS#8 PEM, unencrypted); generated and written
        there (mode 0600) first if the file does not exist."""
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            pem = cls().private_pem()
            # O_EXCL: two instances starting together keep the first one's key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pem = path.read_bytes()
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(pem)
        return cls(load_private_key(pem, str(path)), **options)

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
