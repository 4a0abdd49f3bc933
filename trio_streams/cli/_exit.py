"""How ``trio-streams serve`` ends: its signals, and the exits that do not wait."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import NoReturn

import trio

from ._hypercorn import EXIT_BUDGET

logger = logging.getLogger("trio_streams.serve")


async def watch_signals(shutdown: trio.Event, grace: float) -> None:
    """The first SIGTERM/SIGINT sets ``shutdown``; a second one exits at once (128 + signal number).

    Cancellation: stops watching (the signals' default handling returns).
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not shutdown.is_set():
                logger.warning(
                    "%s: shutting down (live runs get %gs to finish; again to exit at once)", name, grace
                )
                shutdown.set()
            else:
                logger.error("second %s: exiting at once; runs still live are lost", name)
                _exit_now(128 + signum)


def exit_stuck() -> NoReturn:
    """Exit the process (status 0): connections are still open :data:`EXIT_BUDGET` after the drain.

    Everything worth waiting for is done by then (runs finalized, store
    flushed); what can still hold the process is a connection whose client
    stopped reading: Hypercorn shields its socket writes, so no deadline
    ends them. The app's own shutdown, after the connections, is skipped.
    """
    logger.warning(
        "connections still open %gs after the drain (clients not reading?): exiting without them; "
        "every run was finalized and the store flushed",
        EXIT_BUDGET,
    )
    _exit_now(0)


def _exit_now(status: int) -> NoReturn:
    """End the process at once (no unwinding: something may be stuck), logs and output flushed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the exit
            stream.flush()
    os._exit(status)
