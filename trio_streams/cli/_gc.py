"""The garbage collector of a serving process: ``serve --gc-threshold``.

Under live load a server allocates container objects (events, dicts,
frames) faster than it frees them, and CPython's cyclic collector runs by
count: every ``threshold0`` net allocations a generation-0 pass, every
``threshold1`` of those a generation-1 pass, and a full pass when
``threshold2`` generation-1 passes have run *and* the objects promoted since
the last full pass exceed a quarter of those that survived it. A pass walks
every object of the generations it collects. Under live load most of what
a server allocates and keeps is its runs' logs (events stay for replay), so
a full pass walks all of them: at 50 runs x 200 events/s, 2 workers, each
stopped the worker's event loop for 150-550 ms on a loaded machine
(benchmarks/RESULTS.md, "GC pauses"), the tail of the live latency.

:func:`tune_gc`, once the app has started (in every worker): one full
collection, then :func:`gc.freeze` (everything alive at startup -- modules,
the app, the store's clients -- moves to the permanent generation, which no
pass walks again), then :data:`DEFAULT_THRESHOLD`: a generation-0 pass per
5,000 net allocations (not 700), a generation-1 pass per 5 of those (so it
walks at most ~25,000 young objects: tens of ms at worst, measured), and a
full pass only after 100 generation-1 passes (2.5M net allocations; minutes
at that load) and Python's own long-lived check. Cyclic garbage is still
collected; the permanent generation only holds what was alive at startup.
"""

from __future__ import annotations

import argparse
import gc
import logging

logger = logging.getLogger("trio_streams.serve")

#: ``serve``'s collector thresholds unless ``--gc-threshold`` says otherwise
#: (Python's own are :data:`PYTHON_THRESHOLD`).
DEFAULT_THRESHOLD: tuple[int, int, int] = (5_000, 5, 100)
PYTHON_THRESHOLD: tuple[int, int, int] = (700, 10, 10)


def gc_threshold_arg(text: str) -> tuple[int, int, int] | None:
    """``--gc-threshold``: ``G0[,G1[,G2]]`` (unset ones keep Python's), or ``off`` (no tuning at all)."""
    if text.strip().lower() == "off":
        return None
    parts = [part.strip() for part in text.split(",")]
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"one to three comma-separated integers, or off; not {text!r}")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not integers: {text!r} (e.g. 20000,20,10, or off)") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"each threshold must be at least 1: {text!r}")
    g0, g1, g2 = [*values, *PYTHON_THRESHOLD[len(values) :]]
    return g0, g1, g2


def tune_gc(threshold: tuple[int, int, int] | None) -> None:
    """Freeze what is alive now and set the collector's thresholds; ``None``: leave the collector alone.

    Called once, after the app started (its objects exist) and before the
    first request: the full collection it runs takes a few tens of ms.
    """
    if threshold is None:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    logger.info(
        "gc: %d objects frozen, thresholds %s",
        gc.get_freeze_count(),
        ",".join(map(str, threshold)),
    )
