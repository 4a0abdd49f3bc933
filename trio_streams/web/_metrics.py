"""One ``TrioStreams``' Prometheus metrics: its own registry, its histograms, its exposition.

Every extension owns a :class:`prometheus_client.CollectorRegistry` (never
the process-wide default), so two apps in one process each report their own
values and never clash over a name. It holds:

- the statistics families (:mod:`._metrics_stats`), read at each scrape;
- ``trio_streams_http_request_duration_seconds{route,method,status}``: from
  the request reaching the app to its response being ready (status and
  headers made; a long-poll's wait is in it, an event stream's body is not:
  that is what the delivery lag measures). ``route`` is the route's rule
  (``/v1/runs/<run_id>``), the same whether Quart or the raw-ASGI fast
  paths answered; ``""`` for a path no route matched;
- ``trio_streams_durable_append_duration_seconds``: a Durable Streams
  append (or close) from the handler handing it to the store until the
  store acknowledged it: in memory, the append itself; in Redis, its wait
  for the group commit and the commit's round trip. Refused appends are not
  in it;
- ``trio_streams_sse_delivery_lag_seconds``: for each write of a runs event
  stream that carries events published after the stream began, how long
  after its oldest such event was published the write completed (the
  hub's wall clock on both ends; replayed history is not a lag);
- ``trio_streams_store_persist_lag_seconds``: runs' events, from their
  publication to the run store acknowledging the write that holds them, one
  observation per write (its oldest event's; the hub's wall clock). A
  Redis store's flushes; the memory store holds an event when it is
  published, so it has none (the family is there, empty);
- the process's own metrics (``process_*``, ``python_info``, ``python_gc_*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ._metrics_stats import PREFIX, StatsCollector

if TYPE_CHECKING:
    from collections.abc import Callable

    from quart import Response
    from quart_trio import QuartTrio

    from ._metrics_stats import StatsSource

#: What /metrics answers with (the text format ``prometheus_client`` writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request durations: from a fraction of a millisecond (an append) to a long-poll's wait.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Appends: memory is microseconds, a Redis group commit a millisecond or more.
APPEND_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
#: Delivery lag: live tokens should be milliseconds; seconds mean a slow client or a stall.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: The methods a route label may carry; anything else is ``other`` (bounded labels).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class Metrics:
    """The registry of one extension and the observations its routes make.

    Args:
        source: what the statistics families read (the extension).
        process: also register the process's collectors (``process_*``,
            ``python_info``, ``python_gc_*``).
    """

    def __init__(self, source: StatsSource, *, process: bool = True) -> None:
        #: This extension's registry (not ``prometheus_client.REGISTRY``).
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(source))
        self._requests = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Time from a request reaching the app to its response being ready, by route.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._appends = Histogram(
            PREFIX + "durable_append_duration_seconds",
            "Durable Streams appends, from the handler to the store's acknowledgement.",
            buckets=APPEND_BUCKETS,
            registry=self.registry,
        )
        self._lag = Histogram(
            PREFIX + "sse_delivery_lag_seconds",
            "Runs event streams: a live event's publication to its write to the client.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._persist = Histogram(
            PREFIX + "store_persist_lag_seconds",
            "Runs events: publication to the store acknowledging the write that holds them.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        # labels() costs a lock and a tuple's worth of work; a dict hit is cheaper.
        self._children: dict[tuple[str, str, int], Histogram] = {}
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (``route``: its rule, ``""`` when none matched)."""
        if method not in _METHODS:
            method = "other"  # keys stay bounded too: a client chooses the method
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(route, method, str(status))
        child.observe(seconds)

    def observe_append(self, seconds: float) -> None:
        """One acknowledged Durable Streams append."""
        self._appends.observe(seconds)

    def observe_delivery_lag(self, seconds: float) -> None:
        """One event stream write's lag (its oldest live event's; see the module docstring)."""
        self._lag.observe(max(seconds, 0.0))  # wall clocks of two instances may disagree

    def persist_observer(self, wall_clock: Callable[[], float]) -> Callable[[float], None]:
        """What ``Store.observe_persisted`` calls: the lag of a write whose oldest event has ``timestamp``."""
        observe = self._persist.observe

        def persisted(timestamp: float) -> None:
            observe(max(wall_clock() - timestamp, 0.0))

        return persisted

    def exposition(self) -> bytes:
        """This registry in the Prometheus text format, every value exact."""
        return generate_latest(self.registry)


def time_requests(app: QuartTrio, metrics: Metrics) -> None:
    """Observe every request ``app`` answers through Quart in ``http_request_duration_seconds``.

    From the app's first ``before_request`` hook of ours to the response
    (after its error handler, if one ran); a request that failed past every
    handler counts as a 500 when it is torn down. A request cancelled before
    it had a response (the client left a long-poll) is not observed.
    """
    from quart import g, request

    @app.before_request
    async def started() -> None:  # async: Quart runs plain functions in a worker thread
        g.trio_streams_started = trio.current_time()

    def observe(status: int) -> None:
        started = g.pop("trio_streams_started", None)
        if started is not None:
            rule = request.url_rule
            route = "" if rule is None else rule.rule
            metrics.observe_request(route, request.method, status, trio.current_time() - started)

    @app.after_request
    async def answered(response: Response) -> Response:
        observe(response.status_code)
        return response

    @app.teardown_request
    async def torn_down(exc: BaseException | None) -> None:
        observe(500)  # only if nothing answered (answered() took the start time)
