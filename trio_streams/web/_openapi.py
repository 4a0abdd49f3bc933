"""The OpenAPI 3.1 document of every route (served at ``/openapi.json``).

The runs API, the operations endpoints and, when mounted, the Durable
Streams protocol (:mod:`._openapi_durable`); the document's version is the
package's. Written by hand to say exactly what the handlers do; the test
suite fuzzes the live server against it (schemathesis) so the two cannot
drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, get_args

from .._version import __version__
from ..protocol._input_schema import rebased
from ..protocol._runs_parse import DEFAULT_ON_CONFLICT, DEFAULT_ON_DISCONNECT
from ..runs._run import OnConflict, OnDisconnect, RunStatus
from ._openapi_durable import durable_paths
from ._openapi_subscriptions import subscription_schemas

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..protocol._input_schema import InputSchema


#: The subscriptions' token actions (ack, release, callback) take the wake's token, not a user's.
_WAKE_TOKEN = {
    "wake": {"type": "http", "scheme": "bearer", "description": "A wake's token, or its callback_token."}
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _run_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}},
    }


_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
_AUTH_ERRORS = {"401": _error("Auth is on and the bearer token is missing or unknown.")}
_UNAVAILABLE = {"503": _error("The server is starting or shutting down (`Retry-After`).")}


class DocumentedProducer(Protocol):
    """What the document says of a producer (``RegisteredProducer`` provides it)."""

    @property
    def input_schema(self) -> dict[str, Any]:
        """The input's JSON Schema (``{}``: anything)."""
        ...

    @property
    def input_validator(self) -> InputSchema | None:
        """The same schema compiled: whether it accepts ``null`` (no input)."""
        ...

    @property
    def on_conflict(self) -> OnConflict | None:
        """The producer's own default (``None``: the API's)."""
        ...

    @property
    def on_disconnect(self) -> OnDisconnect | None:
        """The producer's own default (``None``: the API's)."""
        ...


def _schemas_of_producers(producers: Mapping[str, DocumentedProducer]) -> dict[str, Any]:
    """``StartRun`` (one alternative per producer, by ``producer``) and each alternative's schemas.

    ``StartRun.<name>`` is producer ``name``'s start body, with its own
    ``on_conflict``/``on_disconnect`` defaults; ``Input.<name>`` is the very
    schema its input is validated with (references rebased to where it sits
    here). ``input`` is required when the schema refuses ``null``, as the
    server does then. The policy enums come from the code's own lists.
    """
    schemas: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    for name, producer in sorted(producers.items()):
        start, given = f"StartRun.{name}", f"Input.{name}"
        input_schema = {k: v for k, v in producer.input_schema.items() if k != "$schema"}
        schemas[given] = rebased(input_schema, f"#/components/schemas/{given}")
        on_conflict = producer.on_conflict or DEFAULT_ON_CONFLICT
        on_disconnect = producer.on_disconnect or DEFAULT_ON_DISCONNECT
        validator = producer.input_validator
        schemas[start] = {
            "type": "object",
            "description": (
                f"Start producer `{name}`; without `on_conflict` / `on_disconnect` "
                f"its runs take `{on_conflict}` / `{on_disconnect}`."
            ),
            "required": ["producer"]
            if validator is None or validator.accepts_null
            else ["producer", "input"],
            "additionalProperties": False,
            "properties": {
                "producer": {"const": name},
                "input": {"$ref": f"#/components/schemas/{given}"},
                "key": {"type": ["string", "null"], "minLength": 1, "maxLength": 256},
                "on_conflict": {"enum": list(get_args(OnConflict)), "default": on_conflict},
                "on_disconnect": {"enum": list(get_args(OnDisconnect)), "default": on_disconnect},
                "metadata": {
                    "type": ["object", "null"],
                    "not": {"required": ["producer"]},
                    "description": "Kept with the run; the name `producer` is reserved.",
                },
            },
        }
        mapping[name] = f"#/components/schemas/{start}"
    schemas["StartRun"] = (
        {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "producer", "mapping": mapping},
        }
        if mapping
        else {"not": {}}
    )
    return schemas


