"""The layout version of a Redis prefix: instances of different layouts never run side by side.

Theory of operation
-------------------
Key names change between releases (layout 2 made run keys per owner and
encodes owners and keys injectively). An instance of one layout beside one of
another on the same prefix would disagree about which key holds what -- two
live runs for one key -- so every instance checks, when it starts, the
prefix's ``{prefix}layout`` key:

- holding :data:`LAYOUT_VERSION`: go on;
- holding another version: refuse to start (:class:`LayoutMismatch`);
- absent, and the prefix holds data of layout 1 (releases before the version
  key existed wrote ``{prefix}runs``, ``{prefix}running``, ``{prefix}control``
  or Durable Streams' ``{prefix}ds:notify`` / ``{prefix}ds:incarnation``):
  refuse to start -- an idle old instance leaves no trace, so only the
  operator can say that none runs any more (and then adopts the prefix by
  setting the key: docs/redis.md, "Upgrades");
- absent on an empty prefix: set it (``SET NX``, so concurrent first starts
  agree) and go on.

The key never expires. The run store and the Durable Streams Redis store call
the same :func:`check_layout` (they share the prefix when served together).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from coredis.tokens import PureToken

from ..._errors import StreamError

if TYPE_CHECKING:
    import coredis

    from ._client import Client

#: The layout this code reads and writes.
LAYOUT_VERSION: Final = 2

#: Keys only a layout-1 instance (a release before the version key) leaves behind.
_LAYOUT_1_KEYS: Final = ("runs", "running", "control", "ds:notify", "ds:incarnation")


class LayoutMismatch(StreamError):
    """The Redis prefix holds data of another layout version than this code's.

    Attributes:
        found: the prefix's layout version (1 for data written before versions existed).
        expected: :data:`LAYOUT_VERSION`.
    """

    def __init__(self, prefix: str, found: int | str) -> None:
        super().__init__(
            f"redis prefix {prefix!r} holds data of layout {found}; this trio-streams uses layout "
            f"{LAYOUT_VERSION}, and instances of two layouts on one prefix would disagree about keys. "
            f"Stop every instance of the other version, then start on a new prefix, or adopt this "
            f"one (see docs/redis.md, 'Upgrades')"
        )
        self.found = found
        self.expected = LAYOUT_VERSION


def _text(value: str | bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def check_layout(client: Client | coredis.Redis[bytes], prefix: str) -> None:
    """Refuse to run on a prefix of another layout; claim an empty one for ours.

    Args:
        client: an entered coredis client (single Redis or Cluster; replies
            decoded or not: the Durable Streams store reads bytes).
        prefix: the key prefix (``RedisStore(prefix=...)``).

    Raises:
        LayoutMismatch: the prefix holds another layout's data.
        Exception: whatever the client raises when Redis is unreachable.
    """
    key = f"{prefix}layout"
    found = _text(await client.get(key))
    if found is None:
        # One key per command: on a Cluster these live in different slots.
        for name in _LAYOUT_1_KEYS:
            if await client.exists([f"{prefix}{name}"]):
                raise LayoutMismatch(prefix, 1)
        await client.set(key, str(LAYOUT_VERSION), condition=PureToken.NX)
        found = _text(await client.get(key))
    if found != str(LAYOUT_VERSION):
        raise LayoutMismatch(prefix, found if found is not None else "unknown")


__all__ = ["LAYOUT_VERSION", "LayoutMismatch", "check_layout"]
