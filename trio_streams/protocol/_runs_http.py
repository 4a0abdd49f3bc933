"""The runs API's operations as framework-free handlers: start, get, follow, cancel, list.

Each ``handle_*`` takes the parsed request and the application
(:class:`~._runs_api.RunsApi`) and returns the response; refusals are raised
as :class:`~._errors.ApiError` (rendered by :func:`~._errors.api_error_response`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from .._errors import AtCapacity, HubClosed, KeysUnavailable, RunConflict, RunNotFound
from ..log._events import encode_json
from ..runs._hub import RunNotLive
from ..runs._run import RunStatus
from ._body import read_body
from ._errors import ApiError
from ._messages import Response
from ._runs_parse import (
    MAX_LIST_LIMIT,
    OFF_LOOP_BODY,
    RUN_ID,
    StartSpec,
    bool_arg,
    check_input,
    int_arg,
    invalid,
    parse_cancel_reason,
    parse_json_object,
    parse_start,
    resume_point,
)
from ._runs_sse import event_stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..runs._hub import Hub
    from ..runs._run import RunInfo
    from ._messages import Request, StreamingResponse
    from ._runs_api import ProducerSpec, RunsApi


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``document`` as an ``application/json`` response."""
    body = encode_json(document).encode()
    return Response(status, {"Content-Type": "application/json", **(headers or {})}, body)


#: Results that are JSON as they are (the usual case: a text), not encoded to check.
_SCALARS = frozenset({str, int, bool})


def run_document(api: RunsApi, info: RunInfo, hub: Hub, root_path: str = "") -> dict[str, Any]:
    """A run as the API shows it (with its subscribers and its events URL, under ``root_path``:
    the request's, so that behind a proxy serving ``/api`` the URL leads back)."""
    doc = info.to_json()
    result = doc.get("result")
    if result is not None and type(result) not in _SCALARS:
        try:
            encode_json(result)
        except (TypeError, ValueError):
            # A producer's result so far (``ctx.result``) that is not JSON: the run ends in
            # ``error`` for it (``bad_result``) unless the producer mends it; until then the
            # document shows none, rather than the GET (and every listing with it) failing.
            doc["result"] = None
    if api.auth is None:
        del doc["owner"]  # always null without auth: noise
    run = hub.get(info.run_id)
    doc["subscribers"] = 0 if run is None else run.subscribers
    doc["producer"] = info.metadata.get("producer")
    doc["events_url"] = f"{root_path}{api.url_prefix}/runs/{info.run_id}/events"
    return doc


async def visible_info(api: RunsApi, hub: Hub, run_id: str, caller: str | None) -> RunInfo:
    """The run's info if the caller may see it; else the same 404 as an unknown run."""
    if RUN_ID.match(run_id):
        try:
            info = await hub.get_info(run_id)
        except RunNotFound:
            pass
        else:
            if api.may_read(info, caller):
                return info
    raise ApiError(404, "run_not_found", f"no run {run_id!r}", run_id=run_id)


async def handle_start_run(request: Request, api: RunsApi) -> Response:
    """``POST /runs``: 201 with the new run; with ``Idempotency-Key``, 200 with the earlier one."""
    caller = api.caller(request.headers.get("Authorization"))
    hub = api.hub_for_starting()
    body = await read_body(request, api.max_body, ApiError)
    spec = await _parse_start(body, api.producers)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is None:
        info = await _start(api, hub, spec, caller)
        return _created(run_document(api, info, hub, request.root_path))
    async with api.idempotency.claim(caller, idempotency_key, body) as claim:
        if claim.run_id is not None:
            info = await visible_info(api, hub, claim.run_id, caller)
            return json_response(run_document(api, info, hub, request.root_path), 200)
        info = await _start(api, hub, spec, caller)
        claim.started(info.run_id)
        return _created(run_document(api, info, hub, request.root_path))


# One thread validates large inputs at a time: each holds the GIL for its
# slices, and the event loop, competing with one thread, keeps its latency.
_VALIDATION_THREADS = trio.CapacityLimiter(1)