def openapi_document(
    prefix: str,
    producers: Mapping[str, DocumentedProducer],
    *,
    durable: bool = False,
    subscriptions: bool = False,
) -> dict[str, Any]:
    """The OpenAPI document for the API mounted at ``prefix``, with its registered ``producers``.

    ``durable``: the Durable Streams protocol is mounted at ``{prefix}/stream``;
    ``subscriptions``: with its control API under ``__ds/``.
    """
    statuses = [status.value for status in RunStatus]
    json_value: dict[str, Any] = {}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trio-streams API",
            "version": __version__,
            "description": (
                "Start runs that outlive their requests, follow them as Server-Sent Events "
                "(resumable with Last-Event-ID), cancel them with their partial result saved. "
                'Errors are {"error": {"code", "message"}}.'
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                **(_WAKE_TOKEN if subscriptions else {}),
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {
                                    "type": "string",
                                    "description": "`invalid_input`: the value the schema refused, "
                                    "from `input` (`input.words[2]`).",
                                },
                            },
                        }
                    },
                },
                **_schemas_of_producers(producers),
                **(subscription_schemas() if durable and subscriptions else {}),
                "Run": {
                    "type": "object",
                    "required": ["run_id", "status", "created_at", "last_seq", "subscribers", "events_url"],
                    "properties": {
                        "run_id": {"type": "string"},
                        "key": {"type": ["string", "null"]},
                        "owner": {"type": ["string", "null"]},
                        "producer": {"type": ["string", "null"]},
                        "status": {"enum": statuses},
                        "created_at": {"type": "number"},
                        "started_at": {"type": ["number", "null"]},
                        "ended_at": {"type": ["number", "null"]},
                        "last_seq": {"type": "integer", "minimum": 0},
                        "subscribers": {"type": "integer", "minimum": 0},
                        "metadata": {"type": "object"},
                        "result": json_value,
                        "partial": {"type": "boolean"},
                        "error": {"type": ["object", "null"]},
                        "reason": {"type": ["string", "null"]},
                        "finalize_error": {"type": ["string", "null"]},
                        "awaiting_input": {"type": "boolean"},
                        "events_url": {"type": "string"},
                    },
                },
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            f"{prefix}/runs": {
                "post": {
                    "summary": "Start a run",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/StartRun"}}
                        },
                    },
                    "responses": {
                        "201": _run_doc("Started (or queued behind its key)."),
                        "200": _run_doc("The run an earlier request with this Idempotency-Key started."),
                        "400": _error("Invalid body or input, unknown producer."),
                        "409": _error(
                            "`run_conflict`: the caller's key is held "
                            "(error.run_id names the caller's own live run)."
                        ),
                        "413": _error("The body is over the limit."),
                        "422": _error("The Idempotency-Key was used with a different body."),
                        "429": _error("`at_capacity`: a limit refuses the run (`Retry-After`)."),
                        **_AUTH_ERRORS,
                        "503": _error(
                            "The server is starting or shutting down, or `keys_unavailable`: the shared "
                            "store cannot claim the key now, or an Idempotency-Key's first request is still "
                            "starting its run (`Retry-After`; unkeyed runs still start)."
                        ),
                    },
                },
                "get": {
                    "summary": "List the caller's runs, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "required": False, "schema": {"enum": statuses}},
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The runs.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["runs"],
                                        "properties": {
                                            "runs": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Run"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("Invalid status or limit."),
                        **_AUTH_ERRORS,
                        **_UNAVAILABLE,
                    },
                },
            },
            f"{prefix}/runs/{{run_id}}": {
                "get": {
                    "summary": "A run's status document",
                    "parameters": [_RUN_ID],
                    "responses": {
                        "200": _run_doc("The run."),
                        "404": _error("No such run, or not the caller's."),
                        **_AUTH_ERRORS,
                        **_UNAVAILABLE,
                    },
                }
            },
            f"{prefix}/runs/{{run_id}}/events": {
                "get": {
                    "summary": "Follow a run as Server-Sent Events",
                    "description": (
                        "Replays the events after the resume point, then live ones; ends after the terminal "
                        "event (done, error, cancelled, dead). Each event has `id:` (its seq), `event:` "
                        "(its type) and `data:` (JSON). A `gap` event (no id) says how many events were "
                        "trimmed from history. Comment lines are heartbeats. An `unavailable` event (no id) "
                        "ends a stream without the run's end: this server can no longer serve it (with "
                        '`"reason": "shutdown"`, it is shutting down and the run, owned by another instance, '
                        "had not ended); resume elsewhere with Last-Event-ID."
                    ),
                    "parameters": [
                        _RUN_ID,
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "Resume after this seq (Last-Event-ID takes precedence).",
                        },
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The event stream.",
                            "content": {
                                "text/event-stream": {
                                    "schema": {
                                        "type": "object",
                                        "description": "One SSE message: id (seq), event, data (JSON).",
                                        "properties": {
                                            "id": {"type": "string", "pattern": "^[0-9]+$"},
                                            "event": {"type": "string"},
                                            "data": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("A malformed resume point, or one beyond the run's last event."),
                        "404": _error("No such run, or not the caller's."),
                        **_AUTH_ERRORS,
                        **_UNAVAILABLE,
                    },
                }
            },
            f"{prefix}/runs/{{run_id}}/cancel": {
                "post": {
                    "summary": "Cancel a run (idempotent)",
                    "parameters": [
                        _RUN_ID,
                        {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"}},
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "reason": {"type": "string", "minLength": 1, "maxLength": 200}
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _run_doc("The status now; with wait=true, after finalization."),
                        "202": _run_doc("wait=true, but the run had not finalized within the wait limit."),
                        "400": _error(
                            "Invalid body or wait, or a `reason` in the query (it goes in the body)."
                        ),
                        "404": _error("No such run, or not the caller's."),
                        "409": _error("`run_not_live_here`: another instance drains it."),
                        **_AUTH_ERRORS,
                        **_UNAVAILABLE,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Health: is the hub serving and its store reachable?",
                    "security": [{}],
                    "responses": {
                        "200": {
                            "description": "Healthy.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": {
                            "description": "Not serving, or the store is unreachable.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "description": (
                        "With auth on, only the tokens of `metrics_users` (`serve --metrics-user`) "
                        "read it: its figures are every user's. Without auth it is open."
                    ),
                    "security": [{"bearer": []}, {}],
                    "responses": {
                        "200": {
                            "description": "Text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_AUTH_ERRORS,
                        "404": _error("Auth is on and the token's user is not a metrics reader."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [{}],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            **(durable_paths(prefix, subscriptions=subscriptions) if durable else {}),
        },
    }
