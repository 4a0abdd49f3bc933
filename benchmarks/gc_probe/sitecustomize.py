"""Garbage-collection pauses of a benchmarked server: every collection's generation and duration.

Imported at interpreter start (``sitecustomize``) by every Python process
whose ``PYTHONPATH`` starts with this directory, when
``TRIO_STREAMS_BENCH_GC_DIR`` is set: it adds a :data:`gc.callbacks` hook
that records ``(wall-clock end, generation, seconds)`` of each collection
and writes them at exit to ``$TRIO_STREAMS_BENCH_GC_DIR/<pid>.json``
(``benchmarks/bench_workers_live.py --gc-profile`` reads them). A process
that is SIGKILLed writes nothing. Benchmark-only: never on a served path.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time

_DIR = os.environ.get("TRIO_STREAMS_BENCH_GC_DIR")


def _install(directory: str) -> None:
    records: list[tuple[float, int, float]] = []
    started = [0.0]
    clock = time.perf_counter
    wall = time.time

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            records.append((wall(), info["generation"], clock() - started[0]))

    def dump() -> None:
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path, "w") as out:
            json.dump({"argv": sys.argv, "collections": records}, out)

    gc.callbacks.append(callback)
    atexit.register(dump)


if _DIR:
    _install(_DIR)
