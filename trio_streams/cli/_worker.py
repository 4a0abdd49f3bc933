"""One worker of ``trio-streams serve --workers N``: ``python -m trio_streams.cli._worker``.

Started by the supervisor (:mod:`._supervisor`), never by hand: its stdin
carries a pickled :class:`~._supervisor.WorkerSpec` (the flags, the
inherited listening socket, the ready pipe) and then stays open as the
lifeline. The worker is an ordinary ``serve`` on the shared Redis, on the
inherited socket: it writes ``ready URL...`` to the ready pipe once it
serves, shuts down gracefully on SIGTERM (a second one: at once), and also
when its lifeline ends (the supervisor is gone).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from typing import TYPE_CHECKING

import trio

from ._logging import configure_logging
from ._plan import ServeConfigError, ServePlan, ServeStartupError
from ._serve import serve_command

if TYPE_CHECKING:
    from ._supervisor import WorkerSpec

logger = logging.getLogger("trio_streams.serve")


async def watch_lifeline(shutdown: trio.Event) -> None:
    """Set ``shutdown`` when stdin ends: the supervisor closed it, or died.

    Cancellation: stops watching.
    """
    # The supervisor writes nothing after the spec: what comes next is the end.
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as lifeline:
        while await lifeline.receive_some(256):
            pass
    if not shutdown.is_set():
        logger.warning("the supervisor is gone: shutting down")
        shutdown.set()


def main() -> int:
    """Run the worker the spec on stdin describes; return its exit status (1: it could not start)."""
    spec: WorkerSpec = pickle.load(sys.stdin.buffer)  # from our own supervisor, through its pipe
    args = spec.args
    configure_logging(args.log_level, args.log_format, worker=spec.worker_id)
    try:
        plan = ServePlan.from_args(args)
        plan.listen_fd = spec.listen_fd
        plan.worker_id = spec.worker_id
        app, streams = plan.build_app()
    except (ServeConfigError, ServeStartupError) as exc:
        print(f"trio-streams serve: worker {spec.worker_id}: error: {exc}", file=sys.stderr)
        return 1

    def announce(urls: list[str]) -> None:
        os.write(spec.ready_fd, ("ready " + " ".join(urls) + "\n").encode())
        os.close(spec.ready_fd)

    return trio.run(lambda: serve_command(plan, app, streams, announce=announce, watch=watch_lifeline))


if __name__ == "__main__":
    sys.exit(main())
