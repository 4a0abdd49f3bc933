"""The reserved ``__ds/`` control API: subscriptions and the webhook JWK Set (framework-free).

Names under ``__ds/`` (protocol section 6):

- ``GET __ds/jwks.json``: the webhook signing keys;
- ``PUT | GET | DELETE __ds/subscriptions/{id}``;
- ``POST __ds/subscriptions/{id}/streams``, ``DELETE .../streams/{path}``;
- ``POST __ds/subscriptions/{id}/claim | ack | release | callback``.

``callback``, ``ack`` and ``release`` are authorized by the wake's own
Bearer token (the server's auth is not asked: a webhook receiver holds no
user token), and ``jwks.json`` (public keys) by nothing; everything else
goes through the service's ``authorize`` and, with ``access="owner"``, is
in the caller's namespace. The rules are the
registry's (:class:`~trio_streams.durable._subscriptions.SubscriptionRegistry`);
this module parses, routes and renders JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from ..durable._errors import DurableStreamError
from ..durable._sub_config import check_id, check_path, check_paths, invalid, parse_config
from ..durable._sub_state import ClaimedError
from ._body import read_body
from ._ds_http import protocol_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..durable._sub_state import Subscription, Wake
    from ..durable._subscriptions import SubscriptionRegistry
    from ._messages import Request, Response


class _Limits(Protocol):
    """What the control API needs of the service: the body limit and the registry."""

    @property
    def max_body(self) -> int: ...
    @property
    def subscriptions(self) -> SubscriptionRegistry | None: ...


_TOKEN_ACTIONS = frozenset({"callback", "ack", "release"})
#: The largest control document read (413 beyond): a subscription of 1,000 stream
#: paths of 1 KiB each fits; a stream append's much larger limit is not for these.
MAX_CONTROL_BODY = 2 * 1024 * 1024


def _json(status: int, document: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return protocol_response(status, headers, body=body, content_type="application/json")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


async def _document(request: Request, service: _Limits) -> dict[str, Any]:
    body = await read_body(request, min(service.max_body, MAX_CONTROL_BODY), DurableStreamError)
    try:
        document = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        # (RecursionError: nesting deeper than the parser's recursion limit.)
        raise invalid("the body must be JSON") from None
    if not isinstance(document, dict):
        raise invalid("the body must be a JSON object")
    return document


async def handle_control(
    request: Request, service: _Limits, name: str, owner_of: Callable[[], str | None]
) -> Response:
    """Answer a request for ``name`` (under ``__ds/``).

    ``owner_of()`` authorizes the request and returns its namespace; it is
    not called for the token-authorized actions.

    Raises:
        DurableStreamError: 400, 404, 405, 409 as the protocol says.
    """
    registry = service.subscriptions
    assert registry is not None
    mount = request.host_url.rstrip("/") + request.path[: len(request.path) - len(name)]
    parts = name.split("/")
    method = request.method
    if parts[1:] == ["jwks.json"]:
        # Public keys, for webhook receivers (who hold no user token): never authorized.
        _allow(method, "GET", "HEAD")
        if registry.signer is None:
            raise DurableStreamError(404, "not_found", "webhooks are not enabled on this server")
        body = b"" if method == "HEAD" else json.dumps(registry.signer.jwks()).encode()
        return protocol_response(
            200, {"Cache-Control": "public, max-age=300"}, body=body, content_type="application/jwk-set+json"
        )
    if len(parts) < 3 or parts[1] != "subscriptions":
        raise DurableStreamError(404, "not_found", f"no control API at {name!r}")
    subscription_id = check_id(parts[2])
    rest = parts[3:]
    if len(rest) == 1 and rest[0] in _TOKEN_ACTIONS:
        _allow(method, "POST")
        return await _token_action(request, service, registry, subscription_id, rest[0])
    owner = owner_of()
    if not rest:
        return await _subscription(request, service, registry, owner, subscription_id, mount)
    if rest == ["claim"]:
        _allow(method, "POST")
        worker = (await _document(request, service)).get("worker")
        if not isinstance(worker, str) or not worker or len(worker) > 256:
            raise invalid("claim needs a worker name")
        try:
            subscription, wake = await registry.claim(owner, subscription_id, worker)
        except ClaimedError as exc:
            error = {"code": exc.code, "message": exc.message, "current_holder": exc.holder}
            return _json(409, {"error": {**error, "generation": exc.generation}})
        return _json(200, _claimed(subscription, wake))
    if rest == ["streams"]:
        _allow(method, "POST")
        paths = check_paths((await _document(request, service)).get("streams"))
        await registry.add_streams(owner, subscription_id, paths)
        return protocol_response(204)
    if rest[0] == "streams" and len(rest) > 1:
        _allow(method, "DELETE")
        await registry.remove_stream(
            owner, subscription_id, check_path("/".join(rest[1:]), "the stream path")
        )
        return protocol_response(204)
    raise DurableStreamError(404, "not_found", f"no control API at {name!r}")


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise DurableStreamError(
            405, "method_not_allowed", f"{method} is not allowed here", headers={"Allow": ", ".join(allowed)}
        )


async def _subscription(
    request: Request,
    service: _Limits,
    registry: SubscriptionRegistry,
    owner: str | None,
    subscription_id: str,
    mount: str,
) -> Response:
    method = request.method
    if method == "PUT":
        config = parse_config(await _document(request, service))
        callback_url = f"{mount}__ds/subscriptions/{subscription_id}/callback"
        subscription, created = await registry.put(owner, subscription_id, config, callback_url)
        return _json(201 if created else 200, describe(registry, subscription, mount))
    if method in ("GET", "HEAD"):
        document = describe(registry, await registry.get(owner, subscription_id), mount)
        response = _json(200, document, {"Cache-Control": "no-store"})
        return response if method == "GET" else protocol_response(200, response.headers)
    if method == "DELETE":
        await registry.delete(owner, subscription_id)
        return protocol_response(204)
    raise DurableStreamError(
        405,
        "method_not_allowed",
        f"{method} is not allowed here",
        headers={"Allow": "PUT, GET, HEAD, DELETE"},
    )


async def _token_action(
    request: Request,
    service: _Limits,
    registry: SubscriptionRegistry,
    subscription_id: str,
    action: str,
) -> Response:
    token = _bearer(request)
    document = await _document(request, service)
    if not isinstance(document.get("done", False), bool):  # (1 == True: `in (True, False)` let 1 and 0 pass)
        raise invalid("done must be a boolean")
    owner = await registry.owner_for_token(subscription_id, token)
    if action == "release":
        await registry.release(owner, subscription_id, token, document)
        return protocol_response(204)
    kind = "webhook" if action == "callback" else "pull-wake"
    next_wake = await registry.ack(owner, subscription_id, token, document, kind=kind)
    return _json(200, {"ok": True, "next_wake": next_wake})


def describe(registry: SubscriptionRegistry, subscription: Subscription, mount: str) -> dict[str, Any]:
    """The subscription as ``GET`` (and ``PUT``) answer it: never a secret."""
    config = subscription.config
    webhook: dict[str, Any] | None = None
    if config.webhook_url is not None:
        webhook = {"url": config.webhook_url}
        if registry.signer is not None:
            webhook["signing"] = registry.signer.signing_metadata(f"{mount}__ds/jwks.json")
    return {
        "id": subscription.id,
        "subscription_id": subscription.id,
        "type": config.type,
        "pattern": config.pattern,
        "streams": subscription.stream_infos(tails=False),
        "webhook": webhook,
        "wake_stream": config.wake_stream,
        "lease_ttl_ms": config.lease_ttl_ms,
        "created_at": subscription.created_at,
        "status": subscription.status,
        "description": config.description,
        "generation": subscription.generation,
    }


def _claimed(subscription: Subscription, wake: Wake) -> dict[str, Any]:
    return {
        "wake_id": wake.wake_id,
        "generation": wake.generation,
        "token": wake.token,
        "streams": subscription.stream_infos(tails=True),
        "lease_ttl_ms": subscription.config.lease_ttl_ms,
    }
