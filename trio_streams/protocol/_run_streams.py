"""Runs as read-only Durable Streams over HTTP: ``<mount>/runs/<run_id>``.

What a run stream holds is :class:`trio_streams.durable._runs.RunSource`;
this serves it: ``GET`` reads it as any Durable Stream, ``HEAD`` describes
it, writes are refused (405), and who may read is what the runs API allows
(another user's run is the same 404 as a run that does not exist).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import RunNotFound
from ..durable._errors import DurableStreamError
from ..durable._runs import RunSource
from ._ds_http import protocol_response
from ._ds_reads import read_query, serve_read

if TYPE_CHECKING:
    from ..durable._reads import ReadSettings
    from ..durable._runs import RunAccess
    from ..runs._hub import Hub
    from ..runs._run import RunInfo
    from ._messages import Request, Response, StreamingResponse

_ALLOWED = "GET, HEAD, OPTIONS"


class RunStreams:
    """Serves ``runs/<run_id>`` for the Durable Streams handlers."""

    def __init__(self, access: RunAccess) -> None:
        self._access = access

    async def handle(
        self, request: Request, run_id: str, settings: ReadSettings
    ) -> Response | StreamingResponse:
        """Answer ``request`` for the run ``run_id`` (a read, or a 405 for a write).

        Raises:
            DurableStreamError: 405 for a write, 404 for a run the caller may not see.
            Whatever ``access.caller`` raises to refuse (the runs API's 401).
        """
        if request.method not in ("GET", "HEAD"):
            raise DurableStreamError(
                405,
                "read_only",
                "runs are read-only streams: start runs with POST /v1/runs",
                headers={"Allow": _ALLOWED},
            )
        caller = self._access.caller(request.headers.get("Authorization"))
        hub = self._access.hub_for_reading()
        source = RunSource(hub, await self._visible(hub, run_id, caller))
        if request.method == "HEAD":
            headers = {"Stream-Next-Offset": str(source.tail()), "Cache-Control": "no-store"}
            if source.is_closed():
                headers["Stream-Closed"] = "true"
            return protocol_response(200, headers, content_type=source.content_type)
        start, live = read_query(request)
        return await serve_read(request, source, start, live, settings)

    async def _visible(self, hub: Hub, run_id: str, caller: str | None) -> RunInfo:
        try:
            info = await hub.get_info(run_id)
        except RunNotFound:
            pass
        else:
            if self._access.may_read(info, caller):
                return info
        raise DurableStreamError(404, "stream_not_found", f"no run {run_id!r}")
