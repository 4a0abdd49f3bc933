"""Trusted proxy headers for ``serve --forwarded-allow-ips``: ``X-Forwarded-For`` and
``X-Forwarded-Proto``, believed only from the proxies named.

Why not Hypercorn's ``ProxyFixMiddleware``: it trusts a number of hops from
whoever connects, so any client that reaches the server directly could say
which address and scheme it has. Here the headers count only when the peer
is one of the trusted addresses (as uvicorn's ``--forwarded-allow-ips``).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

_SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}


def parse_trusted(text: str) -> frozenset[str] | None:
    """``"127.0.0.1, 10.0.0.2"`` as a set of addresses; ``"*"`` as ``None`` (every peer).

    Raises:
        ValueError: an entry that is not an IP address.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if entries == ["*"]:
        return None
    for entry in entries:
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"not an IP address: {entry!r} (give addresses separated by commas, or *)"
            ) from None
    if not entries:
        raise ValueError("give the proxies' addresses separated by commas, or *")
    return frozenset(str(ipaddress.ip_address(entry)) for entry in entries)


class ForwardedHeaders:
    """ASGI middleware: from a trusted peer, the client address and scheme its
    ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers give.

    ``X-Forwarded-For`` is read from the right (the nearest proxy appends):
    the first address that is not itself a trusted proxy is the client.
    ``X-Forwarded-Proto``: its last value, ``http`` or ``https`` (``ws``/``wss``
    for a WebSocket). Anything else leaves the scope as it is.
    """

    def __init__(self, app: ASGIFramework, trusted: frozenset[str] | None) -> None:
        """Args: app: the ASGI application; trusted: proxy addresses (``None``: every peer)."""
        self.app = app
        self.trusted = trusted

    def _trusts(self, host: str) -> bool:
        return self.trusted is None or host in self.trusted

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Call the app, with ``client`` and ``scheme`` rewritten for a trusted peer."""
        client: Any = scope.get("client") if scope["type"] in _SCHEMES else None
        if client is not None and self._trusts(client[0]):
            # In place (as uvicorn does): Hypercorn's access log then shows the client, not the proxy.
            self._rewrite(cast("dict[str, Any]", scope))
        await self.app(scope, receive, send)

    def _rewrite(self, scope: dict[str, Any]) -> None:
        headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
        proto = headers.get(b"x-forwarded-proto")
        if proto:
            plain, secure = _SCHEMES[scope["type"]]
            value = proto.split(",")[-1].strip().lower()
            if value in ("http", "ws"):
                scope["scheme"] = plain
            elif value in ("https", "wss"):
                scope["scheme"] = secure
        forwarded_for = headers.get(b"x-forwarded-for")
        hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
        if hops:
            untrusted = [hop for hop in reversed(hops) if not self._trusts(hop)]
            scope["client"] = (untrusted[0] if untrusted else hops[0], 0)
