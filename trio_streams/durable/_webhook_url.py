"""Webhook URL safety (SSRF): which URLs a subscription may name, and where delivery connects.

Rules (protocol section 12.8; docs/subscriptions-design.md):

- ``https`` only; no user info in the URL; a host is required; printable
  ASCII only (no spaces, control characters or raw non-ASCII text).
- The host is resolved once (an IP literal is taken as it is) and *every*
  address it resolves to must be a public unicast address: private (RFC 1918,
  100.64.0.0/10), loopback, link-local (169.254.0.0/16 with the cloud
  metadata address, fe80::/10), unique-local (fc00::/7), multicast,
  reserved, unspecified, and the IPv4-mapped / 6to4 / NAT64 forms of those
  are refused.
- ``allow_loopback_http`` (off by default: a development option) also allows
  plain ``http`` and loopback targets (127.0.0.0/8, ::1, ``localhost``), and
  nothing else that is local.
- Delivery connects to the address checked here (:attr:`WebhookTarget.address`),
  never resolving again, so a DNS answer that changes cannot redirect it.

Refusals are 400 ``WEBHOOK_URL_REJECTED`` (:func:`rejected`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio

from ._errors import DurableStreamError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


def rejected(message: str) -> DurableStreamError:
    return DurableStreamError(400, "WEBHOOK_URL_REJECTED", message)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A checked webhook URL: where to connect and what to send."""

    scheme: str
    host: str
    port: int
    #: Path and query, for the request line.
    target: str
    #: The checked address delivery connects to.
    address: str


def parse_url(url: str, *, allow_loopback_http: bool = False) -> tuple[str, str, int, str]:
    """``(scheme, host, port, target)`` of a URL the rules allow in form (addresses not checked yet).

    Raises:
        DurableStreamError: 400 ``WEBHOOK_URL_REJECTED``.
    """
    if any(not 0x21 <= ord(char) <= 0x7E for char in url):
        # A request line and a Host header carry printable ASCII only: a space,
        # CR/LF (header injection), NUL (getaddrinfo stops at it) or non-ASCII
        # text would fail every delivery, or worse. Percent-encode the path; an
        # internationalized host name is given in its xn-- form.
        raise rejected("a webhook URL may contain printable ASCII only (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise rejected("the webhook URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_loopback_http):
        raise rejected("a webhook URL must use https")
    if parts.username is not None or parts.password is not None:
        raise rejected("a webhook URL may not carry user info")
    host = parts.hostname
    if not host:
        raise rejected("a webhook URL needs a host")
    if scheme == "http" and not _is_loopback_name(host):
        raise rejected("plain http is allowed only to loopback (a development option)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), target


def _is_loopback_name(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    address = _literal(host)
    return address is not None and _unmapped(address).is_loopback


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address (else itself)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_allowed(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    """True when delivery may connect to ``address`` (a public unicast one, or loopback if allowed)."""
    inner = _unmapped(address)
    if inner.is_loopback:
        return allow_loopback
    if isinstance(inner, ipaddress.IPv4Address) and inner in _SHARED:
        return False
    return not (
        inner.is_private
        or inner.is_link_local
        or inner.is_multicast
        or inner.is_reserved
        or inner.is_unspecified
        or (isinstance(inner, ipaddress.IPv6Address) and inner.is_site_local)
        or not inner.is_global
    )


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_webhook_url(
    url: str,
    *,
    allow_loopback_http: bool = False,
    resolve: Callable[[str, int], Awaitable[Sequence[str]]] = _getaddrinfo,
) -> WebhookTarget:
    """Check ``url`` and resolve its host once (see the module docstring).

    Raises:
        DurableStreamError: 400 ``WEBHOOK_URL_REJECTED`` (bad form, a host that
            does not resolve, or any address that is not allowed).

    Cancellation: cancels the DNS lookup.
    """
    scheme, host, port, target = parse_url(url, allow_loopback_http=allow_loopback_http)
    literal = _literal(host)
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    elif host.lower() == "localhost" and allow_loopback_http:
        addresses = ["127.0.0.1"]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError):
            # (UnicodeError: a name idna cannot encode, e.g. a label over 63 characters.)
            raise rejected("the webhook host does not resolve") from None
    if not addresses:
        raise rejected("the webhook host does not resolve")
    for text in addresses:
        # (getaddrinfo may add a %scope to a link-local IPv6 address.)
        address = _literal(text.split("%", 1)[0])
        if address is None or not address_allowed(address, allow_loopback=allow_loopback_http):
            raise rejected("the webhook host is a private, loopback or link-local address")
    return WebhookTarget(scheme, host, port, target, addresses[0])
