"""``--plot``: the latency histogram and events/s over time, with the run's parameters.

What is drawn is computed first, without matplotlib (:func:`plot_data`):
the title (the run's parameters), the throughput series over *whole*
seconds only (the run's last, partial second would read as a drop to zero;
a run shorter than a second is one segment at its mean rate), the
requested rate (or why there is none), and a stated reason wherever a
measurement is missing. :func:`write_plot` only draws that. matplotlib is an
optional extra (``pip install 'trio-streams[plot]'``), imported only there.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._pace import requested_rate
from ._stats import Histogram

#: Which count of the result each measurement needs, to say why it is missing.
_NEEDS = {
    "latency_seconds": "latency",
    "first_event_seconds": "first event",
    "start_latency_seconds": "run start",
    "stream_seconds": "whole stream",
    "latency_from_schedule_seconds": "scheduled",
    "producer_lag_seconds": "producer lag",
}


@dataclass(frozen=True, slots=True)
class PlotData:
    """Everything the figure shows, as data (tests check this, not pixels).

    Attributes:
        title: the run's parameters, one or two lines.
        seconds: the start of each whole second drawn (0, 1, 2, ...).
        events_per_second: events delivered in each of those seconds.
        partial_second: the length of the last, partial second left out (0 if none).
        mean_segment: a run shorter than one second: ``(duration, events/s)``
            drawn as one segment at its mean rate, instead of a dot.
        requested: the events/s the load asked for, or ``None``.
        requested_label: what ``requested`` is (or why there is none).
        latency_missing: why there is no latency histogram, or ``None``.
        schedule_missing: why there is no latency-from-the-schedule histogram
            (drawn beside the first one), or ``None``.
        verdict: ok, FAILED or BEHIND, as the summary's RESULT line says it.
    """

    title: str
    seconds: list[int]
    events_per_second: list[int]
    partial_second: float
    mean_segment: tuple[float, float] | None
    requested: float | None
    requested_label: str
    latency_missing: str | None
    schedule_missing: str | None
    verdict: str


def missing_reason(result: dict[str, Any], key: str) -> str | None:
    """Why the ``key`` summary (``latency_seconds``, ...) of ``result`` has no samples; ``None`` if it has."""
    if result[key]["count"]:
        return None
    if key == "start_latency_seconds" or result["runs"]["started"] == 0:
        return "no run started"
    if result["events"] == 0:
        return "no events delivered"
    if key == "latency_seconds":
        return "no event carried a producer timestamp (ts), as the demo producer's do"
    if key == "stream_seconds":
        return "no stream reached its terminal event"
    if key in ("latency_from_schedule_seconds", "producer_lag_seconds"):
        requested, label = requested_rate(result["options"])
        if requested is None:
            return "no schedule: " + label.removeprefix("no requested rate: ")
        return "no paced token was delivered"
    return f"no {_NEEDS[key]} measured"


def describe(result: dict[str, Any]) -> str:
    """The run's parameters as a title: what load, how long, and the verdict."""
    o = result["options"]
    if o["producer"] == "demo" and o["input"] is None:
        rate = f"{o['rate']:g} tokens/s" if o["rate"] else "as fast as it can"
        load = f"{o['tokens']} tokens x {o['size']} B at {rate}"
    else:
        load = f"producer {o['producer']}"
    first = f"{o['runs']} runs x {o['subscribers_per_run']} subscribers, {load}"
    extras = [f"{result['elapsed_seconds']:.2f} s"]
    if o["duration"] is not None:
        extras.append(f"--duration {o['duration']:g}")
    if o["cancel_fraction"]:
        extras.append(f"--cancel-fraction {o['cancel_fraction']:g}")
    if o["reconnect_every"]:
        extras.append(f"--reconnect-every {o['reconnect_every']}")
    if o["replay"]:
        extras.append("--replay")
    extras.append(f"{result['workers']} worker{'s' if result['workers'] != 1 else ''}")
    extras.append(verdict(result))
    return f"{first}\n{', '.join(extras)}"


def verdict(result: dict[str, Any]) -> str:
    """ok, FAILED (violations) or BEHIND (with how far), as a few words."""
    p = result["pace"]
    behind = None
    if p["behind"]:
        behind = f"BEHIND: p99 {p['schedule_p99_seconds']:.2f} s after schedule > {p['max_lag_seconds']:g} s"
    if result["exit_status"] == 1:
        return "FAILED: stream violations" + (f"; {behind}" if behind else "")
    return behind or "ok"


