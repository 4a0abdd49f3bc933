"""The OpenAPI paths and schemas of the subscriptions' control API (``<prefix>/stream/__ds/...``).

Written by hand from :mod:`trio_streams.protocol._ds_subscriptions` (routing,
statuses) and :mod:`trio_streams.durable._sub_config` (the document's
rules and limits): described only when the server serves subscriptions
(``serve --subscriptions``); without them every ``__ds/`` name is a 501,
as the stream paths say. Errors are the protocol's ``{"error": {code,
message}}`` with the subscription codes (``INVALID_REQUEST``,
``SUBSCRIPTION_NOT_FOUND``, ``SUBSCRIPTION_ALREADY_EXISTS``,
``WEBHOOK_URL_REJECTED``, ``ALREADY_CLAIMED``, ``NO_PENDING_WORK``,
``FENCED``).
"""

from __future__ import annotations

from typing import Any

from ..durable._sub_config import (
    MAX_DESCRIPTION,
    MAX_ID_LENGTH,
    MAX_LEASE_MS,
    MAX_PATH_LENGTH,
    MAX_STREAMS,
    MAX_URL_LENGTH,
    MIN_LEASE_MS,
)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_PATH = {"type": "string", "minLength": 1, "maxLength": MAX_PATH_LENGTH}
_OFFSET = {"type": "string", "description": "A stream offset (as `Stream-Next-Offset` gives it)."}
_NULLABLE_STRING = {"type": ["string", "null"]}
_STREAMS = {"type": "array", "maxItems": MAX_STREAMS, "items": _PATH}


def subscription_schemas() -> dict[str, Any]:
    """The component schemas the control API's paths refer to."""
    link = {
        "type": "object",
        "required": ["path", "link_type", "acked_offset"],
        "properties": {
            "path": _PATH,
            "link_type": {"enum": ["explicit", "glob"], "description": "`explicit` wins when both hold."},
            "acked_offset": _OFFSET,
            "tail_offset": {**_OFFSET, "description": "The stream's tail in this wake's snapshot."},
            "has_pending": {"type": "boolean", "description": "`tail_offset` is past `acked_offset`."},
        },
    }
    ack = {
        "type": "object",
        "required": ["stream", "offset"],
        "properties": {"stream": _PATH, "offset": _OFFSET},
    }
    return {
        "SubscriptionRequest": {
            "type": "object",
            "description": (
                "`webhook` needs `webhook.url`; `pull-wake` needs `wake_stream`; either needs a "
                "`pattern` or `streams` (400 `INVALID_REQUEST` otherwise)."
            ),
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["webhook", "pull-wake"]},
                "pattern": {
                    **_PATH,
                    "description": "A glob of stream paths: `*` one segment, `**` any number.",
                },
                "streams": _STREAMS,
                "webhook": {
                    "type": "object",
                    "required": ["url"],
                    "additionalProperties": False,
                    "properties": {
                        "url": {
                            "type": "string",
                            "maxLength": MAX_URL_LENGTH,
                            "description": "`https`, to public addresses only (docs/durable.md).",
                        }
                    },
                },
                "wake_stream": {**_PATH, "description": "The stream wake events are appended to."},
                "lease_ttl_ms": {"type": "integer", "minimum": MIN_LEASE_MS, "maximum": MAX_LEASE_MS},
                "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            },
        },
        "Subscription": {
            "type": "object",
            "required": ["id", "subscription_id", "type", "streams", "lease_ttl_ms", "created_at", "status"],
            "properties": {
                "id": {"type": "string"},
                "subscription_id": {"type": "string"},
                "type": {"enum": ["webhook", "pull-wake"]},
                "pattern": _NULLABLE_STRING,
                "streams": {"type": "array", "items": _ref("StreamLink")},
                "webhook": {
                    "type": ["object", "null"],
                    "description": "The URL and how deliveries are signed (never a secret).",
                    "properties": {
                        "url": {"type": "string"},
                        "signing": {
                            "type": "object",
                            "required": ["alg", "kid", "jwks_url"],
                            "properties": {
                                "alg": {"const": "ed25519"},
                                "kid": {"type": "string"},
                                "jwks_url": {"type": "string"},
                            },
                        },
                    },
                },
                "wake_stream": _NULLABLE_STRING,
                "lease_ttl_ms": {"type": "integer"},
                "created_at": {"type": "string"},
                "status": {"enum": ["active", "failed"]},
                "description": _NULLABLE_STRING,
                "generation": {"type": "integer", "minimum": 0},
            },
        },
        "StreamLink": link,
        "Claim": {
            "type": "object",
            "required": ["worker"],
            "properties": {"worker": {"type": "string", "minLength": 1, "maxLength": 256}},
        },
        "Wake": {
            "type": "object",
            "required": ["wake_id", "generation", "token", "streams", "lease_ttl_ms"],
            "properties": {
                "wake_id": {"type": "string"},
                "generation": {"type": "integer", "minimum": 1},
                "token": {"type": "string", "description": "The Bearer token of ack and release."},
                "streams": {"type": "array", "items": link},
                "lease_ttl_ms": {"type": "integer"},
            },
        },
        "ClaimConflict": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"enum": ["ALREADY_CLAIMED", "NO_PENDING_WORK"]},
                        "message": {"type": "string"},
                        "current_holder": {"type": "string"},
                        "generation": {"type": "integer"},
                    },
                }
            },
        },
        "Ack": {
            "type": "object",
            "description": "Without `done`: a heartbeat (extends the lease); `done: true` ends the wake.",
            "properties": {
                "wake_id": {"type": "string"},
                "generation": {"type": "integer"},
                "acks": {"type": "array", "items": ack},
                "done": {"type": "boolean"},
            },
        },
        "Acked": {
            "type": "object",
            "required": ["ok", "next_wake"],
            "properties": {
                "ok": {"const": True},
                "next_wake": {"type": "boolean", "description": "More data came meanwhile: a new wake."},
            },
        },
        "JWKS": {
            "type": "object",
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "description": "The active key first, then previous ones (rotation).",
                    "items": {
                        "type": "object",
                        "required": ["kty", "crv", "kid", "x"],
                        "properties": {
                            "kty": {"const": "OKP"},
                            "crv": {"const": "Ed25519"},
                            "kid": {"type": "string"},
                            "use": {"const": "sig"},
                            "alg": {"const": "EdDSA"},
                            "x": {"type": "string"},
                        },
                    },
                }
            },
        },
    }


