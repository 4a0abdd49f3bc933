"""Bearer-token authentication: tokens map to users; users own runs.

Where tokens come from (``--token``, a token file) is parsed in ``_token_sources``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from ._errors import ApiError
from ._token_sources import collect_tokens, read_token_file

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenAuth:
    """Maps ``Authorization: Bearer <secret>`` to a user name.

    Secrets are held only as SHA-256 digests and compared in constant time,
    so neither a log line nor a timing difference reveals them.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """Args: tokens: ``{secret: user}``. Raises ValueError on an empty secret or user."""
        self._users: dict[bytes, str] = {}
        for secret, user in tokens.items():
            if not secret or not user:
                raise ValueError("a token needs a non-empty user and secret")
            self._users[_digest(secret)] = user

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> TokenAuth:
        """Parse ``USER:SECRET`` strings (the CLI's ``--token``).

        A user may have several secrets (rotation); a secret has one user.

        Raises:
            TokenSourceError: (a ValueError) a malformed spec, or one secret
                given to two users; the message never contains a secret.
        """
        return cls(collect_tokens(specs))

    @classmethod
    def from_file(cls, path: Path) -> TokenAuth:
        """Read ``USER:SECRET`` lines; blank lines and ``#`` comments are skipped.

        Raises:
            OSError: the file cannot be read.
            TokenSourceError: (a ValueError) a malformed line (its number is
                in the message), a secret given to two users, or no token.
        """
        return cls(collect_tokens((), (str(path), read_token_file(path))))

    def __len__(self) -> int:
        return len(self._users)

    @property
    def users(self) -> frozenset[str]:
        """Every user a token maps to."""
        return frozenset(self._users.values())

    def user_for(self, authorization: str | None) -> str:
        """The user an ``Authorization`` header value belongs to.

        Raises:
            ApiError: 401 when the header is missing, malformed or unknown.
        """
        if not authorization:
            raise _unauthorized("missing bearer token")
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        wanted = _digest(secret.strip())
        for digest, user in self._users.items():
            if hmac.compare_digest(digest, wanted):
                return user
        raise _unauthorized("unknown bearer token")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="trio-streams"'})
