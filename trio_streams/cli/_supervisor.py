"""The supervisor of ``trio-streams serve --workers N``: N worker processes, one listening
socket, one store (the command around it: :mod:`._workers`).

Theory of operation. The supervisor is a trio program that serves nothing
itself. It binds the listening socket (so an address in use, or port 0, is
decided once, before anything starts), starts the store the workers share
(an embedded redis-server unless ``--redis-url`` names one), and starts N
workers: ``python -m trio_streams.cli._worker`` processes that inherit the
socket's file descriptor and accept on it (the kernel's one accept queue:
a connection waiting while a worker restarts is taken by another, never
reset). Each worker is an ordinary ``serve`` on that Redis, so the
cross-instance machinery (follow, cancel, leases, dead owners, key claims)
is what makes the workers one server.

Why an inherited socket and not ``SO_REUSEPORT``: with one socket bound by
the supervisor, ``--bind 127.0.0.1:0`` means one port for every worker, a
worker that dies leaves no hole in the port's accept queues (with
``SO_REUSEPORT`` the connections queued on the dead worker's own socket are
reset), and nobody else can bind the port between two worker starts.

A worker gets, on its stdin, a pickle of its settings (:class:`WorkerSpec`:
the parsed flags with the store replaced by the shared Redis and
``--max-memory`` by the worker's share). The pipe is the supervisor's alone,
and it carries what the command line must not (tokens, a Redis password).
The supervisor keeps the pipe open: it is the worker's lifeline, and its end
(the supervisor died, even by SIGKILL) makes the worker shut down gracefully.
A second pipe tells the supervisor the worker is serving. Workers run in
sessions of their own, so a terminal's Ctrl-C reaches only the supervisor,
which then drains them in order.

Environment of every worker (the metrics contract): ``TRIO_STREAMS_WORKER_ID``
(0..N-1, the slot's, stable across restarts) and ``TRIO_STREAMS_WORKERS_DIR``
(a private directory, mode 0700, that the supervisor creates before the
first worker and removes after the last).

Restarts: a worker that exits while the server is not shutting down is
replaced in its slot after :func:`restart_delay` (0.5 s, doubling per
consecutive failure, at most :data:`RESTART_DELAY_MAX`); a replacement that
stays up :data:`STABLE_AFTER` resets the count. A slot that fails
:data:`MAX_START_FAILURES` times in a row, or any worker that cannot start
at all at first, ends the server with status 1. The replacement is a new
process with a new Redis instance id (host, pid, random): it never inherits
the dead worker's leases, so the dead worker's runs end ``dead`` once their
leases expire, exactly as for any dead instance.

Shutdown: the first SIGTERM/SIGINT sends SIGTERM to every worker (each
drains as ``serve`` does: runs get ``--shutdown-grace``, streams end with
their terminal events, the store is flushed); the supervisor waits for them
within their drain budget plus :data:`DRAIN_MARGIN`, SIGKILLs what remains,
then stops the embedded Redis and removes the workers' directory. A second
signal is passed on (each worker then exits at once) and the supervisor
exits with 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ._hypercorn import CLOSE_GRACE, EXIT_BUDGET
from ._server import APP_SHUTDOWN_BUDGET

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from ._plan import ServePlan

logger = logging.getLogger("trio_streams.serve")

#: The worker's slot, 0..N-1, stable across its restarts (the metrics contract).
WORKER_ID_ENV = "TRIO_STREAMS_WORKER_ID"
#: A private directory (0700) shared by the workers, made and removed by the supervisor.
WORKERS_DIR_ENV = "TRIO_STREAMS_WORKERS_DIR"

#: The first restart delay of a slot; it doubles per consecutive failure.
RESTART_DELAY = 0.5
#: The longest restart delay.
RESTART_DELAY_MAX = 30.0
#: A worker up (serving) this long before it exits resets its slot's failure count.
STABLE_AFTER = 10.0
#: Consecutive failures of one slot after which the server gives up (status 1).
MAX_START_FAILURES = 5
#: How long a worker may take from its start to serving before it counts as failed.
WORKER_START_TIMEOUT = 60.0
#: Beyond a worker's own drain budget, how long the supervisor waits before SIGKILL.
DRAIN_MARGIN = 5.0
#: The longest the store takes to flush at shutdown (the hub's ``store_timeout`` default).
STORE_FLUSH_BUDGET = 10.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is told on its stdin (pickled; the pipe is the supervisor's alone).

    Attributes:
        args: ``serve``'s parsed flags, the store replaced by the shared Redis,
            ``--max-memory`` by the worker's share, ``--workers`` by 1.
        listen_fd: the inherited listening socket.
        ready_fd: the pipe to write ``ready URL...`` to once serving.
        worker_id: the slot.
    """

    args: argparse.Namespace
    listen_fd: int
    ready_fd: int
    worker_id: int


