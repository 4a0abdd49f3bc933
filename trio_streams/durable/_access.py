"""Who a stream name belongs to: the shared namespace, or one per owner.

A stream is identified by :class:`StreamId`, ``(owner, name)``: ``owner``
``None`` is the one shared namespace (no auth, or ``durable_access="shared"``),
any string is that user's namespace (``durable_access="owner"``, the default
with auth on). Two ids are the same stream only if both parts are equal:
bob's ``chat/1`` is not alice's, and neither is the shared ``chat/1``. A
request only ever reaches the namespace of its caller, so another owner's
streams are not "forbidden" but absent: the same 404, 201 and timings as a
name nobody has.

Pure: no I/O. The stores key their streams by :class:`StreamId` (Redis
encodes it injectively into key names: :mod:`.redis._layout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: ``"owner"``: every caller has a namespace of their own; ``"shared"``: one for all.
DurableAccess = Literal["owner", "shared"]
ACCESS_MODES: Final = ("owner", "shared")


@dataclass(frozen=True, slots=True)
class StreamId:
    """A stream's identity: its owner's namespace (``None``: the shared one) and its name."""

    owner: str | None
    name: str

    def sibling(self, name: str) -> StreamId:
        """The stream called ``name`` in the same namespace (a fork's source)."""
        return StreamId(self.owner, name)


def resolve_access(value: object, *, auth: bool) -> DurableAccess:
    """The Durable Streams access mode for ``value`` (``None``: the default).

    The default is ``"owner"`` with auth on and ``"shared"`` without (then
    every caller is anonymous, so there is one namespace whatever the mode).

    Raises:
        ValueError: not ``"owner"``, ``"shared"`` or ``None``; or ``"owner"``
            without auth (there would be no owner to give a stream to).
    """
    if value is None:
        return "owner" if auth else "shared"
    if value not in ACCESS_MODES:
        raise ValueError(f"durable_access must be 'owner' or 'shared', not {value!r}")
    if value == "owner" and not auth:
        raise ValueError("durable_access='owner' needs auth (tokens): without them every caller is anonymous")
    return value
