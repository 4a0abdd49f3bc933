"""Did the load keep the pace it asked for? The schedule, the verdict, the exit status.

A paced demo run (``--rate R``) asks for token ``seq`` at ``origin + (seq - 1) / R``,
where ``origin`` is the moment the load generator sent ``POST /v1/runs``: the
user asked then, so a slow start is part of the lag. Measuring latency only
from the producer's own timestamp hides an overloaded server (the producer
simply emits late, and each late event looks fresh: "coordinated omission");
measured from the schedule, every second the server falls behind shows up.

The result falls *behind* when the p99 of latency from the schedule exceeds
``--max-lag``; that is its own exit status, distinct from stream violations.
"""

from __future__ import annotations

import math
from typing import Any

#: Exit statuses of ``trio-streams bench`` (documented in ``--help`` and docs/bench.md).
EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_BEHIND = 3

#: ``--max-lag``'s default (seconds): far above any healthy p99, far below a collapse.
DEFAULT_MAX_LAG = 1.0


def schedule_interval(options: dict[str, Any]) -> float | None:
    """Seconds between a run's scheduled tokens, or ``None`` when there is no schedule.

    Only the demo producer with the flags' input has one (``--rate`` > 0); a
    ``--replay`` load subscribes after the run ended, so it has none either.
    """
    if options["replay"] or options["producer"] != "demo" or options["input"] is not None:
        return None
    rate = options["rate"]
    return 1.0 / rate if rate else None


def scheduled_at(origin: float, seq: int, interval: float) -> float:
    """When token ``seq`` (ids count from 1) was due: ``origin + (seq - 1) * interval``."""
    return origin + (seq - 1) * interval


def requested_rate(options: dict[str, Any]) -> tuple[float | None, str]:
    """The events/s the load asked for (runs x subscribers x tokens/s), or ``None`` and why not."""
    if options["replay"]:
        return None, "no requested rate: --replay reads finished runs"
    if options["producer"] != "demo" or options["input"] is not None:
        return None, f"no requested rate: producer {options['producer']!r} with its own input"
    if not options["rate"]:
        return None, "no requested rate: tokens as fast as the server can (--rate 0)"
    runs, subscribers, rate = options["runs"], options["subscribers_per_run"], options["rate"]
    value = float(runs * subscribers * rate)
    return value, f"requested {value:,.0f}/s = {runs} runs x {subscribers} subscribers x {rate:g} tokens/s"


def pace(
    options: dict[str, Any], achieved: float, schedule_p99: float | None, max_lag: float
) -> dict[str, Any]:
    """The ``pace`` object of the result: requested vs achieved rate and the verdict.

    ``schedule_p99`` is the p99 of latency from the schedule (``None`` without
    samples). ``behind`` is true only when there was a schedule and that p99
    exceeded ``max_lag``; ``reason`` says why there was nothing to judge.
    """
    requested, label = requested_rate(options)
    reason = None
    if requested is None:
        reason = label.removeprefix("no requested rate: ")
    elif schedule_p99 is None:
        reason = "no paced token was delivered"
    return {
        "requested_events_per_second": requested,
        "achieved_events_per_second": achieved,
        "achieved_fraction": None if not requested else achieved / requested,
        "schedule_p99_seconds": schedule_p99,
        "max_lag_seconds": max_lag,
        "behind": reason is None and schedule_p99 is not None and schedule_p99 > max_lag,
        "not_judged": reason,
    }


def exit_status(violations: bool, behind: bool) -> int:
    """Violations win (a wrong stream is worse than a slow one); then behind; else ok."""
    if violations:
        return EXIT_VIOLATION
    return EXIT_BEHIND if behind else EXIT_OK


def behind_line(pace_result: dict[str, Any]) -> str | None:
    """The one line that says the load fell behind, or ``None`` if it did not."""
    if not pace_result["behind"]:
        return None
    requested = pace_result["requested_events_per_second"]
    achieved = pace_result["achieved_events_per_second"]
    return (
        f"BEHIND: p99 latency from the schedule {_seconds(pace_result['schedule_p99_seconds'])} > "
        f"--max-lag {pace_result['max_lag_seconds']:g} s; achieved {achieved:,.0f} of "
        f"{requested:,.0f} events/s requested ({achieved / requested:.0%})"
    )


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if not math.isnan(value) else "-"
