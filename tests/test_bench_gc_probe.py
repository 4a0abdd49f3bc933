"""``bench_workers_live --gc-profile``: the probe records a real process's collections, and the
benchmark counts those that ended inside its measurements."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from benchmarks.bench_workers_live import GC_DIR_ENV, GC_PROBE, gc_pauses

if TYPE_CHECKING:
    from pathlib import Path

# Three explicit full collections (gen 2) and two young ones (gen 0), then a normal exit.
SCRIPT = "import gc\nfor g in (2, 2, 2, 0, 0):\n    gc.collect(g)\n"


def probed(gc_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{GC_PROBE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env[GC_DIR_ENV] = str(gc_dir)
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, timeout=30)


def test_the_probe_records_each_collection_with_its_generation(tmp_path: Path):
    probed(tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1  # one file per process, named by its pid
    pauses = gc_pauses(tmp_path, [(0.0, math.inf)])
    # The interpreter's own start-up may add collections of its own: at least ours.
    assert len(pauses[2]) >= 3
    assert len(pauses[0]) >= 2
    assert all(ms >= 0 for durations in pauses.values() for ms in durations)


def test_only_the_collections_inside_a_measurement_count(tmp_path: Path):
    probed(tmp_path)
    assert gc_pauses(tmp_path, [(0.0, 1.0)]) == {0: [], 1: [], 2: []}


def test_without_the_variable_the_probe_writes_nothing(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(GC_PROBE)}
    env.pop(GC_DIR_ENV, None)
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, timeout=30, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
