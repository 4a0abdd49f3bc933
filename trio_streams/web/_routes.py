"""The runs API: start, read, follow (SSE), cancel and list runs."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, get_args

import trio
from quart import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from .._errors import AtCapacity, HubClosed, KeysUnavailable, RunConflict, RunNotFound
from .._events import encode_json
from .._http_body import consume_body, read_body
from .._hub import RunNotLive
from .._json import InvalidJson, parse_json
from .._run import OnConflict, OnDisconnect, RunInfo, RunStatus
from ._errors import ApiError, error_response, http_exception_response
from ._sse_stream import event_stream_response

if TYPE_CHECKING:
    from .._hub import Hub
    from ._extension import TrioStreams

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_START_FIELDS = {"producer", "input", "key", "on_conflict", "on_disconnect", "metadata"}
MAX_KEY_LENGTH = 256
MAX_LIST_LIMIT = 1000


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``document`` as an ``application/json`` response."""
    response = Response(encode_json(document), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def make_blueprint(streams: TrioStreams) -> Blueprint:
    """The API's routes, bound to ``streams`` (mounted at its ``url_prefix``)."""
    blueprint = Blueprint("trio_streams", __name__)

    # Handlers must be coroutines: Quart runs plain functions in a worker thread.
    async def api_error(error: ApiError) -> Response:
        streams.counters[f"error:{error.code}"] += 1
        return error_response(error)

    async def http_error(error: HTTPException) -> Response:
        await consume_body()
        response = http_exception_response(error)
        streams.counters[f"error:{response.status_code}"] += 1
        return response

    blueprint.register_error_handler(ApiError, api_error)
    blueprint.register_error_handler(HTTPException, http_error)

    @blueprint.after_request
    async def drop_unread_body(response: Response) -> Response:
        # Refused early (401, 404...) or a GET with a body: see consume_body.
        await consume_body()
        return response

    prefix = streams.url_prefix

    def document(info: RunInfo, hub: Hub) -> dict[str, Any]:
        doc = info.to_json()
        if streams.auth is None:
            del doc["owner"]  # always null without auth: noise
        run = hub.get(info.run_id)
        doc["subscribers"] = 0 if run is None else run.subscribers
        doc["producer"] = info.metadata.get("producer")
        doc["events_url"] = f"{prefix}/runs/{info.run_id}/events"
        return doc

    async def visible_info(hub: Hub, run_id: str, caller: str | None) -> RunInfo:
        """The run's info if the caller may see it; else the same 404 as an unknown run."""
        if _RUN_ID.match(run_id):
            try:
                info = await hub.get_info(run_id)
            except RunNotFound:
                pass
            else:
                if streams.may_read(info, caller):
                    return info
        raise ApiError(404, "run_not_found", f"no run {run_id!r}", run_id=run_id)

    @blueprint.post("/runs")
    async def start_run() -> Response:
        caller = streams.caller(request.headers.get("Authorization"))
        hub = streams.hub_for_starting()
        body = await read_body(streams.max_body, ApiError)
        spec = _parse_start(body, streams)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is None:
            info = await _start(hub, streams, spec, caller)
            return _created(document(info, hub))
        async with streams.idempotency.claim(caller, idempotency_key, body) as claim:
            if claim.run_id is not None:
                info = await visible_info(hub, claim.run_id, caller)
                return json_response(document(info, hub), 200)
            info = await _start(hub, streams, spec, caller)
            claim.started(info.run_id)
            return _created(document(info, hub))

    @blueprint.get("/runs")
    async def list_runs() -> Response:
        caller = streams.caller(request.headers.get("Authorization"))
        hub = streams.hub_for_reading()
        status_arg = request.args.get("status")
        status = None
        if status_arg is not None:
            try:
                status = RunStatus(status_arg)
            except ValueError:
                choices = ", ".join(s.value for s in RunStatus)
                raise ApiError(400, "invalid_status", f"status must be one of: {choices}") from None
        limit = _int_arg("limit", default=100, low=1, high=MAX_LIST_LIMIT)
        owner = caller if streams.auth is not None else None
        infos = await hub.list_runs(owner=owner, status=status, limit=limit)
        return json_response({"runs": [document(info, hub) for info in infos]})

    @blueprint.get("/runs/<run_id>")
    async def get_run(run_id: str) -> Response:
        caller = streams.caller(request.headers.get("Authorization"))
        hub = streams.hub_for_reading()
        return json_response(document(await visible_info(hub, run_id, caller), hub))

    @blueprint.get("/runs/<run_id>/events")
    async def run_events(run_id: str) -> Response:
        caller = streams.caller(request.headers.get("Authorization"))
        hub = streams.hub_for_reading()
        after = _resume_point()
        info = await visible_info(hub, run_id, caller)
        if after > info.last_seq:
            raise ApiError(
                400,
                "after_beyond_end",
                f"resume point {after} is beyond the run's last event ({info.last_seq})",
                last_seq=info.last_seq,
            )
        return event_stream_response(streams, hub, run_id, after)

    @blueprint.post("/runs/<run_id>/cancel")
    async def cancel_run(run_id: str) -> Response:
        caller = streams.caller(request.headers.get("Authorization"))
        hub = streams.hub_for_reading()
        wait = _bool_arg("wait")
        reason = _parse_cancel_reason(await read_body(streams.max_body, ApiError))
        await visible_info(hub, run_id, caller)
        try:
            await hub.cancel(run_id, reason=reason)
            if wait:
                with trio.move_on_after(streams.cancel_wait_timeout):
                    await hub.wait(run_id)
        except RunNotFound:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}", run_id=run_id) from None
        except RunNotLive as exc:
            raise ApiError(409, "run_not_live_here", str(exc), run_id=run_id) from None
        info = await visible_info(hub, run_id, caller)
        return json_response(document(info, hub), 202 if wait and not info.status.finished else 200)

    return blueprint


