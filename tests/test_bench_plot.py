"""What the bench plot shows, as data and in the SVG: parameters in the title, the
requested rate, whole seconds only, a sub-second run as its mean, and a stated
reason for a missing latency (not a dash)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pytest

from trio_streams.bench._cli import build_result
from trio_streams.bench._load import BenchOptions
from trio_streams.bench._plot import plot_data, write_plot
from trio_streams.bench._report import render_summary
from trio_streams.bench._stats import BenchStats

if TYPE_CHECKING:
    from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"


def _result(timeline: list[int], elapsed: float, *, latencies: int = 10, **options: Any) -> dict[str, Any]:
    stats = BenchStats()
    stats.runs_started = stats.runs_finished = 2
    for second, n in enumerate(timeline):
        stats.tick(second, n)
    stats.events = sum(timeline)
    for i in range(latencies):
        stats.latency.add(0.001 * (i + 1))
    defaults: dict[str, Any] = {"runs": 2, "tokens": 30, "rate": 200.0}
    return build_result(BenchOptions(url="http://x", **{**defaults, **options}), stats, elapsed, 1, None)


def test_the_last_partial_second_is_not_drawn():
    data = plot_data(_result([400, 400, 400, 80], 3.2))
    assert (data.seconds, data.events_per_second) == ([0, 1, 2], [400, 400, 400])
    assert data.partial_second == pytest.approx(0.2)
    assert data.mean_segment is None


def test_quiet_whole_seconds_at_the_end_are_zeros():
    data = plot_data(_result([400, 400], 4.5))
    assert (data.seconds, data.events_per_second) == ([0, 1, 2, 3], [400, 400, 0, 0])


def test_a_sub_second_run_is_one_segment_at_its_mean():
    data = plot_data(_result([40], 0.4))
    assert (data.seconds, data.events_per_second) == ([], [])
    assert data.mean_segment == (0.4, 100.0)


def test_the_title_and_the_requested_rate():
    data = plot_data(_result([1], 1.0, runs=3, subscribers_per_run=2, rate=50.0, cancel_fraction=0.25))
    assert data.title.splitlines() == [
        "3 runs x 2 subscribers, 30 tokens x 16 B at 50 tokens/s",
        "1.00 s, --cancel-fraction 0.25, 1 worker, ok",
    ]
    assert data.requested == 300.0
    assert data.requested_label == "requested 300/s = 3 runs x 2 subscribers x 50 tokens/s"
    unlimited = plot_data(_result([1], 1.0, rate=0.0))
    assert unlimited.requested is None
    assert unlimited.requested_label == "no requested rate: tokens as fast as the server can (--rate 0)"
    assert plot_data(_result([1], 1.0, replay=True)).requested is None


def test_a_missing_latency_says_why():
    assert plot_data(_result([5], 1.0)).latency_missing is None
    no_ts = _result([5], 1.0, latencies=0, producer="chat", input={})
    assert plot_data(no_ts).latency_missing == (
        "no event carried a producer timestamp (ts), as the demo producer's do"
    )
    nothing = _result([], 1.0, latencies=0)
    assert plot_data(nothing).latency_missing == "no events delivered"
    text = render_summary(no_ts)
    [line] = [line for line in text.splitlines() if line.startswith("latency p50")]
    reason = "no event carried a producer timestamp (ts), as the demo producer's do"
    assert line.split(None, 8)[-1] == f"none: {reason}"
    assert " - / -" not in text


def _svg(tmp_path: Path, result: dict[str, Any]) -> tuple[str, ET.Element]:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.svg"
    write_plot(result, str(out))
    tree = ET.parse(out).getroot()
    text = " ".join("".join(node.itertext()) for node in tree.iter(f"{SVG}text"))
    return " ".join(text.split()), tree  # lines of one text are separate elements


def _ids(tree: ET.Element) -> set[str]:
    return {node.get("id", "") for node in tree.iter()}


def test_the_svg_shows_it(tmp_path):
    text, tree = _svg(tmp_path, _result([400, 400, 400, 80], 3.2))
    assert "2 runs x 1 subscribers, 30 tokens x 16 B at 200 tokens/s" in text
    assert "requested 400/s = 2 runs x 1 subscribers x 200 tokens/s" in text
    assert "the last 0.20 s, partial, not drawn" in text
    assert {"throughput", "requested-rate", "latency-0"} <= _ids(tree)
    # The throughput line has one step per whole second, and none down to zero.
    path = next(node for node in tree.iter() if node.get("id") == "throughput").find(f".//{SVG}path")
    assert path is not None
    assert path.get("d", "").count("L") == 6  # 3 seconds: up-across pairs after the first point


def test_the_svg_states_the_missing_latency_and_rate(tmp_path):
    text, tree = _svg(tmp_path, _result([40], 0.4, latencies=0, producer="chat", input={}))
    assert "no latency: no event carried a producer timestamp (ts)" in text
    assert "no requested rate: producer 'chat' with its own input" in text
    assert "mean over the whole 0.40 s run" in text
    assert "requested-rate" not in _ids(tree)
