"""Operations endpoints: ``/healthz``, ``/metrics`` (Prometheus text), ``/openapi.json``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio
from quart import Blueprint, Response

from ..durable import DurableStreamStore, RedisDurableStore
from ._errors import ApiError, error_response
from ._openapi import DocumentedProducer, openapi_document
from ._routes import json_response

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable, Mapping

    from trio_util import AsyncValue

    from ..durable import GroupCommitStatistics
    from ..runs._hub import Hub


class OpsSource(Protocol):
    """What the operations endpoints read (``TrioStreams`` provides it)."""

    @property
    def running(self) -> bool: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def url_prefix(self) -> str: ...

    @property
    def producers(self) -> Mapping[str, DocumentedProducer]: ...

    @property
    def durable_store(self) -> DurableStreamStore | RedisDurableStore | None: ...

    @property
    def durable_live_reads(self) -> AsyncValue[int]: ...

    @property
    def sse_streams_open(self) -> int: ...

    @property
    def counters(self) -> Counter[str]: ...


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
        await trio.lowlevel.checkpoint()
        return Response(render_metrics(streams), content_type="text/plain; version=0.0.4; charset=utf-8")

    @blueprint.get("/openapi.json")
    async def openapi() -> Response:
        await trio.lowlevel.checkpoint()
        return json_response(
            openapi_document(streams.url_prefix, streams.producers, durable=streams.durable_store is not None)
        )

    return blueprint


def _redis_durable_metrics(
    metric: Callable[[str, str, str, list[tuple[str, float]]], None], group: GroupCommitStatistics
) -> None:
    """The Durable Streams Redis store's group commit: what waits, and what went."""
    metric(
        "durable_pending_appends",
        "gauge",
        "Durable Streams appends waiting for Redis.",
        [("", group.pending)],
    )
    metric(
        "durable_pending_bytes",
        "gauge",
        "Body bytes of the appends waiting for Redis.",
        [("", group.pending_bytes)],
    )
    metric(
        "durable_commits_total", "counter", "Group commits of Durable Streams appends.", [("", group.batches)]
    )
    metric("durable_appends_total", "counter", "Appends in those commits.", [("", group.appends)])
    metric(
        "durable_append_refusals_total",
        "counter",
        "Appends refused (503) because the pending bound was reached.",
        [("", group.refused)],
    )


def render_metrics(streams: OpsSource) -> str:
    """The Prometheus text exposition of the hub's and the API's counters."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP trio_streams_{name} {help_text}")
        lines.append(f"# TYPE trio_streams_{name} {kind}")
        for labels, value in samples:
            lines.append(f"trio_streams_{name}{labels} {value:g}")

    if streams.running:
        stats = streams.hub.statistics()
        metric(
            "runs",
            "gauge",
            "Runs held in memory, by state.",
            [
                ('{state="queued"}', stats.runs_queued),
                ('{state="running"}', stats.runs_running),
                ('{state="finished"}', stats.runs_finished),
            ],
        )
        metric("subscribers", "gauge", "Open subscriptions.", [("", stats.subscribers)])
        metric("runs_started_total", "counter", "Runs started.", [("", stats.runs_started)])
        metric(
            "runs_ended_total",
            "counter",
            "Runs ended, by terminal status.",
            [(f'{{status="{status}"}}', count) for status, count in sorted(stats.runs_by_status.items())],
        )
        metric(
            "events_published_total",
            "counter",
            "Events published (rate() gives events/s).",
            [("", stats.events_published)],
        )
        metric("log_bytes", "gauge", "Bytes held in replay logs.", [("", stats.log_bytes)])
        metric(
            "store_pending_events",
            "gauge",
            "Events accepted but not yet durable in the store (flush lag).",
            [("", stats.store.pending_events)],
        )
        metric(
            "store_flush_errors_total", "counter", "Failed store writes.", [("", stats.store.flush_errors)]
        )
        memory = stats.memory
        metric("memory_limit_bytes", "gauge", "The memory budget (max_memory).", [("", memory.limit)])
        metric(
            "memory_used_bytes",
            "gauge",
            "Bytes counted in the memory budget, by part (each event once).",
            [('{part="runs"}', memory.runs), ('{part="durable"}', memory.durable)],
        )
        metric(
            "memory_pending_bytes",
            "gauge",
            "Bytes not yet durable (part of the runs' bytes), of memory_pending_limit_bytes.",
            [("", memory.pending)],
        )
        metric(
            "memory_pending_limit_bytes",
            "gauge",
            "The not-yet-durable sub-budget (max_pending_bytes).",
            [("", memory.pending_limit)],
        )
        metric(
            "memory_evictions_total",
            "counter",
            "Finished runs evicted or dropped to give memory back.",
            [("", memory.evicted)],
        )
        metric(
            "memory_refusals_total",
            "counter",
            "Runs, events and appends refused because the memory budget was full.",
            [("", memory.refused)],
        )
    if isinstance(streams.durable_store, DurableStreamStore):  # Redis keeps its own counts
        durable = streams.durable_store.statistics()
        metric(
            "durable_streams",
            "gauge",
            "Durable Streams held (soft-deleted ones too).",
            [("", durable.streams)],
        )
        metric("durable_stream_bytes", "gauge", "Bytes of Durable Streams data held.", [("", durable.bytes)])
    if isinstance(streams.durable_store, RedisDurableStore):
        _redis_durable_metrics(metric, streams.durable_store.group_commit.statistics())
    if streams.durable_store is not None:
        metric(
            "durable_live_reads",
            "gauge",
            "Durable Streams long-polls and SSE responses waiting for data.",
            [("", streams.durable_live_reads.value)],
        )
    metric("up", "gauge", "1 while the hub is serving.", [("", 1 if streams.running else 0)])
    metric("sse_streams_open", "gauge", "Event streams being served now.", [("", streams.sse_streams_open)])
    metric(
        "http_errors_total",
        "counter",
        "API error responses, by code.",
        [
            (f'{{code="{name.removeprefix("error:")}"}}', count)
            for name, count in sorted(streams.counters.items())
            if name.startswith("error:")
        ],
    )
    return "\n".join(lines) + "\n"