_ID = {
    "name": "subscription_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~:@-]+$", "maxLength": MAX_ID_LENGTH},
}
_STREAM_PATH = {
    "name": "stream_path",
    "in": "path",
    "required": True,
    "description": "A member's path (it may contain `/`, percent-encoded here).",
    "schema": _PATH,
}
_AUTH = {"401": _error("Auth is on and the bearer token is missing or unknown.")}
_UNAVAILABLE = {"503": _error("The store is unreachable (`Retry-After`).")}
_BAD = {"400": _error("`INVALID_REQUEST`: a malformed id, path or document.")}
_MISSING = {"404": _error("`SUBSCRIPTION_NOT_FOUND` (or the caller's namespace has none of this id).")}
_WAKE_TOKEN: list[dict[str, list[str]]] = [{"wake": []}]


#: What a client does next with a subscription it created (schemathesis follows these).
_LINKS = {
    operation: {"operationId": operation, "parameters": {"subscription_id": "$request.path.subscription_id"}}
    for operation in ("getSubscription", "deleteSubscription", "claimWake", "addSubscriptionStreams")
}


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _subscription() -> dict[str, Any]:
    return {
        "put": {
            "operationId": "putSubscription",
            "summary": "Create a subscription, or confirm an identical one",
            "parameters": [_ID],
            "requestBody": _body("SubscriptionRequest"),
            "responses": {
                "201": {**_json("Created.", _ref("Subscription")), "links": _LINKS},
                "200": _json("It exists with this configuration.", _ref("Subscription")),
                "400": _error("`INVALID_REQUEST`, or `WEBHOOK_URL_REJECTED` (never contacted)."),
                "409": _error("`SUBSCRIPTION_ALREADY_EXISTS` with another configuration."),
                "413": _error("The body is over the limit."),
                "507": _error("The server holds all the subscriptions it can."),
                **_AUTH,
                **_UNAVAILABLE,
            },
        },
        "get": {
            "operationId": "getSubscription",
            "summary": "The subscription and its members (never a secret)",
            "parameters": [_ID],
            "responses": {
                "200": _json("The subscription.", _ref("Subscription")),
                **_BAD,
                **_MISSING,
                **_AUTH,
            },
        },
        "delete": {
            "operationId": "deleteSubscription",
            "summary": "Delete the subscription (its wake and lease end)",
            "parameters": [_ID],
            "responses": {"204": {"description": "Deleted."}, **_BAD, **_MISSING, **_AUTH},
        },
    }


