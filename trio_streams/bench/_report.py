"""What ``trio-streams bench`` prints: the live progress line and the final summary table."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, TextIO

import trio

from ._pace import behind_line
from ._plot import missing_reason

if TYPE_CHECKING:
    from ._load import Load


async def progress(load: Load, out: TextIO) -> None:
    """A live line on a terminal; a plain line every 5 s otherwise."""
    tty = out.isatty()
    interval = 0.5 if tty else 5.0
    previous = 0
    last = time.perf_counter()
    while True:
        await trio.sleep(interval)
        stats = load.stats
        now = time.perf_counter()
        rate = (stats.events - previous) / (now - last)
        previous, last = stats.events, now
        p99 = stats.latency.percentile(0.99)
        violations = sum(stats.violations.values())
        line = (
            f"[{now - load.started_at:6.1f}s] runs {stats.runs_started} started, "
            f"{stats.runs_finished} finished, {load.live_runs} live | {rate:,.0f} events/s "
            f"| p99 {_ms(p99)} | violations {violations}"
        )
        print(f"\r{line}\x1b[K" if tty else line, end="" if tty else "\n", file=out, flush=True)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def render_summary(result: dict[str, Any]) -> str:
    """The human-readable table printed at the end."""
    runs = result["runs"]
    rows = [
        ("elapsed", f"{result['elapsed_seconds']:.2f} s"),
        (
            "runs started / finished / cancelled",
            f"{runs['started']} / {runs['finished']} / {runs['cancelled']}",
        ),
        ("events delivered", f"{result['events']:,}"),
        ("events/s requested / achieved", _rates(result["pace"])),
        ("reconnects", f"{result['reconnects']:,}"),
    ]
    for label, key in (
        ("latency", "latency_seconds"),
        ("latency from the schedule", "latency_from_schedule_seconds"),
        ("producer lag behind schedule", "producer_lag_seconds"),
        ("time to first event", "first_event_seconds"),
        ("run start latency", "start_latency_seconds"),
        ("whole stream", "stream_seconds"),
    ):
        summary = result[key]
        missing = missing_reason(result, key)
        rows.append(
            (
                f"{label} p50 / p90 / p99 / max",
                f"none: {missing}"
                if missing is not None
                else " / ".join(_ms(summary[q]) for q in ("p50", "p90", "p99", "max")),
            )
        )
    server = result["server"]
    if server is not None:
        if "error" in server:
            rows.append(("server", server["error"]))
        else:
            processes = server["processes"]
            rows.append(
                (
                    "server CPU seconds",
                    f"{server['cpu_seconds']:.2f} ({processes} process{'es' if processes != 1 else ''})",
                )
            )
            rows.append(
                (
                    "server RSS at start / peak",
                    f"{server['start_rss_bytes'] / 2**20:.1f} / {server['peak_rss_bytes'] / 2**20:.1f} MiB",
                )
            )
    violations = {k: v for k, v in result["violations"].items() if v}
    rows.append(("violations", ", ".join(f"{k}={v}" for k, v in violations.items()) or "none"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    lines += [f"  {example}" for example in result["violation_examples"][:10]]
    behind = behind_line(result["pace"])
    if behind is not None:
        lines.append(behind)
    lines.append("RESULT: " + _VERDICTS[result["exit_status"]])
    return "\n".join(lines)


_VERDICTS = {
    0: "ok",
    1: "FAILED (stream violations above)",
    3: "BEHIND (the server did not keep the requested pace; see above)",
}


def _rates(pace_result: dict[str, Any]) -> str:
    achieved = f"{pace_result['achieved_events_per_second']:,.0f}"
    requested = pace_result["requested_events_per_second"]
    if requested is None:
        return f"none ({pace_result['not_judged']}) / {achieved}"
    return f"{requested:,.0f} / {achieved} ({pace_result['achieved_fraction']:.0%})"
