"""The examples the README shows actually run and print what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_every_event_then_the_result() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines() == [
        "1 token Hello",
        "2 token  from",
        "3 token  a",
        "4 token  detached",
        "5 token  run",
        "6 done {'result': 'Hello from a detached run'}",
        "done 'Hello from a detached run'",
    ]