def plot_data(result: dict[str, Any]) -> PlotData:
    """What the figure for a ``trio-streams bench`` result shows."""
    elapsed = float(result["elapsed_seconds"])
    timeline: list[int] = list(result["events_per_second_timeline"])
    whole = math.floor(elapsed)
    # Seconds with no events at the end were never ticked: they are zeros.
    # Events ticked at or past the last whole second belong to the partial one.
    counts = (timeline + [0] * whole)[:whole]
    mean_segment = None
    if whole == 0 and elapsed > 0:
        mean_segment = (elapsed, sum(timeline) / elapsed)
    requested, requested_label = requested_rate(result["options"])
    return PlotData(
        title=describe(result),
        seconds=list(range(whole)),
        events_per_second=counts,
        partial_second=0.0 if whole == 0 else elapsed - whole,
        mean_segment=mean_segment,
        requested=requested,
        requested_label=requested_label,
        latency_missing=missing_reason(result, "latency_seconds"),
        schedule_missing=missing_reason(result, "latency_from_schedule_seconds"),
        verdict=verdict(result),
    )


def write_plot(result: dict[str, Any], path: str) -> None:
    """Write the two-panel figure for ``result`` to ``path`` (PNG, or SVG for a ``.svg`` path).

    Text stays text in an SVG (searchable); each drawn series has an id
    (``throughput``, ``requested-rate``, ``latency-<n>`` for each histogram bar,
    ``schedule-<n>`` for each bar of latency from the schedule).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    data = plot_data(result)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=80)
        _latency_panel(left, result, data)
        _throughput_panel(right, result, data)
        figure.suptitle(data.title, fontsize=9)
        figure.tight_layout()
        figure.savefig(path, format="svg" if Path(path).suffix.lower() == ".svg" else "png")
        plt.close(figure)


def _bars(axes: Any, histogram: Histogram, gid: str, color: str, label: str) -> None:
    buckets = sorted(histogram.counts)
    edges = [Histogram._value(b) * 1000 for b in buckets]
    bars = axes.bar(
        edges,
        [histogram.counts[b] for b in buckets],
        width=[e * 0.02 for e in edges],
        color=color,
        alpha=0.7,
        label=label,
    )
    for index, bar in enumerate(bars):
        bar.set_gid(f"{gid}-{index}")


def _latency_panel(axes: Any, result: dict[str, Any], data: PlotData) -> None:
    histogram = Histogram.from_json(result["raw"]["latency"])
    if data.latency_missing is None:
        _bars(axes, histogram, "latency", "tab:blue", "from the producer's ts")
        if data.schedule_missing is None:
            schedule = Histogram.from_json(result["raw"]["schedule_latency"])
            p99 = schedule.percentile(0.99) * 1000
            _bars(axes, schedule, "schedule", "tab:orange", f"from the schedule (p99 {p99:.2f} ms)")
        else:
            axes.plot([], [], " ", label=f"none from the schedule: {data.schedule_missing}")
        axes.set_xscale("log")
        for q, style in ((0.5, "--"), (0.99, ":")):
            value = histogram.percentile(q) * 1000
            axes.axvline(
                value, color="black", linestyle=style, linewidth=1, label=f"p{round(q * 100)} {value:.2f} ms"
            )
        axes.legend(fontsize=7)
    else:
        reason = textwrap.fill(f"no latency: {data.latency_missing}", 44)
        axes.text(0.5, 0.5, reason, ha="center", va="center", fontsize=9, transform=axes.transAxes)
        axes.set_xticks([])
        axes.set_yticks([])
    axes.set_xlabel("per-event latency (ms, log scale)")
    axes.set_ylabel("events")
    axes.set_title("latency", fontsize=10)


def _throughput_panel(axes: Any, result: dict[str, Any], data: PlotData) -> None:
    if data.mean_segment is not None:
        duration, rate = data.mean_segment
        (line,) = axes.plot(
            [0, duration], [rate, rate], color="tab:green", label=f"mean over the whole {duration:.2f} s run"
        )
        axes.set_xlim(0, 1)
    elif data.seconds:
        # One step per whole second: [t, t+1) at that second's count.
        xs = [*data.seconds, data.seconds[-1] + 1]
        ys = [*data.events_per_second, data.events_per_second[-1]]
        label = "events per whole second"
        if data.partial_second:
            label += f" (the last {data.partial_second:.2f} s, partial, not drawn)"
        (line,) = axes.step(xs, ys, where="post", color="tab:green", label=label)
    else:
        line = None
        axes.text(0.5, 0.5, "no time elapsed", ha="center", va="center", transform=axes.transAxes)
    if line is not None:
        line.set_gid("throughput")
    if data.requested is not None:
        axes.axhline(
            data.requested, color="tab:red", linestyle="--", linewidth=1, label=data.requested_label
        ).set_gid("requested-rate")
    else:
        axes.plot([], [], " ", label=data.requested_label)  # the reason, in the legend
    axes.legend(fontsize=7, loc="lower right")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("events/s")
    axes.set_title(f"throughput (mean {result['events_per_second']:,.0f}/s)", fontsize=10)
    axes.set_ylim(bottom=0)
