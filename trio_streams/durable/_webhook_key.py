"""One webhook signing key for every instance on a store: kept there, made once.

A server with a Redis store and no key file (``--webhook-key-file``) must
not sign with a key of its own: receivers verify against the JWK Set of
whichever instance they ask, and every restart would change the key. So at
start, once the store is connected and before any request is served, the
key this process generated is offered to the store with "set if absent"
(Redis: ``SET {prefix}ds:signing-key <pem> NX``, docs/durable.md) and the
one the store then holds -- the first instance's -- is adopted. Every
instance and every restart sign with that key, and publish its ``kid``.

A key given explicitly (a key file, or a ``signer`` of one's own) wins: it
is never replaced, and never written to the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._webhook_signing import WebhookSigner

#: The name of the shared key in the store (``{prefix}`` is the store's).
SIGNING_KEY: Final = "ds:signing-key"


async def share_signing_key(signer: WebhookSigner | None, store: object) -> None:
    """Make ``signer`` sign with the key kept in ``store``, storing its own first
    if there is none yet -- when ``store`` keeps values shared by every instance
    (it has ``async set_once(name, value) -> bytes``: store ``value`` unless one
    is there, return the one there; ``RedisDurableStore``) and ``signer``'s key
    is one it generated. Otherwise nothing changes.

    Raises:
        ValueError: the stored value is not an Ed25519 private key (the server
            must not start: it would sign with a key nobody else uses).

    Cancellation: the key is adopted only once the store answered; if
    cancelled before, ``signer`` keeps its own key (and the store may already
    hold it: the next start adopts it).
    """
    set_once = getattr(store, "set_once", None)
    if signer is None or not signer.generated or set_once is None:
        return
    signer.adopt(await set_once(SIGNING_KEY, signer.private_pem()))
