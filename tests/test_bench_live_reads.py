"""benchmarks/bench_durable_stores.py's live reads run end to end at tiny sizes: every sample of
each mode (its raw-socket client) got the appended bytes. The figures themselves are never asserted."""

from __future__ import annotations

import pytest

from benchmarks import bench_durable_stores


@pytest.mark.parametrize("mode", ["long-poll", "sse"])
def test_live_read_benchmark_delivers_every_sample(mode: str) -> None:
    proc, base = bench_durable_stores.start_server(bench_durable_stores.ROOT)
    try:
        times = bench_durable_stores.live_latency(base, mode, 5, 0.001)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(times) == 5
    assert all(t > 0 for t in times)