async def _parse_start(body: bytes, producers: Mapping[str, ProducerSpec]) -> StartSpec:
    """:func:`parse_start`, with a large body's input validated in a worker thread.

    The schema check of a body over ``OFF_LOOP_BODY`` runs off the event
    loop (one at a time), so other requests and SSE streams go on meanwhile;
    ``parse_input`` still runs here, in the loop's thread.

    Cancellation: waits for the thread to finish (the check is bounded: see
    ``protocol/_input_schema.py``), then raises ``Cancelled``.
    """
    if len(body) <= OFF_LOOP_BODY:
        return parse_start(body, producers)
    doc = parse_json_object(body, "the body")
    name = doc.get("producer")
    registered = producers.get(name) if isinstance(name, str) else None
    if registered is None or registered.input_validator is None:
        return StartSpec(doc, producers)  # nothing to validate: StartSpec says what is wrong
    await trio.to_thread.run_sync(check_input, registered, doc.get("input"), limiter=_VALIDATION_THREADS)
    return StartSpec(doc, producers, input_checked=True)


async def handle_list_runs(request: Request, api: RunsApi) -> Response:
    """``GET /runs[?status=&limit=]``: the caller's runs (everyone's with auth off)."""
    caller = api.caller(request.headers.get("Authorization"))
    hub = api.hub_for_reading()
    status_arg = request.arg("status")
    status = None
    if status_arg is not None:
        try:
            status = RunStatus(status_arg)
        except ValueError:
            choices = ", ".join(s.value for s in RunStatus)
            raise ApiError(400, "invalid_status", f"status must be one of: {choices}") from None
    limit = int_arg(request, "limit", default=100, low=1, high=MAX_LIST_LIMIT)
    owner = caller if api.auth is not None else None
    infos = await hub.list_runs(owner=owner, status=status, limit=limit)
    return json_response({"runs": [run_document(api, info, hub, request.root_path) for info in infos]})


async def handle_get_run(request: Request, api: RunsApi) -> Response:
    """``GET /runs/{run_id}``."""
    caller = api.caller(request.headers.get("Authorization"))
    hub = api.hub_for_reading()
    return json_response(
        run_document(
            api, await visible_info(api, hub, request.path_params["run_id"], caller), hub, request.root_path
        )
    )


async def handle_run_events(request: Request, api: RunsApi) -> StreamingResponse:
    """``GET /runs/{run_id}/events``: SSE after ``Last-Event-ID`` or ``?after`` (400 past the end)."""
    run_id = request.path_params["run_id"]
    caller = api.caller(request.headers.get("Authorization"))
    hub = api.hub_for_reading()
    after = resume_point(request)
    info = await visible_info(api, hub, run_id, caller)
    if after > info.last_seq:
        raise ApiError(
            400,
            "after_beyond_end",
            f"resume point {after} is beyond the run's last event ({info.last_seq})",
            last_seq=info.last_seq,
        )
    return event_stream(api, hub, run_id, after)


async def handle_cancel_run(request: Request, api: RunsApi) -> Response:
    """``POST /runs/{run_id}/cancel[?wait=true]``: 200 once finished, 202 if ``wait`` timed out.

    Cancellation of the request while it waits leaves the run cancelling.
    """
    run_id = request.path_params["run_id"]
    caller = api.caller(request.headers.get("Authorization"))
    hub = api.hub_for_reading()
    wait = bool_arg(request, "wait")
    if request.arg("reason") is not None:  # not dropped in silence: the run would end "cancelled"
        raise ApiError(
            400, "invalid_reason", 'the reason goes in the JSON body, {"reason": "..."}, not the query'
        )
    reason = parse_cancel_reason(await read_body(request, api.max_body, ApiError))
    await visible_info(api, hub, run_id, caller)
    try:
        await hub.cancel(run_id, reason=reason)
        if wait:
            with trio.move_on_after(api.cancel_wait_timeout):
                await hub.wait(run_id)
    except RunNotFound:
        raise ApiError(404, "run_not_found", f"no run {run_id!r}", run_id=run_id) from None
    except RunNotLive as exc:
        raise ApiError(409, "run_not_live_here", str(exc), run_id=run_id) from None
    info = await visible_info(api, hub, run_id, caller)
    return json_response(
        run_document(api, info, hub, request.root_path), 202 if wait and not info.status.finished else 200
    )


async def _start(api: RunsApi, hub: Hub, spec: StartSpec, caller: str | None) -> RunInfo:
    run_input = spec.input
    try:
        run = await hub.start(
            spec.producer.function,
            input=run_input,
            key=spec.key,
            owner=caller,
            on_conflict=spec.on_conflict,
            on_disconnect=spec.on_disconnect,
            metadata=spec.metadata,
            on_finish=spec.producer.on_finish,
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
        raise invalid(str(exc)) from None
    api.counters["runs_started"] += 1
    return run.info()


def _created(doc: dict[str, Any]) -> Response:
    return json_response(doc, 201, {"Location": doc["events_url"].removesuffix("/events")})
