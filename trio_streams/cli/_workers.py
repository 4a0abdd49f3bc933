"""``trio-streams serve --workers N`` as a command: the socket bound, the shared store
started, the supervisor (:mod:`._supervisor`) run, everything removed after.

The workers share ``--redis-url``'s Redis, or else an embedded redis-server
started here: persistent in ``--data-dir``, otherwise ephemeral (a scratch
directory, no files), with ``maxmemory`` from the plan's memory split
(``ServePlan._split_memory``) and in a session of its own, so that a
terminal's Ctrl-C does not stop it before the workers have flushed to it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._exception_groups import collapse
from ._hypercorn import close_sockets, hypercorn_config, listen, listen_error
from ._plan import ServePlan, ServeStartupError
from ._supervisor import Supervisor, logger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def worker_args(args: argparse.Namespace, plan: ServePlan, redis_url: str) -> argparse.Namespace:
    """``serve``'s flags as one worker runs them: on ``redis_url``, with its share of the memory."""
    worker = argparse.Namespace(**vars(args))
    worker.__dict__.pop("func", None)  # the command's entry point: not the worker's business
    worker.workers = 1
    worker.store = "redis"
    worker.redis_url = redis_url
    worker.data_dir = None
    worker.max_memory = plan.options["max_memory"]
    return worker


@asynccontextmanager
async def _shared_store(plan: ServePlan) -> AsyncIterator[str]:
    """The URL of the Redis the workers share: ``--redis-url``'s, or an embedded
    redis-server's (persistent in ``--data-dir``, else ephemeral), stopped after the block.

    Raises:
        ServeStartupError: the embedded redis-server cannot be found or started.
    """
    if plan.redis_url is not None:
        await trio.lowlevel.checkpoint()
        yield plan.redis_url
        return
    embedded = plan.embedded_redis
    assert embedded is not None
    from ..log.redis._server import open_embedded_redis

    with tempfile.TemporaryDirectory(prefix="trio-streams-redis-") as scratch:
        data_dir = embedded.data_dir or Path(scratch)
        entered = False
        try:
            async with open_embedded_redis(
                data_dir,
                persistent=embedded.data_dir is not None,
                maxmemory=embedded.maxmemory,
                new_session=True,  # stopped by us after the workers' flush, not by Ctrl-C before it
            ) as url:
                entered = True
                yield url
        except (OSError, RuntimeError) as exc:
            if entered:
                raise
            raise ServeStartupError(f"the embedded redis-server: {exc}") from None
        except BaseExceptionGroup as group:
            # Its supervising nursery raises a failed start (say --data-dir is a
            # file) as a group of one: that one is the startup error, not a traceback.
            sole = None if entered else collapse(group)
            if isinstance(sole, OSError | RuntimeError):
                raise ServeStartupError(f"the embedded redis-server: {sole}") from None
            raise


async def supervise(plan: ServePlan, args: argparse.Namespace) -> int:
    """Bind, start the shared store and the workers, run until SIGTERM/SIGINT; the exit status.

    Cancellation: the workers are killed, the store stopped, the directory removed.
    """
    hyper = hypercorn_config(
        plan.host, plan.port, access_log=False, certfile=plan.certfile, keyfile=plan.keyfile
    )
    try:
        sockets = listen(plan.host, plan.port, backlog=hyper.backlog, secure=plan.certfile is not None)
    except OSError as exc:
        print(f"trio-streams serve: error: {listen_error(plan.host, plan.port, exc)}", file=sys.stderr)
        return 1
    (sock,) = (*sockets.secure_sockets, *sockets.insecure_sockets)
    workers_dir = Path(tempfile.mkdtemp(prefix="trio-streams-workers-"))  # mode 0700
    try:
        logger.info(
            "store: %s; starting %d workers (workers' directory %s)",
            plan.store_label,
            plan.workers,
            workers_dir,
        )
        async with _shared_store(plan) as redis_url:
            supervisor = Supervisor(plan, worker_args(args, plan, redis_url), sock.fileno(), workers_dir)
            return await supervisor.run()
    except ServeStartupError as exc:
        print(f"trio-streams serve: error: {exc}", file=sys.stderr)
        return 1
    finally:
        close_sockets(sockets)
        shutil.rmtree(workers_dir, ignore_errors=True)


def run_supervisor(plan: ServePlan, args: argparse.Namespace) -> int:
    """``serve --workers N`` (N > 1): run the supervisor; return the exit status."""
    return trio.run(supervise, plan, args)
