"""The hub benchmark runs end to end at small sizes (its figures are not asserted)."""

from __future__ import annotations

import math

import trio

from benchmarks.bench_hub import QUICK, Sizes, report, run_all


def test_hub_benchmark_smoke() -> None:
    sizes = Sizes(
        **{**QUICK.__dict__, "events": 300, "replay": 500, "runs": 10, "paced_seconds": 0.05, "idle": 50}
    )
    results = trio.run(run_all, sizes)
    table = report(results)
    # Every scenario produced a finite figure on both sides and a table row.
    for measure, hub_latency, bare_latency in results["fanout"]:
        assert len(hub_latency) == len(bare_latency) == measure.work
        assert math.isfinite(measure.rate(measure.hub))
        assert math.isfinite(measure.rate(measure.bare))
        assert measure.name in table
    for _, _, hub_paced, bare_paced in results["paced"]:
        assert len(hub_paced) == len(bare_paced) > 0
    assert results["memory"]["subscriber"][0] > 0
    assert "replay of a finished 500-event run" in table