def _parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = parse_json(body)
    except InvalidJson as exc:
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_body", f"{what} must be a JSON object")
    return doc


class _StartSpec:
    __slots__ = ("input", "key", "metadata", "on_conflict", "on_disconnect", "producer")

    def __init__(self, doc: dict[str, Any], streams: TrioStreams) -> None:
        unknown = set(doc) - _START_FIELDS
        if unknown:
            raise _invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
        name = doc.get("producer")
        if not isinstance(name, str):
            raise _invalid("'producer' (a string) is required")
        registered = streams.producers.get(name)
        if registered is None:
            known = ", ".join(sorted(streams.producers)) or "none"
            raise ApiError(400, "unknown_producer", f"no producer named {name!r} (known: {known})")
        raw_input = doc.get("input")
        self.input = raw_input
        if registered.parse_input is not None:
            try:
                self.input = registered.parse_input(raw_input)
            except (ValueError, TypeError) as exc:
                raise ApiError(400, "invalid_input", f"input for {name!r}: {exc}") from None
        self.producer = registered
        key = doc.get("key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
            raise _invalid(f"'key' must be a string of 1-{MAX_KEY_LENGTH} characters or null")
        self.key: str | None = key
        self.on_conflict: OnConflict = _choice(doc, "on_conflict", get_args(OnConflict), "reject")
        self.on_disconnect: OnDisconnect = _choice(doc, "on_disconnect", get_args(OnDisconnect), "continue")
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("'metadata' must be an object or null")
        if "producer" in metadata:
            raise _invalid("'metadata' may not use the reserved name 'producer'")
        self.metadata = {"producer": name, **metadata}


def _parse_start(body: bytes, streams: TrioStreams) -> _StartSpec:
    return _StartSpec(_parse_json_object(body, "the body"), streams)


def _choice(doc: dict[str, Any], name: str, choices: tuple[Any, ...], default: str) -> Any:
    value = doc.get(name, default)
    if value not in choices:
        raise _invalid(f"'{name}' must be one of: {', '.join(choices)}")
    return value


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_body", message)


def _parse_cancel_reason(body: bytes) -> str:
    if not body.strip():
        return "cancelled"
    doc = _parse_json_object(body, "the body")
    unknown = set(doc) - {"reason"}
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    reason = doc.get("reason", "cancelled")
    if not isinstance(reason, str) or not 0 < len(reason) <= 200:
        raise _invalid("'reason' must be a string of 1-200 characters")
    return reason


async def _start(hub: Hub, streams: TrioStreams, spec: _StartSpec, caller: str | None) -> RunInfo:
    function = spec.producer.function
    run_input = spec.input

    async def produce(ctx: Any) -> Any:
        return await function(ctx, run_input)

    try:
        run = await hub.start(
            produce,
            input=run_input,
            key=spec.key,
            owner=caller,
            on_conflict=spec.on_conflict,
            on_disconnect=spec.on_disconnect,
            metadata=spec.metadata,
            reserve=0 if spec.producer.reserve is None else spec.producer.reserve(run_input),
        )
    except RunConflict as exc:
        # Keys are per owner: the run named here is always the caller's own.
        raise ApiError(409, "run_conflict", str(exc), run_id=exc.live_run_id, key=exc.key) from None
    except KeysUnavailable as exc:
        raise ApiError(503, "keys_unavailable", str(exc), headers={"Retry-After": "1"}) from None
    except AtCapacity as exc:
        raise ApiError(429, "at_capacity", str(exc), limit=exc.limit, headers={"Retry-After": "1"}) from None
    except HubClosed:
        raise ApiError(
            503, "shutting_down", "the server is shutting down", headers={"Retry-After": "1"}
        ) from None
    except (TypeError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    streams.counters["runs_started"] += 1
    return run.info()


def _created(doc: dict[str, Any]) -> Response:
    return json_response(doc, 201, {"Location": doc["events_url"].removesuffix("/events")})


def _resume_point() -> int:
    """The seq to resume after: ``Last-Event-ID`` (a reconnect) over ``?after``."""
    raw = request.args.get("after")
    after = 0 if raw is None else _non_negative(raw, "after", "invalid_after")
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        return _non_negative(header.strip(), "Last-Event-ID", "invalid_last_event_id")
    return after


def _non_negative(raw: str, name: str, code: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, code, f"{name} must be a non-negative integer event id, not {raw[:40]!r}")
    return int(raw)


def _int_arg(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -math.inf  # type: ignore[assignment]
    if not low <= value <= high:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer in [{low}, {high}]")
    return value


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw.lower() in {"1", "true"}:
        return True
    if raw.lower() in {"0", "false"}:
        return False
    raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
