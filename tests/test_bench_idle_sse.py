"""benchmarks/bench_idle_sse.py runs end to end at tiny sizes: its connections really are idle SSE
readers (each got its frames or its headers), its RSS points are one per step, its tracemalloc
breakdown names files. The figures themselves are never asserted."""

from __future__ import annotations

import math

import pytest

from benchmarks import bench_idle_sse


@pytest.mark.parametrize("kind", ["durable", "runs"])
def test_idle_sse_benchmark_smoke(kind: str) -> None:
    points = bench_idle_sse.measure(kind, [5, 10], bench_idle_sse.ROOT)
    assert [count for count, _ in points] == [0, 5, 10]
    assert all(rss > 0 for _, rss in points)
    assert math.isfinite(bench_idle_sse.slope(points))


def test_idle_sse_breakdown_smoke() -> None:
    by_file = bench_idle_sse.breakdown("durable", 5)
    assert any("trio" in name for name in by_file)
