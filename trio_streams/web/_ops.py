"""Operations endpoints: ``/healthz``, ``/metrics`` (Prometheus text), ``/openapi.json``.

``/metrics`` is the extension's own registry (:mod:`._metrics`); under
``serve --workers N`` it is every worker's, merged (:mod:`._metrics_workers`).
With auth it answers only the tokens of ``metrics_users``: its figures count
every user's runs and streams.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import trio
from quart import Blueprint, Response, request

from ._errors import ApiError, error_response
from ._metrics import CONTENT_TYPE
from ._metrics_stats import StatsSource
from ._metrics_workers import scrape_workers
from ._openapi import DocumentedProducer, openapi_document
from ._routes import json_response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._metrics import Metrics
    from ._metrics_workers import WorkerMetrics


class OpsSource(StatsSource, Protocol):
    """What the operations endpoints read (``TrioStreams`` provides it)."""

    @property
    def url_prefix(self) -> str: ...

    @property
    def producers(self) -> Mapping[str, DocumentedProducer]: ...

    @property
    def metrics(self) -> Metrics: ...

    def check_metrics_reader(self, authorization: str | None) -> None:
        """Raise ApiError unless the request may read /metrics (auth: ``metrics_users``)."""
        ...

    @property
    def workers(self) -> WorkerMetrics | None:
        """This worker's place among ``serve --workers`` (``None``: a single process)."""
        ...

    @property
    def durable_subscriptions(self) -> bool | Mapping[str, Any]:
        """Whether ``__ds/`` subscriptions are served (``False``: no; else their options)."""
        ...


logger = logging.getLogger("trio_streams.web")

#: How long /healthz waits for the store before calling it unreachable.
HEALTH_TIMEOUT = 2.0


def make_ops_blueprint(streams: OpsSource) -> Blueprint:
    """``/healthz``, ``/metrics`` and ``/openapi.json`` (mounted without the API prefix)."""
    blueprint = Blueprint("trio_streams_ops", __name__)

    async def api_error(error: ApiError) -> Response:  # async: Quart threads sync handlers
        return error_response(error)

    blueprint.register_error_handler(ApiError, api_error)

    @blueprint.get("/healthz")
    async def healthz() -> Response:
        if not streams.running:
            return json_response({"status": "unavailable", "reason": "not serving"}, 503)
        hub = streams.hub
        store = type(hub.store).__name__
        try:
            with trio.fail_after(HEALTH_TIMEOUT):
                await hub.store.ping()
        except Exception as exc:
            logger.warning("healthz: store %s unreachable: %s", store, exc)
            return json_response(
                {"status": "unavailable", "store": store, "reason": "store unreachable"}, 503
            )
        return json_response({"status": "ok", "store": store})

    @blueprint.get("/metrics")
    async def metrics() -> Response:
        # Its figures are every user's (runs, streams, bytes): with auth, only
        # the operators' tokens read it.
        streams.check_metrics_reader(request.headers.get("Authorization"))
        local = streams.metrics.exposition()
        workers = streams.workers
        if workers is None:
            await trio.lowlevel.checkpoint()
            return Response(local, content_type=CONTENT_TYPE)
        return Response(await scrape_workers(workers, local), content_type=CONTENT_TYPE)

    @blueprint.get("/openapi.json")
    async def openapi() -> Response:
        await trio.lowlevel.checkpoint()
        durable = streams.durable_store is not None
        subscriptions = durable and streams.durable_subscriptions is not False
        document = openapi_document(
            streams.url_prefix, streams.producers, durable=durable, subscriptions=subscriptions
        )
        return json_response(document)

    return blueprint