def restart_delay(failures: int) -> float:
    """The delay before a slot's next start after ``failures`` consecutive failures (>= 1)."""
    return float(min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (failures - 1)))


def describe_exit(returncode: int | None) -> str:
    """``status 3`` or ``killed by SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


@dataclass
class _Slot:
    """One worker's place: its id, its current process, its failure count."""

    worker_id: int
    process: trio.Process | None = None
    failures: int = 0
    exits: list[int | None] = field(default_factory=list)


class Supervisor:
    """Starts, restarts and drains the workers (see the module docstring).

    Args:
        plan: the checked plan (``workers`` > 1).
        args: the worker's flags (:func:`worker_args`).
        listen_fd: the bound listening socket.
        workers_dir: the private directory of :data:`WORKERS_DIR_ENV`.
    """

    def __init__(self, plan: ServePlan, args: argparse.Namespace, listen_fd: int, workers_dir: Path) -> None:
        self.plan = plan
        self.args = args
        self.listen_fd = listen_fd
        self.workers_dir = workers_dir
        self.slots = [_Slot(i) for i in range(plan.workers)]
        self.shutdown = trio.Event()  # set by a signal or a failure: start draining
        self.stopping = trio.Event()  # set once draining: exits are expected, no restarts
        self.all_ready = trio.Event()
        self.urls: list[str] = []
        self.failure: str | None = None
        self.forced: int | None = None
        self._ready = 0
        self._finished = 0
        self._all_finished = trio.Event()

    @property
    def drain_budget(self) -> float:
        """The longest a worker's graceful shutdown may take (its ``serve`` bounds it so)."""
        options = self.plan.options
        drain = options["shutdown_grace"] + options.get("finalize_timeout", 10.0) + STORE_FLUSH_BUDGET + 1.0
        return float(drain + CLOSE_GRACE + EXIT_BUDGET + APP_SHUTDOWN_BUDGET)

    async def run(self) -> int:
        """Start every worker, print the URLs once all serve, run until a signal
        or a failure, then drain; return the exit status (see the module docstring).

        Cancellation: every worker is SIGKILLed (no drain) before ``Cancelled`` propagates.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals)
                for slot in self.slots:
                    nursery.start_soon(self._run_slot, slot)
                await self._until_ready_or_shutdown()
                if not self.shutdown.is_set():
                    logger.info("%d workers serving (pids %s)", len(self.slots), self._pids())
                    for url in self.urls:
                        print(f"trio-streams serving on {url}", flush=True)
                await self.shutdown.wait()
                await self._drain()
                nursery.cancel_scope.cancel(reason="workers stopped")
        finally:
            self._signal_all(signal.SIGKILL)  # only what is still running: nothing after a drain
        if self.failure is not None:
            print(f"trio-streams serve: error: {self.failure}", file=sys.stderr, flush=True)
            return 1
        if self.forced is not None:
            return self.forced
        logger.info("stopped cleanly")
        return 0

    def _pids(self) -> str:
        return ", ".join(str(s.process.pid) if s.process else "-" for s in self.slots)

    async def _until_ready_or_shutdown(self) -> None:
        async with trio.open_nursery() as nursery:

            async def wait(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel(reason="ready or shutting down")

            nursery.start_soon(wait, self.all_ready)
            nursery.start_soon(wait, self.shutdown)

    async def _drain(self) -> None:
        """SIGTERM every worker, wait within the drain budget, SIGKILL what remains."""
        self.stopping.set()
        self._signal_all(signal.SIGTERM)
        with trio.move_on_after(self.drain_budget + DRAIN_MARGIN):
            await self._all_finished.wait()
            return
        logger.error(
            "workers still running %gs after SIGTERM: killing them", self.drain_budget + DRAIN_MARGIN
        )
        self.failure = self.failure or "workers did not stop within the shutdown budget"
        self._signal_all(signal.SIGKILL)
        await self._all_finished.wait()

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            process = slot.process
            if process is not None and process.returncode is None:
                process.send_signal(signum)

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
        logger.error("%s: stopping the server", message)
        self.shutdown.set()

    async def _watch_signals(self) -> None:
        """First SIGTERM/SIGINT: drain; a second one is passed on (workers exit at once)."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.shutdown.is_set():
                    logger.warning(
                        "%s: shutting down %d workers (live runs get %gs to finish; again to exit at once)",
                        name,
                        len(self.slots),
                        self.plan.options["shutdown_grace"],
                    )
                    self.shutdown.set()
                else:
                    logger.error("second %s: workers exit at once; runs still live are lost", name)
                    self.forced = 128 + signum
                    self.stopping.set()
                    self._signal_all(signal.SIGTERM)  # a worker's second signal: it exits at once

    async def _run_slot(self, slot: _Slot) -> None:
        """Keep a worker running in ``slot`` until the server stops (see the module docstring)."""
        first = True
        try:
            while not self.stopping.is_set():
                serving_since = await self._start(slot)
                process = slot.process
                assert process is not None
                if serving_since is not None and first:
                    first = False
                    self._ready += 1
                    if self._ready == len(self.slots):
                        self.all_ready.set()
                await process.wait()
                if isinstance(process.stdin, trio.lowlevel.FdStream):
                    process.stdin.close()  # its lifeline: no longer anyone's
                slot.exits.append(process.returncode)
                extra = {"worker": slot.worker_id, "pid": process.pid}
                if self.stopping.is_set():
                    logger.info(
                        "worker %d (pid %d) exited (%s)",
                        slot.worker_id,
                        process.pid,
                        describe_exit(process.returncode),
                        extra=extra,
                    )
                    return
                if first:
                    self._fail(
                        f"worker {slot.worker_id} could not start ({describe_exit(process.returncode)}; "
                        "see its error above)"
                    )
                    return
                stable = serving_since is not None and trio.current_time() - serving_since >= STABLE_AFTER
                slot.failures = 1 if stable else slot.failures + 1
                if slot.failures > MAX_START_FAILURES:
                    self._fail(
                        f"worker {slot.worker_id} failed {MAX_START_FAILURES} times in a row "
                        f"(last: {describe_exit(process.returncode)})"
                    )
                    return
                delay = restart_delay(slot.failures)
                logger.error(
                    "worker %d (pid %d) exited unexpectedly (%s); restarting it in %gs",
                    slot.worker_id,
                    process.pid,
                    describe_exit(process.returncode),
                    delay,
                    extra=extra,
                )
                with trio.move_on_after(delay):
                    await self.stopping.wait()
        finally:
            self._finished += 1
            if self._finished == len(self.slots):
                self._all_finished.set()

    async def _start(self, slot: _Slot) -> float | None:
        """Start a worker in ``slot``; return the time it began serving, or None if
        it exited (or was killed after :data:`WORKER_START_TIMEOUT`) before that.

        The worker's stdin stays open (its lifeline) until this slot's next start
        or the supervisor's exit.
        """
        read_fd, write_fd = os.pipe()
        env = {**os.environ, WORKER_ID_ENV: str(slot.worker_id), WORKERS_DIR_ENV: str(self.workers_dir)}
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trio_streams.cli._worker"],
                stdin=subprocess.PIPE,
                env=env,
                pass_fds=(self.listen_fd, write_fd),
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor alone
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        slot.process = process
        extra = {"worker": slot.worker_id, "pid": process.pid}
        if self.stopping.is_set():  # the drain began while it was being spawned
            process.send_signal(signal.SIGTERM)
        spec = WorkerSpec(self.args, self.listen_fd, write_fd, slot.worker_id)
        ready = b""
        async with trio.lowlevel.FdStream(read_fd) as ready_pipe:
            assert process.stdin is not None
            with contextlib.suppress(trio.BrokenResourceError):  # it exited: the ready pipe says so
                await process.stdin.send_all(pickle.dumps(spec))
            with trio.move_on_after(WORKER_START_TIMEOUT) as timeout:
                while not ready.endswith(b"\n"):
                    chunk = await ready_pipe.receive_some(4096)
                    if not chunk:
                        break
                    ready += chunk
        if timeout.cancelled_caught:
            logger.error(
                "worker %d (pid %d) not serving after %gs: killing it",
                slot.worker_id,
                process.pid,
                WORKER_START_TIMEOUT,
                extra=extra,
            )
            process.kill()
            return None
        if not ready.startswith(b"ready"):
            return None
        self.urls = ready.decode().split()[1:]
        logger.info(
            "worker %d started (pid %d)%s",
            slot.worker_id,
            process.pid,
            "" if not slot.exits else f", replacing one that exited ({describe_exit(slot.exits[-1])})",
            extra=extra,
        )
        return trio.current_time()