def _members() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "addSubscriptionStreams",
            "summary": "Link streams explicitly (at their tails; idempotent)",
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["streams"],
                            "properties": {"streams": _STREAMS},
                        }
                    }
                },
            },
            "responses": {"204": {"description": "Linked."}, **_BAD, **_MISSING, **_AUTH, **_UNAVAILABLE},
        }
    }


def _member() -> dict[str, Any]:
    return {
        "delete": {
            "operationId": "removeSubscriptionStream",
            "summary": "Remove an explicit link (a glob link stays while the pattern matches)",
            "parameters": [_ID, _STREAM_PATH],
            "responses": {"204": {"description": "Removed."}, **_BAD, **_MISSING, **_AUTH},
        }
    }


def _claim() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "claimWake",
            "summary": "Pull-wake: claim the pending wake (one worker at a time, until its lease ends)",
            "parameters": [_ID],
            "requestBody": _body("Claim"),
            "responses": {
                "200": _json("Claimed: read each stream from `acked_offset`.", _ref("Wake")),
                "409": _json(
                    "`ALREADY_CLAIMED` (with `current_holder`) or `NO_PENDING_WORK`.", _ref("ClaimConflict")
                ),
                **_BAD,
                **_MISSING,
                **_AUTH,
            },
        }
    }


def _token_action(operation: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            # Authorized by the wake's token alone (a webhook receiver holds no user token).
            "security": _WAKE_TOKEN,
            "parameters": [_ID],
            "requestBody": _body("Ack", required=False),
            "responses": {
                **ok,
                **_BAD,
                "404": _error("No such subscription, or a token it never gave."),
                "409": _error("`FENCED`: a stale token, wake id or generation."),
                "413": _error("The body is over the limit."),
            },
        }
    }


def _jwks() -> dict[str, Any]:
    responses: dict[str, Any] = {
        "responses": {
            "200": {
                "description": "The keys webhooks are signed with (`Cache-Control: public, max-age=300`).",
                "content": {"application/jwk-set+json": {"schema": _ref("JWKS")}},
            },
            "404": _error("Webhooks are not enabled on this server."),
        }
    }
    return {
        "get": {"operationId": "webhookKeys", "summary": "The JWK Set", "security": [{}], **responses},
        "head": {
            "summary": "The JWK Set's headers",
            "security": [{}],
            "responses": {"200": {"description": "As GET, no body."}, "404": {"description": "No webhooks."}},
        },
    }


def _preflight(*names: str) -> dict[str, Any]:
    # As for every stream name: a preflight answers before the name is looked at.
    return {
        "summary": "CORS preflight",
        "security": [{}],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
        ],
        "responses": {
            "204": {
                "description": "The methods and headers a browser may use (those of every stream name).",
                "headers": {
                    name: {"schema": {"type": "string"}}
                    for name in ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Allow")
                },
            }
        },
    }


def subscription_paths(prefix: str) -> dict[str, Any]:
    """The control API's paths, mounted at ``{prefix}/stream/__ds``."""
    base = f"{prefix}/stream/__ds/subscriptions/{{subscription_id}}"
    acked = {"200": _json("Applied.", _ref("Acked"))}
    paths = {
        f"{prefix}/stream/__ds/jwks.json": _jwks(),
        base: _subscription(),
        f"{base}/streams": _members(),
        f"{base}/streams/{{stream_path}}": _member(),
        f"{base}/claim": _claim(),
        f"{base}/ack": _token_action("ackWake", "Pull-wake: heartbeat or finish the claimed wake", acked),
        f"{base}/release": _token_action(
            "releaseWake", "Pull-wake: give the wake back unacked", {"204": {"description": "Released."}}
        ),
        f"{base}/callback": _token_action(
            "webhookCallback", "Webhook: ack the delivered wake (Bearer callback_token)", acked
        ),
    }
    for path, item in paths.items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        item["options"] = _preflight(*names)
    return paths
