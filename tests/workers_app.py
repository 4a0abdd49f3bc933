"""An ``--app`` factory for the ``serve --workers`` tests: the usual app, or a
start-up failure in a worker, chosen by the environment the workers inherit.

- ``WORKERS_TEST_FAIL_ALWAYS``: every worker fails to start.
- ``WORKERS_TEST_FAIL_ONCE=PATH``: a worker that finds PATH removes it and
  fails to start (so exactly one start fails, whichever worker it is).
"""

from __future__ import annotations

import os
from typing import Any

from trio_streams.web import create_app as _create_app


def create_app(**options: Any) -> Any:
    if os.environ.get("WORKERS_TEST_FAIL_ALWAYS"):
        raise RuntimeError("this worker is made to fail at start-up")
    once = os.environ.get("WORKERS_TEST_FAIL_ONCE")
    if once:
        try:
            os.remove(once)
        except FileNotFoundError:
            pass
        else:
            raise RuntimeError("this worker is made to fail at start-up, once")
    return _create_app(**options)


def create_bare_app() -> Any:
    """A factory without ``**options``: its workers could not get the shared store."""
    return _create_app()
