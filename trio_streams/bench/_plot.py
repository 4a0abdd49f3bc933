"""``--plot``: a PNG with the latency histogram and events/s over time.

matplotlib is an optional extra (``pip install 'trio-streams[plot]'``); this
module is imported only when a plot is asked for.
"""

from __future__ import annotations

from typing import Any

from ._stats import Histogram


def write_plot(result: dict[str, Any], path: str) -> None:
    """Write the two-panel figure for a ``trio-streams bench`` result to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    histogram = Histogram.from_json(result["raw"]["latency"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    if histogram.count:
        buckets = sorted(histogram.counts)
        edges = [Histogram._value(b) * 1000 for b in buckets]
        left.bar(
            edges, [histogram.counts[b] for b in buckets], width=[e * 0.02 for e in edges], color="tab:blue"
        )
        left.set_xscale("log")
        for q, style in ((0.5, "--"), (0.99, ":")):
            value = histogram.percentile(q) * 1000
            left.axvline(
                value, color="black", linestyle=style, linewidth=1, label=f"p{round(q * 100)} {value:.2f} ms"
            )
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=left.transAxes)
    left.set_xlabel("per-event latency (ms, log scale)")
    left.set_ylabel("events")
    left.set_title("latency")
    timeline = result["events_per_second_timeline"]
    right.plot(range(len(timeline)), timeline, color="tab:green", marker="." if len(timeline) < 30 else None)
    right.set_xlabel("seconds since start")
    right.set_ylabel("events/s")
    right.set_title(f"throughput (mean {result['events_per_second']:,.0f}/s)")
    right.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
