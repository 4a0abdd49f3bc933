"""How :class:`~._store.RedisDurableStore` writes: one :data:`~._layout.COMMIT` call per write.

A write is checks (the versions its decision was made on), commands, and
the notification that a stream changed: inline in the same script on a
single Redis, sent after it on a Cluster (the notify key has a slot of its
own). Plain appends (:func:`~._plan.plain_appends`) are a commit of their
own kind: no check, placed by the script at the tail the stream has, and
the reply says where.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._offsets import Offset
from ._connection import StoreConnection
from ._plan import lifetime, notify_op

if TYPE_CHECKING:
    from .._access import StreamId
    from ._layout import Meta


class Commits(StoreConnection):
    """The commit calls of the Durable Streams Redis store (see the module docstring)."""

    def _lifetime(self, meta: Meta) -> list[list[Any]]:
        return lifetime(self._keys, meta)

    async def _commit(
        self,
        checks: list[Any],
        streams: list[StreamId],
        ops: list[list[Any]],
        payloads: tuple[bytes, ...] | list[bytes] = (),
        *,
        notify: StreamId | None = None,
    ) -> bool:
        """Apply ``ops`` if every check holds on its stream in ``streams`` (all of
        one slot; see :data:`~._layout.COMMIT` for the checks), then
        notify readers that ``notify`` changed (in the same script on a single
        Redis; after it on a Cluster, where the notify key is on another slot)."""
        reply = await self._call({"c": checks}, streams, ops, payloads, notify)
        return bool(int(reply))

    async def _commit_plain(
        self, ident: StreamId, plain: dict[str, Any], payloads: list[bytes], notify: StreamId | None
    ) -> tuple[str, Offset] | None:
        """Place the plain appends ``plain`` (:func:`~._plan.plain_appends`) at
        ``ident``'s tail as it is in Redis, and notify; the version and tail they
        went after (``None``: the stream is not open in the planned incarnation,
        nothing written)."""
        reply = await self._call({"c": [], "a": plain}, [ident], [], payloads, notify)
        if not isinstance(reply, list):
            return None
        version, tail = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
        return version, Offset.parse(tail)

    async def _call(
        self,
        spec: dict[str, Any],
        streams: list[StreamId],
        ops: list[list[Any]],
        payloads: tuple[bytes, ...] | list[bytes],
        notify: StreamId | None,
    ) -> Any:
        """One COMMIT call of ``spec`` (its checks, plain appends) and ``ops``, and
        the notification of ``notify``; the script's reply (falsy: nothing applied)."""
        keys = [self._keys.meta(ident) for ident in streams]
        inline = notify is not None and not self.cluster
        if inline:
            assert notify is not None
            ops = [*ops, notify_op(self._keys, notify, self._notifications.origin)]
        reply = await self._commit_script()(keys=keys, args=[json.dumps({**spec, "o": ops}), *payloads])
        if reply and notify is not None:
            self._notifications.wake(notify)  # this instance's readers need not wait for the notify stream
            if not inline:
                await self._announce(notify)
        return reply
