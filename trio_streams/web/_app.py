"""The app ``trio-streams serve`` runs: the runs API alone, JSON errors everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ._errors import http_exception_response
from ._extension import TrioStreams
from ._http_body import consume_body

if TYPE_CHECKING:
    from quart import Response


def create_app(**options: Any) -> QuartTrio:
    """A QuartTrio app serving the runs API (with the ``demo`` producer).

    ``options`` go to :class:`TrioStreams` (``store=``, ``auth=``, ...); the
    extension is at ``app.extensions["trio_streams"]``. Every error, even a
    route that does not exist, is a JSON error document.
    """
    app = QuartTrio("trio_streams")
    # A path with "//" is a 404 like any other unknown path, not Werkzeug's
    # HTML 308 to the merged path (another resource: /v1/runs//events).
    app.url_map.merge_slashes = False
    streams = TrioStreams(app, **options)
    # The largest body any route takes; each route enforces its own limit.
    durable_max = 0 if streams.durable_store is None else streams.durable_max_body
    app.config["MAX_CONTENT_LENGTH"] = max(streams.max_body, durable_max)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    @app.errorhandler(HTTPException)
    async def json_http_error(error: HTTPException) -> Response:
        await consume_body()
        return http_exception_response(error)

    @app.get("/")
    async def index() -> Response:
        doc = {
            "service": "trio-streams",
            "api": streams.url_prefix,
            "openapi": "/openapi.json",
            "health": "/healthz",
            "producers": sorted(streams.producers),
        }
        from ._routes import json_response

        return json_response(doc)

    return app
