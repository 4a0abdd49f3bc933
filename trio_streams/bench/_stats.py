"""What ``trio-streams bench`` measures, in a form that merges across workers.

Latencies go into a :class:`Histogram` with logarithmic buckets (about 1 %
relative precision from 1 µs to over an hour), so any number of samples
takes constant memory and histograms from worker processes add up exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Buckets per factor of two: 2 ** (1 / 70) ~ 1.0100, so ~1 % precision.
_PER_OCTAVE = 70
_MIN = 1e-6


class Histogram:
    """Counts of positive durations (seconds) in log-spaced buckets."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    @staticmethod
    def _bucket(value: float) -> int:
        return 0 if value <= _MIN else int(math.log2(value / _MIN) * _PER_OCTAVE) + 1

    @staticmethod
    def _value(bucket: int) -> float:
        # The bucket's upper edge: a percentile never understates a latency.
        return _MIN if bucket == 0 else _MIN * 2 ** (bucket / _PER_OCTAVE)

    def add(self, value: float) -> None:
        """Record one sample (negative values, from clock skew, count as 0)."""
        value = max(value, 0.0)
        bucket = self._bucket(value)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this one."""
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1) by nearest rank; NaN when empty."""
        if not self.count:
            return math.nan
        if q >= 1:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(self._value(bucket), self.max)
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        """count, mean, min, p50, p90, p99, max (seconds; None when empty)."""

        def clean(value: float) -> float | None:
            return None if math.isnan(value) or math.isinf(value) else value

        return {
            "count": self.count,
            "mean": clean(self.total / self.count) if self.count else None,
            "min": clean(self.min),
            "p50": clean(self.percentile(0.5)),
            "p90": clean(self.percentile(0.9)),
            "p99": clean(self.percentile(0.99)),
            "max": clean(self.max) if self.count else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": {str(k): v for k, v in self.counts.items()},
            "count": self.count,
            "total": self.total,
            "min": None if math.isinf(self.min) else self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        histogram = cls()
        histogram.counts = {int(k): int(v) for k, v in data["counts"].items()}
        histogram.count = int(data["count"])
        histogram.total = float(data["total"])
        histogram.min = math.inf if data["min"] is None else float(data["min"])
        histogram.max = float(data["max"])
        return histogram


#: The kinds of correctness violations the load generator counts.
VIOLATION_KINDS = (
    "hole",  # an id skipped (no gap event explaining it)
    "duplicate",  # an id delivered twice
    "out_of_order",  # an id lower than one already seen, not a duplicate
    "gap",  # the server reported trimmed history (explicit, but data lost to the client)
    "no_terminal",  # the stream ended without done/error/cancelled/dead
    "wrong_terminal",  # a cancelled run did not end "cancelled", or a plain run did not end "done"
    "http_error",  # a request failed or answered an unexpected status
)


@dataclass
class BenchStats:
    """Everything one load-generator process measured; ``merge`` combines workers."""

    runs_started: int = 0
    runs_finished: int = 0
    runs_cancelled: int = 0
    events: int = 0
    bytes: int = 0
    reconnects: int = 0
    heartbeats: int = 0
    latency: Histogram = field(default_factory=Histogram)
    first_event: Histogram = field(default_factory=Histogram)
    start_latency: Histogram = field(default_factory=Histogram)
    #: a subscriber's first request to its terminal event.
    stream_duration: Histogram = field(default_factory=Histogram)
    #: receipt minus the event's *scheduled* emission time (paced demo runs only):
    #: the latency a user of the requested rate sees, including the producer's lag.
    schedule_latency: Histogram = field(default_factory=Histogram)
    #: the producer's ``ts`` minus the event's scheduled time, once per event
    #: (the run's first subscriber records it): how far the producer fell behind.
    producer_lag: Histogram = field(default_factory=Histogram)
    violations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATION_KINDS, 0))
    examples: list[str] = field(default_factory=list)
    #: events received per whole second since the start (index = second).
    timeline: list[int] = field(default_factory=list)

    def violation(self, kind: str, detail: str) -> None:
        """Count a violation; keep the first few details for the report."""
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")

    def tick(self, second: int, events: int) -> None:
        timeline = self.timeline
        if second >= len(timeline):
            timeline.extend([0] * (second + 1 - len(timeline)))
        timeline[second] += events

    @property
    def failed(self) -> bool:
        return any(self.violations.values())

    def merge(self, other: BenchStats) -> None:
        for name in (
            "runs_started",
            "runs_finished",
            "runs_cancelled",
            "events",
            "bytes",
            "reconnects",
            "heartbeats",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.merge(other.latency)
        self.first_event.merge(other.first_event)
        self.start_latency.merge(other.start_latency)
        self.stream_duration.merge(other.stream_duration)
        self.schedule_latency.merge(other.schedule_latency)
        self.producer_lag.merge(other.producer_lag)
        for kind, n in other.violations.items():
            self.violations[kind] = self.violations.get(kind, 0) + n
        self.examples = (self.examples + other.examples)[:20]
        for second, n in enumerate(other.timeline):
            self.tick(second, n)

    def to_json(self) -> dict[str, Any]:
        return {
            "runs_started": self.runs_started,
            "runs_finished": self.runs_finished,
            "runs_cancelled": self.runs_cancelled,
            "events": self.events,
            "bytes": self.bytes,
            "reconnects": self.reconnects,
            "heartbeats": self.heartbeats,
            "latency": self.latency.to_json(),
            "first_event": self.first_event.to_json(),
            "start_latency": self.start_latency.to_json(),
            "stream_duration": self.stream_duration.to_json(),
            "schedule_latency": self.schedule_latency.to_json(),
            "producer_lag": self.producer_lag.to_json(),
            "violations": dict(self.violations),
            "examples": list(self.examples),
            "timeline": list(self.timeline),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchStats:
        stats = cls()
        for name in (
            "runs_started",
            "runs_finished",
            "runs_cancelled",
            "events",
            "bytes",
            "reconnects",
            "heartbeats",
        ):
            setattr(stats, name, int(data[name]))
        stats.latency = Histogram.from_json(data["latency"])
        stats.first_event = Histogram.from_json(data["first_event"])
        stats.start_latency = Histogram.from_json(data["start_latency"])
        stats.stream_duration = Histogram.from_json(data["stream_duration"])
        stats.schedule_latency = Histogram.from_json(data["schedule_latency"])
        stats.producer_lag = Histogram.from_json(data["producer_lag"])
        stats.violations.update({k: int(v) for k, v in data["violations"].items()})
        stats.examples = [str(x) for x in data["examples"]]
        stats.timeline = [int(x) for x in data["timeline"]]
        return stats
