"""The runs API on Quart-Trio: start, read, follow (SSE), cancel and list runs.

Thin routes over the protocol layer's handlers
(:mod:`trio_streams.protocol`): each turns Quart's request into the parsed
one and the handler's answer back into Quart's response. Errors are
counted for /metrics and rendered as the API's JSON error document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from ..protocol import (
    ApiError,
    handle_cancel_run,
    handle_get_run,
    handle_list_runs,
    handle_run_events,
    handle_start_run,
)
from ..protocol._runs_http import json_response as _json_response
from ._adapter import parsed_request, to_quart
from ._errors import error_response, http_exception_response
from ._http_body import consume_body

if TYPE_CHECKING:
    from typing import Any

    from ..protocol import RunsApi


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``document`` as an ``application/json`` response."""
    return to_quart(_json_response(document, status, headers))


def make_blueprint(streams: RunsApi) -> Blueprint:
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

    @blueprint.post("/runs")
    async def start_run() -> Response:
        return to_quart(await handle_start_run(parsed_request(), streams))

    @blueprint.get("/runs")
    async def list_runs() -> Response:
        return to_quart(await handle_list_runs(parsed_request(), streams))

    @blueprint.get("/runs/<run_id>")
    async def get_run(run_id: str) -> Response:
        return to_quart(await handle_get_run(parsed_request(run_id=run_id), streams))

    @blueprint.get("/runs/<run_id>/events")
    async def run_events(run_id: str) -> Response:
        return to_quart(await handle_run_events(parsed_request(run_id=run_id), streams))

    @blueprint.post("/runs/<run_id>/cancel")
    async def cancel_run(run_id: str) -> Response:
        return to_quart(await handle_cancel_run(parsed_request(run_id=run_id), streams))

    return blueprint
