"""One webhook POST: trio sockets and h11, to an address checked beforehand.

No HTTP client dependency: h11 (Hypercorn's) frames the request and parses
the response. One request per connection (``Connection: close``). The
connection goes to :attr:`~._webhook_url.WebhookTarget.address`, never to a
fresh DNS answer; for ``https`` the certificate is checked against the URL's
host name (SNI too). Redirects are not followed: a 3xx is just a status.
The response body is read up to ``max_response`` bytes (beyond: an error).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import h11
import trio

if TYPE_CHECKING:
    from ._webhook_url import WebhookTarget

#: The most of a response body read (a receiver answers ``{"done": true}`` or nothing).
MAX_RESPONSE = 64 * 1024
_USER_AGENT = "trio-streams-webhook"


class WebhookDeliveryError(Exception):
    """The POST did not get a complete HTTP response (connection, TLS or framing)."""


async def post_webhook(
    target: WebhookTarget,
    body: bytes,
    headers: dict[str, str],
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_response: int = MAX_RESPONSE,
) -> tuple[int, bytes]:
    """POST ``body`` to ``target``; the response's status and body.

    Raises:
        WebhookDeliveryError: no complete response (refused, reset, bad TLS,
            malformed or too large a response).

    Cancellation: closes the connection and propagates (callers bound the
    whole attempt with a deadline).
    """
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.address, target.port)
    except OSError as exc:
        raise WebhookDeliveryError(f"cannot connect: {exc}") from None
    try:
        if target.scheme == "https":
            context = ssl_context or ssl.create_default_context()
            tls = trio.SSLStream(stream, context, server_hostname=target.host, https_compatible=True)
            await tls.do_handshake()
            stream = tls
        return await _exchange(stream, target, body, headers, max_response)
    except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError) as exc:
        raise WebhookDeliveryError(f"{type(exc).__name__}: {exc}") from None
    finally:
        await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream, target: WebhookTarget, body: bytes, headers: dict[str, str], max_response: int
) -> tuple[int, bytes]:
    connection = h11.Connection(h11.CLIENT)
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if ":" not in target.host else f"[{target.host}]"
    request_headers = [
        ("Host", host if target.port == default_port else f"{host}:{target.port}"),
        ("User-Agent", _USER_AGENT),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *headers.items(),
    ]
    data = connection.send(h11.Request(method="POST", target=target.target, headers=request_headers))
    data += connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage())
    await stream.send_all(data)
    status = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            received = await stream.receive_some(16384)
            connection.receive_data(bytes(received))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_response:
                raise WebhookDeliveryError("the webhook's response is too large")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise WebhookDeliveryError("the connection closed before the response ended")
