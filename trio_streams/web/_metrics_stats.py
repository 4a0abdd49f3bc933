"""The hub's and the API's statistics as Prometheus metric families, read at each scrape.

:class:`StatsCollector` is a ``prometheus_client`` custom collector: it
holds no values of its own, it reads ``Hub.statistics()``, the Durable
Streams store's and the extension's counters when a scrape collects, so a
value is never stale and never double-kept. The names are the ones
``/metrics`` has always had (``trio_streams_runs_started_total``, ...);
values are exact (``prometheus_client`` writes the shortest text that reads
back as the same float: every integer up to 2**53 as itself).

Both stores give the same names: the runs store's ``store_*`` families come
from either store's statistics; of Durable Streams, ``durable_pending_*``
exist for both (an in-memory append is done when it is acknowledged: 0),
``durable_streams``/``durable_stream_bytes`` only in memory (Redis would
need a scan) and the group-commit counters only in Redis (memory has no
group commit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..durable import DurableStreamStore, RedisDurableStore

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Iterator, Mapping

    from prometheus_client.core import Metric
    from trio_util import AsyncValue

    from ..runs._hub import Hub

PREFIX = "trio_streams_"


class StatsSource(Protocol):
    """What the collector reads (``TrioStreams`` provides it)."""

    @property
    def running(self) -> bool: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def durable_store(self) -> DurableStreamStore | RedisDurableStore | None: ...

    @property
    def durable_live_reads(self) -> AsyncValue[int]: ...

    @property
    def sse_streams_open(self) -> int: ...

    @property
    def counters(self) -> Counter[str]: ...


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help_text, value=value)


def _labelled_gauge(name: str, help_text: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, help_text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _labelled_counter(
    name: str, help_text: str, label: str, values: Mapping[str, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, help_text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class StatsCollector(Collector):
    """The statistics of ``source`` as metric families (see the module docstring)."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """Every family, read now (synchronous: no checkpoint, nothing to cancel)."""
        source = self._source
        if source.running:
            yield from _hub_families(source.hub)
        yield from _durable_families(source)
        yield _gauge("up", "1 while the hub is serving.", 1 if source.running else 0)
        yield _gauge("sse_streams_open", "Event streams being served now.", source.sse_streams_open)
        errors = {
            name.removeprefix("error:"): count
            for name, count in sorted(source.counters.items())
            if name.startswith("error:")
        }
        yield _labelled_counter("http_errors", "API error responses, by code.", "code", errors)


def _hub_families(hub: Hub) -> Iterator[Metric]:
    stats = hub.statistics()
    runs = {"queued": stats.runs_queued, "running": stats.runs_running, "finished": stats.runs_finished}
    yield _labelled_gauge("runs", "Runs held in memory, by state.", "state", runs)
    yield _gauge("subscribers", "Open subscriptions.", stats.subscribers)
    yield _counter("runs_started", "Runs started.", stats.runs_started)
    ended = dict(sorted(stats.runs_by_status.items()))
    yield _labelled_counter("runs_ended", "Runs ended, by terminal status.", "status", ended)
    yield _counter("events_published", "Events published (rate() gives events/s).", stats.events_published)
    yield _gauge("log_bytes", "Bytes held in replay logs.", stats.log_bytes)
    yield _gauge(
        "store_pending_events",
        "Events accepted but not yet durable in the store (flush lag).",
        stats.store.pending_events,
    )
    yield _counter("store_flush_errors", "Failed store writes.", stats.store.flush_errors)
    memory = stats.memory
    yield _gauge("memory_limit_bytes", "The memory budget (max_memory).", memory.limit)
    yield _labelled_gauge(
        "memory_used_bytes",
        "Bytes counted in the memory budget, by part (each event once).",
        "part",
        {"runs": memory.runs, "durable": memory.durable},
    )
    yield _gauge(
        "memory_pending_bytes",
        "Bytes not yet durable (part of the runs' bytes), of memory_pending_limit_bytes.",
        memory.pending,
    )
    limit = memory.pending_limit
    yield _gauge("memory_pending_limit_bytes", "The not-yet-durable sub-budget (max_pending_bytes).", limit)
    yield _counter(
        "memory_evictions", "Finished runs evicted or dropped to give memory back.", memory.evicted
    )
    yield _counter(
        "memory_refusals",
        "Runs, events and appends refused because the memory budget was full.",
        memory.refused,
    )


def _durable_families(source: StatsSource) -> Iterator[Metric]:
    store = source.durable_store
    if store is None:
        return
    pending_appends, pending_bytes = 0, 0
    if isinstance(store, DurableStreamStore):
        durable = store.statistics()
        yield _gauge("durable_streams", "Durable Streams held (soft-deleted ones too).", durable.streams)
        yield _gauge("durable_stream_bytes", "Bytes of Durable Streams data held.", durable.bytes)
    else:
        group = store.group_commit.statistics()
        pending_appends, pending_bytes = group.pending, group.pending_bytes
        yield _counter("durable_commits", "Group commits of Durable Streams appends.", group.batches)
        yield _counter("durable_appends", "Appends in those commits.", group.appends)
        yield _counter(
            "durable_append_refusals",
            "Appends refused (503) because the pending bound was reached.",
            group.refused,
        )
    yield _gauge(
        "durable_pending_appends",
        "Durable Streams appends waiting for Redis (0 in memory: an append is done when acknowledged).",
        pending_appends,
    )
    yield _gauge("durable_pending_bytes", "Body bytes of the appends waiting for Redis.", pending_bytes)
    yield _gauge(
        "durable_live_reads",
        "Durable Streams long-polls and SSE responses waiting for data.",
        source.durable_live_reads.value,
    )
